"""`/connection/websocket`: frames in and out of a `Session`, nothing more."""

from __future__ import annotations

import logging
from typing import Any

from tornado.iostream import IOStream, StreamClosedError
from tornado.websocket import WebSocketHandler, WebSocketProtocol13

from server.auth.limits import ConnectionCounter
from server.auth.origin import OriginPolicy
from server.errors import Disconnect, DisconnectCode
from server.frames import Frame
from server.node import Node
from server.protocol import Encoding
from server.session import Session

__all__ = ["ClientWebSocketHandler"]

log = logging.getLogger(__name__)

MSGPACK_SUBPROTOCOL = "msgpack"


class _Protocol(WebSocketProtocol13):
    """Tornado's RFC 6455 protocol with two changes the client protocol needs.

    Text frames reach `on_message` as bytes: Tornado would drop a connection on
    invalid UTF-8 without a close code, and the protocol layer answers 3501
    instead (it decodes UTF-8 itself, once).
    """

    def _handle_message(self, opcode: int, data: bytes) -> Any:
        return super()._handle_message(0x2 if opcode == 0x1 else opcode, data)


class ClientWebSocketHandler(WebSocketHandler):
    """Adapts one WebSocket to one Session (JSON, or msgpack under its subprotocol).

    A browser handshake from an origin the policy refuses gets HTTP 403; a
    connection over the per-address cap is closed at once with 3504.
    """

    def initialize(
        self,
        node: Node,
        origins: OriginPolicy | None = None,
        connections: ConnectionCounter | None = None,
    ) -> None:
        self.node = node
        self.origins = origins or OriginPolicy(node.settings.client.allowed_origins)
        self.connections = connections or ConnectionCounter(0)
        self.session: Session | None = None
        self.encoding = Encoding.JSON
        self._counted: str | None = None  # the address this connection is counted under
        self._protocol: _Protocol | None = None  # once open

    def get_websocket_protocol(self) -> WebSocketProtocol13 | None:
        # Tornado's choice of version and parameters, with our protocol subclass.
        protocol = super().get_websocket_protocol()
        if not isinstance(protocol, WebSocketProtocol13):
            return None
        return _Protocol(self, False, protocol.params)

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        if MSGPACK_SUBPROTOCOL in subprotocols:
            self.encoding = Encoding.MSGPACK
            return MSGPACK_SUBPROTOCOL
        return None

    async def get(self, *args: Any, **kwargs: Any) -> None:
        # Refuse before the upgrade: a clean 503 the client can retry elsewhere,
        # instead of failing at the open-files limit.
        limit = self.node.settings.server.max_connections
        if self.node.metrics.open_connections >= limit:
            self.node.metrics.refused.inc()
            self.set_status(503)
            self.finish("connection limit reached")
            return
        await super().get(*args, **kwargs)

    def check_origin(self, origin: str) -> bool:
        """Called by Tornado only when the handshake carries an Origin header."""
        if self.origins.allows(origin, self.request.headers.get("Host")):
            return True
        log.info("refused WebSocket handshake from origin %r", origin[:200])
        return False

    def open(self, *args: str, **kwargs: str) -> None:
        self.set_nodelay(True)
        address = self.request.remote_ip or ""
        if not self.connections.acquire(address):
            log.info("connection from %s over the per-address limit", address)
            limit = Disconnect(DisconnectCode.CONNECTION_LIMIT)
            self.close(int(limit.code), limit.reason)
            return
        self._counted = address
        protocol = self.ws_connection
        if isinstance(protocol, _Protocol) and type(protocol.stream) is IOStream:
            self._protocol = protocol  # plain TCP: frames may go to the socket directly
        self.session = Session(self.node, self, self.encoding, address)

    async def on_message(self, message: str | bytes) -> None:
        if self.session is not None:
            await self.session.handle_frame(message)

    def on_close(self) -> None:
        if self._counted is not None:
            self.connections.release(self._counted)
            self._counted = None
        if self.session is not None:
            self.session.on_transport_closed()

    # Transport ---------------------------------------------------------------

    def write_frame(self, frame: Frame, max_unsent: int) -> bool:
        """Send `frame`, straight to the socket when nothing waits before it.

        This is the fan-out hot path: `IOStream.write` would copy the bytes into
        its buffer and make a Future per call. Only what the kernel does not take
        goes through the stream, which then keeps the order and waits for
        writability; errors are left to it too, so it closes the connection its
        usual way and `on_close` follows. False, writing nothing, when the socket
        already holds unsent bytes and this frame would take them past
        `max_unsent`.
        """
        protocol = self._protocol
        if protocol is None:
            return self._write_through_tornado(frame, max_unsent)
        if protocol.server_terminated or protocol.client_terminated:
            return True  # closing: nothing more goes out, on_close follows
        stream = protocol.stream
        sock = stream.socket
        if sock is None:
            return True
        wire = frame.wire
        if not stream.writing():
            try:
                sent = sock.send(wire)
            except OSError:  # BlockingIOError included: the stream retries or closes
                sent = 0
            if sent == len(wire):
                return True
            wire = wire[sent:]
        elif len(stream._write_buffer) + len(frame.payload) > max_unsent:
            return False  # Tornado has no public accessor for what it holds unsent
        try:  # noqa: SIM105 - contextlib.suppress costs more on this hot path
            stream.write(wire)
        except StreamClosedError:
            pass  # on_close follows and cleans up
        return True

    def _write_through_tornado(self, frame: Frame, max_unsent: int) -> bool:
        # A TLS stream: Tornado frames and writes (its stream retrieves write errors).
        protocol = self.ws_connection
        if not isinstance(protocol, _Protocol) or protocol.is_closing():
            return True
        unsent = self.unsent_bytes()
        if unsent and unsent + len(frame.payload) > max_unsent:
            return False
        try:  # noqa: SIM105 - contextlib.suppress costs more on a per-message path
            protocol._write_frame(True, 0x2 if frame.binary else 0x1, frame.payload)
        except StreamClosedError:
            pass  # on_close follows and cleans up
        return True

    def unsent_bytes(self) -> int:
        protocol = self.ws_connection
        if not isinstance(protocol, _Protocol) or protocol.stream is None:
            return 0
        # Tornado keeps what the kernel did not take in the stream's write buffer;
        # it has no public accessor, and its own size check reads the same field.
        return len(protocol.stream._write_buffer)

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        super().close(code, reason)
