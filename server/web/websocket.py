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
    instead (it decodes UTF-8 itself, once). `write_frame` sends a `Frame`
    whose wire bytes may be shared with other connections.
    """

    def _handle_message(self, opcode: int, data: bytes) -> Any:
        return super()._handle_message(0x2 if opcode == 0x1 else opcode, data)

    def write_frame(self, frame: Frame) -> None:
        """Hand the frame to the socket directly when nothing is waiting before it.

        This is the fan-out hot path: `IOStream.write` would copy the bytes into
        its buffer and make a Future per call. Only what the kernel does not take
        goes through the stream, which then keeps order and watches for
        writability; errors are left to it too, so it closes the connection
        its usual way and `on_close` follows.
        """
        stream = self.stream
        wire = frame.wire
        try:
            if type(stream) is IOStream and not stream.writing():
                try:
                    sent = stream.socket.send(wire)
                except BlockingIOError:
                    sent = 0
                except OSError:
                    sent = 0  # let the stream's own write meet the error and close
                if sent == len(wire):
                    return
                wire = wire[sent:]
            stream.write(wire)
        except StreamClosedError:
            pass  # on_close follows and cleans up


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

    def write_frame(self, frame: Frame) -> None:
        protocol = self.ws_connection
        if isinstance(protocol, _Protocol) and not protocol.is_closing():
            protocol.write_frame(frame)

    def unsent_bytes(self) -> int:
        protocol = self.ws_connection
        if not isinstance(protocol, _Protocol) or protocol.stream is None:
            return 0
        # Tornado keeps what the kernel did not take in the stream's write buffer;
        # it has no public accessor, and its own size check reads the same field.
        return len(protocol.stream._write_buffer)

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        super().close(code, reason)
