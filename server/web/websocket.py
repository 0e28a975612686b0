"""`/connection/websocket`: Tornado answers the handshake, then the socket moves
to a `Connection` (wsfan.web.websocket_transport) that carries its frames.

The handshake is an ordinary request handler deciding with wsfan.web.handshake,
as the listener's fast path does (wsfan.web.upgrade); a handshake that path
answered never reaches this handler.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from tornado.iostream import StreamClosedError
from tornado.web import RequestHandler

from ..frames import WEBSOCKET
from ..protocol import Encoding
from ..transport import Framing, Handshake
from .endpoint import Endpoint, close_websockets
from .handshake import (
    SUPPORTED_VERSIONS,
    WEBSOCKET_PATH,
    handshake_problem,
    negotiated_encoding,
    peer_of,
    upgrade_headers,
)
from .websocket_transport import adopt

__all__ = [
    "WEBSOCKET_PATH",
    "ClientWebSocketHandler",
    "Endpoint",
    "close_websockets",
]
# WEBSOCKET_PATH, Endpoint and close_websockets are re-exported: wsfan.web.app and
# wsfan.cli import them from here.

log = logging.getLogger(__name__)


class ClientWebSocketHandler(RequestHandler):
    """The handshake. A refused origin gets HTTP 403, a full server 503; a
    connection over the per-address cap is accepted and closed at once with
    DisconnectCode.CONNECTION_LIMIT (so the SDKs see the code). The msgpack
    subprotocol selects our msgpack variant.
    """

    def initialize(self, endpoint: Endpoint, framing: Framing = WEBSOCKET) -> None:
        """`framing`: WEBSOCKET, or UNI_WEBSOCKET for /connection/uni_websocket."""
        self.endpoint = endpoint
        self.node = endpoint.node
        self.framing = framing

    async def get(self) -> None:
        headers = self.request.headers
        peer = peer_of(self.request.connection, self.request.remote_ip)
        problem = handshake_problem(self.endpoint, headers.get, peer)
        if problem is not None:
            status, message = problem
            if status == HTTPStatus.SERVICE_UNAVAILABLE:
                self.node.metrics.refused.inc()
            elif status == HTTPStatus.FORBIDDEN:
                log.info("refused WebSocket handshake from origin %r", headers["Origin"][:200])
            elif status == HTTPStatus.UPGRADE_REQUIRED:
                self.set_header("Sec-WebSocket-Version", ", ".join(SUPPORTED_VERSIONS))
            self._refuse(status, message)
            return
        key = headers["Sec-WebSocket-Key"]
        encoding = negotiated_encoding(headers.get("Sec-WebSocket-Protocol"))
        if self.framing.unidirectional:
            encoding = Encoding.JSON  # the unidirectional protocol is JSON only
        address = self.request.remote_ip or ""
        if address != peer:  # Tornado's xheaders believe anyone: only a trusted proxy counts
            address = self.endpoint.proxies.client_address(headers.get, peer)

        self.clear_header("Content-Type")
        self.set_status(HTTPStatus.SWITCHING_PROTOCOLS)
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
        handshake = Handshake(headers.get_all()) if self.node.app.wants_handshake else None
        await adopt(sock, self.endpoint, encoding, address, handshake, self.framing)

    def _refuse(self, status: int, message: str) -> None:
        self.set_status(status)
        self.finish(message)
