"""The WebSocket transport: once the handshake is answered, an asyncio protocol
carries the frames between the socket and a `Session`.

Tornado's own WebSocket layer keeps, per connection, an IOStream, the HTTP
connection and request handler, and a chain of coroutines waiting for the next
frame, and makes a Future per write. Here the socket moves, after the 101
answer, to an asyncio transport (C in uvloop) whose protocol parses frames as
they arrive (wsfan.frames) and writes the hub's shared frame bytes straight to
the transport. `Connection` is the session's `wsfan.transport.Transport`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import cast

from ..errors import CloseCode, Disconnect, DisconnectCode
from ..frames import (
    CLOSE,
    PING,
    PONG,
    WEBSOCKET,
    FrameBudget,
    FrameError,
    FrameReader,
    close_frame,
    control_frame,
)
from ..protocol import Encoding
from ..session import Session
from ..transport import Frame, Framing, Handshake, variant
from .endpoint import Endpoint

__all__ = ["CLOSE_TIMEOUT", "FRAMES_PER_TURN", "Connection", "adopt"]

log = logging.getLogger(__name__)

CLOSE_TIMEOUT = 5.0
"""Seconds a closing connection waits for the peer's close frame before aborting."""
FRAMES_PER_TURN = 256
"""Frames parsed for one connection in one event-loop pass; more wait for the next
pass, so one connection's flood of tiny frames cannot hold the loop."""


async def adopt(
    sock: socket.socket,
    endpoint: Endpoint,
    encoding: Encoding,
    address: str,
    handshake: Handshake | None = None,
    framing: Framing = WEBSOCKET,
) -> None:
    """Run the WebSocket on `sock` (the handshake answered) as a `Connection`;
    `handshake` goes to its session (for a connecting hook); `framing`: WEBSOCKET,
    or the unidirectional form (wsfan.web.stream_framing)."""
    counted = endpoint.connections.acquire(address)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.get_running_loop().connect_accepted_socket(
            lambda: Connection(endpoint, encoding, address, counted, handshake, framing),
            sock=sock,
        )
    except OSError as exc:
        log.debug("WebSocket from %s gone during the handshake: %r", address, exc)
        if counted:
            endpoint.connections.release(address)
        sock.close()


class Connection(asyncio.Protocol):
    """One client's frames: messages to its Session in order, the Session's frames out.

    Commands of a connection are handled one at a time, like Tornado did: while
    one runs, later messages wait here and the socket is not read.

    Whatever the client sends, what it costs stays bounded:
    - Reading: frames are parsed as `client.frame_rate` / `frame_burst` allow
      (FrameBudget, pings and fragments included) and at most FRAMES_PER_TURN
      per event-loop pass; the rest waits, unparsed, in the FrameReader while the
      socket is not read. So the inbox holds at most FRAMES_PER_TURN messages,
      the reader one read plus one partial message, and a flood gets a bounded
      share of the CPU while TCP slows its sender down.
    - Writing: everything written waits in the transport's buffer, which the
      Session counts against `client.max_unsent_bytes`. The connection's own
      writes are bounded: of the pings parsed in one pass only the last gets a
      pong, and none while an earlier pong is unsent (RFC 6455 section 5.5.3
      allows it); the latest ping that waited meanwhile is answered once the
      socket has taken everything. Then one close frame.
    - Closing: a peer that keeps sending past its frame budget after our close
      frame is not going to answer it; it is aborted then, not after
      CLOSE_TIMEOUT.
    """

    __slots__ = (
        "_address",
        "_budget",
        "_close_timer",
        "_closing",
        "_counted",
        "_endpoint",
        "_handshake",
        "_inbox",
        "_loop",
        "_paused",
        "_ping",
        "_pong_unsent",
        "_reader",
        "_task",
        "_throttle",
        "session",
        "transport",
        "variant",
    )

    sends_close_frame = True
    connect_fields: Mapping[str, str] = MappingProxyType({})

    def __init__(
        self,
        endpoint: Endpoint,
        encoding: Encoding,
        address: str,
        counted: bool,
        handshake: Handshake | None = None,
        framing: Framing = WEBSOCKET,
    ) -> None:
        """`counted`: whether `address` got a place under the per-address cap;
        `handshake`: for the session (kept only while a connecting hook exists)."""
        client = endpoint.node.settings.client
        self._endpoint = endpoint
        self._handshake = handshake
        self.variant = variant(encoding, framing)
        self._address = address
        self._counted = counted
        self._loop = asyncio.get_running_loop()
        self._reader = FrameReader(client.max_frame_bytes, client.max_fragments)
        self._budget = FrameBudget(client.frame_rate, client.frame_burst, self._loop.time())
        # Frames read and not handled yet (at most FRAMES_PER_TURN per read): a list,
        # as an empty deque is 760 bytes per connection; handled in batches.
        self._inbox: list[bytes] = []
        self._task: asyncio.Task[None] | None = None  # handling the inbox, while it runs
        self._throttle: asyncio.TimerHandle | None = None  # reading on when the budget allows
        self._paused = False  # reading paused by us
        self._ping: bytes | None = None  # the latest ping not answered yet
        self._pong_unsent = False  # a pong of ours is still in the transport's buffer
        self._closing = False
        self._close_timer: asyncio.TimerHandle | None = None
        self.session: Session | None = None
        self.transport: asyncio.Transport | None = None

    # asyncio.Protocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        # resume_writing as soon as everything buffered is sent (see Session.flush).
        self.transport.set_write_buffer_limits(high=0, low=0)
        self._endpoint.live.add(self)
        if not self._counted:
            log.info("connection from %s over the per-address limit", self._address)
            limit = Disconnect(DisconnectCode.CONNECTION_LIMIT)
            self.close(int(limit.code), limit.reason)
            return
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

    def data_received(self, data: bytes) -> None:
        if self._task is not None or self._throttle is not None:
            self._reader.feed(data, 0)  # a read already under way as reading was paused
            return
        self._read(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._endpoint.live.discard(self)
        self._closing = True
        for timer in (self._close_timer, self._throttle):
            if timer is not None:
                timer.cancel()
        self._close_timer = self._throttle = None
        self._inbox.clear()
        if self._counted:
            self._counted = False
            self._endpoint.connections.release(self._address)
        if self.session is not None:
            self.session.on_transport_closed()

    # Incoming ----------------------------------------------------------------

    def _read(self, data: bytes = b"") -> None:
        """Parse `data` and what is buffered, as far as the frame budget allows:
        messages to the inbox, controls answered; reading stays paused while
        messages are handled or frames wait for budget."""
        transport, reader, budget = self.transport, self._reader, self._budget
        assert transport is not None
        limit = min(budget.available(self._loop.time()), FRAMES_PER_TURN)
        try:
            frames = reader.feed(data, limit)
        except FrameError as exc:
            log.debug("client %s: %s", self._address, exc.reason)
            self._fail(exc.code, exc.reason)
            return
        budget.spend(reader.parsed)
        ping = None
        for opcode, payload in frames:
            if opcode < CLOSE:
                if not self._closing:
                    self._inbox.append(payload)
            elif opcode == PING:
                ping = payload  # only the latest needs an answer
            elif opcode == CLOSE:
                self._on_close_frame(payload)
                return
        if ping is not None and not self._closing:
            self._pong(ping)
        if reader.parsed == limit and reader.buffered:  # more may wait: read on later
            delay = budget.wait(FRAMES_PER_TURN) if limit < FRAMES_PER_TURN else 0.0
            if self._closing and delay:
                log.debug("client %s: still sending after our close frame", self._address)
                transport.abort()
                return
            self._throttle = self._loop.call_later(delay, self._unthrottle)
        if self._inbox and self._task is None:
            self._task = self._loop.create_task(self._handle_inbox())
        self._reading(self._task is None and self._throttle is None)

    def _unthrottle(self) -> None:
        self._throttle = None
        transport = self.transport
        if self._task is None and transport is not None and not transport.is_closing():
            self._read()  # (a running task reads on when it is done)

    def _reading(self, on: bool) -> None:
        transport = self.transport
        assert transport is not None
        if on == self._paused and not transport.is_closing():
            self._paused = not on
            if on:
                transport.resume_reading()
            else:
                transport.pause_reading()

    async def _handle_inbox(self) -> None:
        transport = self.transport
        assert transport is not None and self.session is not None
        try:
            while self._inbox and not self._closing:
                batch, self._inbox = self._inbox, []  # frames read meanwhile: the next batch
                for payload in batch:
                    if self._closing:
                        break
                    await self.session.handle_frame(payload)
        except Exception:
            log.exception("client %s: handling a message failed", self._address)
            self._fail(CloseCode.INTERNAL_ERROR, "internal error")
        finally:
            self._task = None
            self._inbox.clear()  # empty, unless closing (then nothing more is handled)
            if self._throttle is None and not transport.is_closing():
                self._read()  # closing too: the peer's close frame is awaited

    def _on_close_frame(self, payload: bytes) -> None:
        """The peer's close (its code valid: FrameReader checked it): answer it
        (unless ours went first), then end the TCP connection."""
        assert self.transport is not None
        if not self._closing:
            self._closing = True
            code = int.from_bytes(payload[:2], "big") if payload else CloseCode.NORMAL
            self._send(close_frame(code))
        self.transport.close()

    def _pong(self, payload: bytes) -> None:
        if self._pong_unsent:
            self._ping = payload  # answered when the earlier pong has left
            return
        transport = self.transport
        assert transport is not None
        if not transport.is_closing():
            transport.write(control_frame(PONG, payload))
            self._pong_unsent = transport.get_write_buffer_size() > 0

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
        self._pong_unsent = False
        if self._closing:
            return
        if self._ping is not None:
            ping, self._ping = self._ping, None
            self._pong(ping)
        if self.session is not None:
            self.session.writable()

    def unsent_bytes(self) -> int:
        transport = self.transport
        return 0 if transport is None else transport.get_write_buffer_size()

    def close(self, code: int, reason: str) -> None:
        """Send a close frame and wait (at most CLOSE_TIMEOUT) for the peer's."""
        if self._closing or self.transport is None:
            return
        self._closing = True
        self._send(close_frame(code, reason))
        self._close_timer = self._loop.call_later(CLOSE_TIMEOUT, self.transport.abort)

    def abort(self) -> None:
        """Drop the connection now, without a close handshake."""
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, code: CloseCode, reason: str) -> None:
        # A protocol violation: say why, stop reading, and end the connection.
        assert self.transport is not None
        if not self._closing:
            self._closing = True
            self._send(close_frame(code, reason))
        self._inbox.clear()
        self.transport.close()

    def _send(self, data: bytes) -> None:
        assert self.transport is not None
        if not self.transport.is_closing():
            self.transport.write(data)

    def __repr__(self) -> str:
        return f"Connection({self._address!r}, {self.variant.encoding.value})"
