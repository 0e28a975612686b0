"""The HTTP streaming transports: once a stream request is accepted, its socket
moves to an asyncio protocol that writes the response (chunked) and carries a
`Session`, as a WebSocket's does (wsfan.web.websocket_transport).

The client sends nothing more on the stream's connection: anything it sends
ends it. Later commands of a bidirectional stream (http_stream, sse) arrive
through `/emulation` (wsfan.web.emulation), which hands them to `take`.
`StreamConnection` is the session's `wsfan.transport.Transport`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import cast

from ..errors import Disconnect, DisconnectCode
from ..protocol import Encoding
from ..session import Session
from ..transport import Frame, Framing, Handshake, variant
from .endpoint import Endpoint
from .stream_framing import END_OF_STREAM
from .websocket_transport import CLOSE_TIMEOUT

__all__ = ["StreamConnection", "adopt_stream"]

log = logging.getLogger(__name__)

_NO_FIELDS: Mapping[str, str] = MappingProxyType({})


async def adopt_stream(
    sock: socket.socket,
    endpoint: Endpoint,
    framing: Framing,
    address: str,
    head: bytes,
    first: bytes,
    handshake: Handshake | None = None,
) -> None:
    """Run the stream on `sock` (the request read, nothing answered yet): `head`
    is the response head it writes first, `first` the connect command (or bare
    connect request) its session handles first."""
    counted = endpoint.connections.acquire(address)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.get_running_loop().connect_accepted_socket(
            lambda: StreamConnection(endpoint, framing, address, counted, head, first, handshake),
            sock=sock,
        )
    except OSError as exc:
        log.debug("%s stream from %s gone before it started: %r", framing.name, address, exc)
        if counted:
            endpoint.connections.release(address)
        sock.close()


class StreamConnection(asyncio.Protocol):
    """One client's HTTP stream: its session's messages out as chunks; its
    commands in from the request that opened it, then from `take`.

    Commands are handled one at a time, in the order they were taken. What waits
    to be handled is bounded by `transports.max_request_body_bytes`: a `take`
    beyond it is refused and the connection closes with 3013 (the SDK does not
    read /emulation answers, so refusing silently would lose commands).
    Everything written waits in the transport's buffer, which the session counts
    against `client.max_unsent_bytes`; a closing stream whose peer does not read
    its last bytes is aborted after CLOSE_TIMEOUT.
    """

    __slots__ = (
        "_address",
        "_close_timer",
        "_closing",
        "_counted",
        "_endpoint",
        "_handshake",
        "_head",
        "_inbox",
        "_inbox_bytes",
        "_task",
        "connect_fields",
        "secret",
        "session",
        "transport",
        "variant",
    )

    sends_close_frame = False

    def __init__(
        self,
        endpoint: Endpoint,
        framing: Framing,
        address: str,
        counted: bool,
        head: bytes,
        first: bytes,
        handshake: Handshake | None = None,
    ) -> None:
        self._endpoint = endpoint
        self.variant = variant(Encoding.JSON, framing)
        self._address = address
        self._counted = counted
        self._head = head
        self._handshake = handshake
        self._inbox: list[bytes] = [first]
        self._inbox_bytes = len(first)
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._close_timer: asyncio.TimerHandle | None = None
        self.session: Session | None = None
        self.transport: asyncio.Transport | None = None
        # The emulation session: a secret (not the client id, which presence shows)
        # that /emulation requests name to reach this connection.
        self.secret = "" if framing.unidirectional else secrets.token_urlsafe(24)
        self.connect_fields = (
            {"session": self.secret, "node": endpoint.node.cluster.uid}
            if self.secret
            else _NO_FIELDS
        )

    # asyncio.Protocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=0, low=0)
        self.transport.write(self._head)
        self._endpoint.live.add(self)
        node = self._endpoint.node
        self.session = Session(
            node,
            self,
            self._address,
            settings=node.settings,
            metrics=node.metrics,
            tokens=node.tokens,
            handshake=self._handshake,
        )
        self._handshake = None
        if not self._counted:
            log.info("stream from %s over the per-address limit", self._address)
            self._inbox.clear()
            self.session.disconnect(Disconnect(DisconnectCode.CONNECTION_LIMIT))
            return
        if self.secret:
            self._endpoint.streams.add(self.secret, self)
        self._task = asyncio.get_running_loop().create_task(self._handle_inbox())

    def data_received(self, data: bytes) -> None:
        # Nothing is expected on a stream's connection once its request was read.
        log.debug("stream client %s sent after its request: closing", self._address)
        if self.session is not None:
            self.session.disconnect(Disconnect(DisconnectCode.BAD_REQUEST))
        self.abort()

    def eof_received(self) -> bool:
        return False  # the peer is gone: close

    def connection_lost(self, exc: Exception | None) -> None:
        self._endpoint.live.discard(self)
        if self.secret:
            self._endpoint.streams.discard(self.secret, self)
        self._closing = True
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        self._inbox.clear()
        if self._counted:
            self._counted = False
            self._endpoint.connections.release(self._address)
        if self.session is not None:
            self.session.on_transport_closed()

    # Incoming ----------------------------------------------------------------

    def take(self, data: bytes) -> bool:
        """Queue commands (newline-delimited, as one WebSocket message would hold
        them) from an /emulation request; False when closed or refused."""
        if self._closing or self.session is None or self.session.is_closed:
            return False
        limit = self._endpoint.node.settings.transports.max_request_body_bytes
        if self._inbox_bytes + len(data) > limit:
            log.info("client %s: emulated commands over %d bytes waiting", self._address, limit)
            self.session.disconnect(Disconnect(DisconnectCode.TOO_MANY_REQUESTS))
            return False
        self._inbox.append(data)
        self._inbox_bytes += len(data)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._handle_inbox())
        return True

    async def _handle_inbox(self) -> None:
        session = self.session
        assert session is not None
        try:
            while self._inbox and not self._closing:
                data = self._inbox.pop(0)
                self._inbox_bytes -= len(data)
                await session.handle_frame(data)
        except Exception:
            log.exception("client %s: handling a message failed", self._address)
            session.disconnect(Disconnect(DisconnectCode.INTERNAL))
        finally:
            self._task = None

    # Transport (for the Session) ---------------------------------------------

    def write(self, messages: Sequence[bytes], framed: Frame | None = None) -> int:
        if framed is None:
            framed = self.variant.frame(messages)
        if not self._closing:
            assert self.transport is not None
            self.transport.write(framed.wire)
        return len(framed.payload)

    def resume_writing(self) -> None:
        """Everything buffered was sent (write buffer limits are 0)."""
        if not self._closing and self.session is not None:
            self.session.writable()

    def unsent_bytes(self) -> int:
        transport = self.transport
        return 0 if transport is None else transport.get_write_buffer_size()

    def close(self, code: int, reason: str) -> None:
        """End the response (the session queued its disconnect push before) and
        the connection once the peer took it, or after CLOSE_TIMEOUT."""
        if self._closing or self.transport is None:
            return
        self._closing = True
        self.transport.write(END_OF_STREAM)
        self.transport.close()
        loop = asyncio.get_running_loop()
        self._close_timer = loop.call_later(CLOSE_TIMEOUT, self.transport.abort)

    def abort(self) -> None:
        """Drop the connection now."""
        if self.transport is not None:
            self.transport.abort()

    def __repr__(self) -> str:
        return f"StreamConnection({self._address!r}, {self.variant.framing.name})"
