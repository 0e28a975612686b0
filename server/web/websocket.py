"""`/connection/websocket`: Tornado answers the handshake, then an asyncio
protocol carries the frames between the socket and a `Session`.

Tornado's own WebSocket layer keeps, per connection, an IOStream, the HTTP
connection and request handler, and a chain of coroutines waiting for the next
frame, and makes a Future per write. Here the handshake is an ordinary request
handler; after the 101 answer the socket moves to an asyncio transport (C in
uvloop) whose protocol parses frames as they arrive (server.frames) and writes
the hub's shared frame bytes straight to the transport.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import socket
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

from tornado.iostream import StreamClosedError
from tornado.web import Application, RequestHandler

from server.auth.limits import ConnectionCounter
from server.auth.origin import OriginPolicy
from server.auth.proxies import Header, TrustedProxies
from server.errors import CloseCode, Disconnect, DisconnectCode
from server.frames import (
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
from server.node import Node
from server.protocol import Encoding
from server.session import Session
from server.transport import Frame, variant

__all__ = [
    "FRAMES_PER_TURN",
    "WEBSOCKET_PATH",
    "ClientWebSocketHandler",
    "Connection",
    "Endpoint",
    "LiveConnections",
    "adopt",
    "close_websockets",
    "endpoint_of",
    "handshake_problem",
    "negotiated_encoding",
    "upgrade_headers",
    "valid_key",
]

log = logging.getLogger(__name__)

MSGPACK_SUBPROTOCOL = "msgpack"
WEBSOCKET_PATH = "/connection/websocket"
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CLOSE_TIMEOUT = 5.0
"""Seconds a closing connection waits for the peer's close frame before aborting."""
FRAMES_PER_TURN = 256
"""Frames parsed for one connection in one event-loop pass; more wait for the next
pass, so one connection's flood of tiny frames cannot hold the loop."""


def accept_key(key: str) -> str:
    """Sec-WebSocket-Accept for a client's Sec-WebSocket-Key (RFC 6455 section 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()


class LiveConnections:
    """An app's open WebSocket connections: after the handshake Tornado no longer
    knows them, so shutdown closes them through this."""

    def __init__(self) -> None:
        self._live: set[Connection] = set()

    def add(self, connection: Connection) -> None:
        self._live.add(connection)

    def discard(self, connection: Connection) -> None:
        self._live.discard(connection)

    async def close_all(self, grace: float = 1.0) -> None:
        """Give close handshakes under way `grace` seconds, then drop what is left."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self._live and loop.time() < deadline:
            await asyncio.sleep(0.01)
        for connection in list(self._live):
            connection.abort()
        await asyncio.sleep(0)  # aborted transports close their sockets on the next pass


@dataclass(frozen=True)
class Endpoint:
    """What the WebSocket endpoint needs, shared by its handler and the fast path
    (server.web.upgrade); an app keeps it in its settings as `websocket_endpoint`.
    `proxies` are the node's `server.trusted_proxies`."""

    node: Node
    origins: OriginPolicy
    connections: ConnectionCounter = field(default_factory=lambda: ConnectionCounter(0))
    live: LiveConnections = field(default_factory=LiveConnections)
    proxies: TrustedProxies = field(init=False)

    def __post_init__(self) -> None:
        proxies = TrustedProxies(self.node.settings.server.trusted_proxies)
        object.__setattr__(self, "proxies", proxies)  # frozen: set once, here


def endpoint_of(app: object) -> Endpoint | None:
    """The WebSocket endpoint of `app` (an HTTPServer's request callback), if any."""
    endpoint = app.settings.get("websocket_endpoint") if isinstance(app, Application) else None
    return endpoint if isinstance(endpoint, Endpoint) else None


async def close_websockets(app: object, grace: float = 1.0) -> None:
    """Close the WebSocket connections `app` still holds; see LiveConnections."""
    endpoint = endpoint_of(app)
    if endpoint is not None:
        await endpoint.live.close_all(grace)


class ClientWebSocketHandler(RequestHandler):
    """The handshake. A refused origin gets HTTP 403, a full server 503; a
    connection over the per-address cap is accepted and closed at once with 3504
    (so the SDKs see the code). The msgpack subprotocol selects our msgpack variant.
    """

    def initialize(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.node = endpoint.node

    async def get(self) -> None:
        headers = self.request.headers
        peer = _peer_of(self.request.connection, self.request.remote_ip)
        problem = handshake_problem(self.endpoint, headers.get, peer)
        if problem is not None:
            status, message = problem
            if status == 503:
                self.node.metrics.refused.inc()
            elif status == 403:
                log.info("refused WebSocket handshake from origin %r", headers["Origin"][:200])
            elif status == 426:
                self.set_header("Sec-WebSocket-Version", "7, 8, 13")
            self._refuse(status, message)
            return
        key = headers["Sec-WebSocket-Key"]
        encoding = negotiated_encoding(headers.get("Sec-WebSocket-Protocol"))
        address = self.request.remote_ip or ""
        if address != peer:  # Tornado's xheaders believe anyone: only a trusted proxy counts
            address = self.endpoint.proxies.client_address(headers.get, peer)

        self.clear_header("Content-Type")
        self.set_status(101)
        for name, value in upgrade_headers(key, encoding):
            self.set_header(name, value)
        self.finish()
        stream = self.detach()
        try:
            if stream.writing():  # the 101 answer not all taken by the kernel yet
                await stream.write(b"")
            # The stream's socket becomes the transport's: a duplicate of the
            # descriptor outlives closing the stream (which closes only its own).
            sock = stream.socket.dup()
        except (OSError, StreamClosedError, AttributeError) as exc:  # the peer left already
            log.debug("WebSocket from %s gone during the handshake: %r", address, exc)
            stream.close()
            return
        stream.close()
        await adopt(sock, self.endpoint, encoding, address)

    def _refuse(self, status: int, message: str) -> None:
        self.set_status(status)
        self.finish(message)


def _peer_of(connection: object, fallback: str | None) -> str:
    """The TCP peer's address of a Tornado request (before any X- header)."""
    address = getattr(getattr(connection, "context", None), "address", None)
    if isinstance(address, tuple) and address:
        return str(address[0])
    return fallback or ""


def valid_key(key: str | None) -> bool:
    """Whether `key` is a Sec-WebSocket-Key: base64 of 16 bytes (RFC 6455 section 4.1)."""
    if key is None or len(key) != 24:
        return False
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except binascii.Error:
        return False


def handshake_problem(endpoint: Endpoint, header: Header, peer: str) -> tuple[int, str] | None:
    """Why an upgrade request is refused (HTTP status, message), or None to accept.

    `header` looks a request header up by name, case-insensitively; `peer` is the
    TCP peer's address (whose X-Forwarded-Proto counts if it is a trusted proxy).
    """
    node = endpoint.node
    if node.metrics.open_connections >= node.settings.server.max_connections:
        # A clean 503 the client can retry elsewhere, instead of failing at the
        # open-files limit.
        return 503, "connection limit reached"
    if (header("Upgrade") or "").lower() != "websocket":
        return 400, 'Can "Upgrade" only to "WebSocket".'
    if "upgrade" not in (p.strip().lower() for p in (header("Connection") or "").split(",")):
        return 400, '"Connection" must be "Upgrade".'
    origin = header("Origin")
    if origin is not None:
        scheme = endpoint.proxies.scheme(header, peer)
        if not endpoint.origins.allows(origin, header("Host"), scheme):
            return 403, "Cross origin websockets not allowed"
    if header("Sec-WebSocket-Version") not in ("7", "8", "13"):
        return 426, "Upgrade Required"
    if not valid_key(header("Sec-WebSocket-Key")):
        return 400, "Sec-WebSocket-Key must be the base64 of 16 bytes"
    return None


def upgrade_headers(key: str, encoding: Encoding) -> list[tuple[str, str]]:
    """The headers of the 101 answer to a client's Sec-WebSocket-Key."""
    headers = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", accept_key(key)),
    ]
    if encoding is Encoding.MSGPACK:
        headers.append(("Sec-WebSocket-Protocol", MSGPACK_SUBPROTOCOL))
    return headers


def negotiated_encoding(offered: str | None) -> Encoding:
    """msgpack when the client offers our msgpack subprotocol, JSON otherwise."""
    protocols = [p.strip() for p in (offered or "").split(",")]
    return Encoding.MSGPACK if MSGPACK_SUBPROTOCOL in protocols else Encoding.JSON


async def adopt(sock: socket.socket, endpoint: Endpoint, encoding: Encoding, address: str) -> None:
    """Run the WebSocket on `sock` (the handshake answered) as a `Connection`."""
    counted = endpoint.connections.acquire(address)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.get_running_loop().connect_accepted_socket(
            lambda: Connection(endpoint, encoding, address, counted), sock=sock
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

    def __init__(self, endpoint: Endpoint, encoding: Encoding, address: str, counted: bool) -> None:
        """`counted`: whether `address` got a place under the per-address cap."""
        client = endpoint.node.settings.client
        self._endpoint = endpoint
        self.variant = variant(encoding, WEBSOCKET)
        self._address = address
        self._counted = counted
        self._loop = asyncio.get_running_loop()
        self._reader = FrameReader(client.max_frame_bytes, client.max_fragments)
        self._budget = FrameBudget(client.frame_rate, client.frame_burst, self._loop.time())
        self._inbox: deque[bytes] = deque()
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
        self.session = Session(self._endpoint.node, self, self._address)

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
                await self.session.handle_frame(self._inbox.popleft())
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
