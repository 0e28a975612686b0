"""The HTTP stream endpoints (Centrifugo's paths and formats, JSON only):

- `POST /connection/http_stream`: the connect command in the body; replies and
  pushes come back newline-delimited (the JavaScript SDK's `http_stream`);
- `GET /connection/sse?cf_connect=<connect command>`: the same as SSE events
  (the SDK's `sse`); later commands of both arrive through `/emulation`;
- `GET /connection/uni_sse?cf_connect=<connect request>` and
  `POST /connection/uni_http_stream` (the connect request as the body): the
  unidirectional protocol (wsfan.session.unidirectional). Both also take a
  POST with the request as the body, and uni_sse a GET with no `cf_connect`
  (an empty request).

A stream is refused as a WebSocket handshake would be: 503 once
`server.max_connections` are open, 403 for an origin the policy refuses; and
with 413 for a body over `transports.max_request_body_bytes`, 415 for a
binary (`application/octet-stream`, the SDK's protobuf) body, 400 for a
missing connect command, 505 for HTTP/1.0 (a stream is a chunked response).
An accepted stream answers 200 at once, then the socket moves to a
`StreamConnection` (wsfan.web.stream_transport). `cf_connect` can carry a
token: access and error logs show it redacted.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from urllib.parse import parse_qsl, urlencode

from tornado.iostream import StreamClosedError

from ..transport import Framing, Handshake
from .cors import ALLOWED_METHODS, cors
from .endpoint import Endpoint
from .handshake import peer_of
from .request_body import BodyHandler
from .stream_framing import HTTP_STREAM, SSE, UNI_HTTP_STREAM, UNI_SSE
from .stream_transport import adopt_stream

__all__ = ["STREAM_PATHS", "StreamHandler", "redacted_uri"]

log = logging.getLogger(__name__)

STREAM_PATHS: dict[str, Framing] = {
    "/connection/http_stream": HTTP_STREAM,
    "/connection/sse": SSE,
    "/connection/uni_sse": UNI_SSE,
    "/connection/uni_http_stream": UNI_HTTP_STREAM,
}
"""Each stream endpoint's path and framing (its name is its `[transports]` key)."""

_CONTENT_TYPES = {
    "http_stream": "application/x-ndjson",
    "uni_http_stream": "application/x-ndjson",
    "sse": "text/event-stream",
    "uni_sse": "text/event-stream",
}
_NO_CACHE = "private, no-cache, no-store, must-revalidate, max-age=0"


def redacted_uri(uri: str) -> str:
    """`uri` with its `cf_connect` value (which may hold a token) hidden."""
    path, sep, query = uri.partition("?")
    if not sep or "cf_connect" not in query:
        return uri
    pairs = parse_qsl(query, keep_blank_values=True)
    return f"{path}?" + urlencode([(k, "[redacted]" if k == "cf_connect" else v) for k, v in pairs])


class StreamHandler(BodyHandler):
    """One stream endpoint; `framing` says which."""

    def initialize(self, endpoint: Endpoint, framing: Framing) -> None:
        self.endpoint = endpoint
        self.node = endpoint.node
        self.framing = framing

    def body_limit(self) -> int:
        return self.node.settings.transports.max_request_body_bytes

    def _request_summary(self) -> str:
        request = self.request
        return f"{request.method} {redacted_uri(request.uri or '')} ({request.remote_ip})"

    def _peer(self) -> str:
        return peer_of(self.request.connection, self.request.remote_ip)

    def options(self) -> None:
        """A CORS preflight."""
        decision = cors(self.endpoint.origins, self.endpoint.proxies, self._header, self._peer())
        if not decision.allowed:
            self._refuse(HTTPStatus.FORBIDDEN, "origin not allowed")
            return
        for name, value in decision.headers:
            self.set_header(name, value)
        self.set_header("Access-Control-Allow-Methods", ALLOWED_METHODS)
        self.set_header("Access-Control-Max-Age", str(self.node.settings.transports.cors_max_age))
        self.set_status(HTTPStatus.NO_CONTENT)
        self.finish()

    async def get(self) -> None:
        if self.framing not in (SSE, UNI_SSE):
            self._refuse(HTTPStatus.METHOD_NOT_ALLOWED, "use POST")
            return
        first = self.get_query_argument("cf_connect", None)
        if first is None and self.framing is UNI_SSE:
            first = "{}"  # no request: anonymous, no channels of its own
        await self._start(first.encode() if first is not None else None)

    async def post(self) -> None:
        if self.request.headers.get("Content-Type", "").startswith("application/octet-stream"):
            self._refuse(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "streams speak JSON only")
            return
        body = self.body()
        if body is None:
            limit = self.body_limit()
            self._refuse(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {limit} bytes")
            return
        if not body and self.framing.unidirectional:
            body = b"{}"
        await self._start(body or None)

    def _header(self, name: str) -> str | None:
        return self.request.headers.get(name)

    async def _start(self, first: bytes | None) -> None:
        node, endpoint, request = self.node, self.endpoint, self.request
        peer = self._peer()
        if node.metrics.open_connections >= node.settings.server.max_connections:
            node.metrics.refused.inc()
            self._refuse(HTTPStatus.SERVICE_UNAVAILABLE, "connection limit reached")
            return
        decision = cors(endpoint.origins, endpoint.proxies, self._header, peer)
        if not decision.allowed:
            log.info(
                "refused %s stream from origin %r",
                self.framing.name,
                request.headers.get("Origin", "")[:200],
            )
            self._refuse(HTTPStatus.FORBIDDEN, "origin not allowed")
            return
        if first is None:
            self._refuse(HTTPStatus.BAD_REQUEST, "no connect command")
            return
        if request.version != "HTTP/1.1":
            self._refuse(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, "a stream needs HTTP/1.1")
            return
        address = request.remote_ip or ""
        if address != peer:  # Tornado's xheaders believe anyone: only a trusted proxy counts
            address = endpoint.proxies.client_address(self._header, peer)
        head = _head(self.framing, decision.headers)
        stream = self.detach()
        try:
            if stream.writing():
                await stream.write(b"")
            sock = stream.socket.dup()  # outlives closing the stream (see wsfan.web.websocket)
        except (OSError, StreamClosedError, AttributeError) as exc:  # the peer left already
            log.debug("%s stream from %s gone: %r", self.framing.name, address, exc)
            stream.close()
            return
        stream.close()
        handshake = Handshake(request.headers.get_all()) if node.app.wants_handshake else None
        await adopt_stream(sock, endpoint, self.framing, address, head, first, handshake)

    def _refuse(self, status: int, message: str) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(message)


def _head(framing: Framing, cors_headers: list[tuple[str, str]]) -> bytes:
    """The 200 answer's head: a chunked stream nothing may cache, buffer or compress."""
    headers = [
        ("Content-Type", _CONTENT_TYPES[framing.name]),
        ("Transfer-Encoding", "chunked"),
        ("Cache-Control", _NO_CACHE),
        ("Pragma", "no-cache"),
        ("Expires", "0"),
        ("X-Accel-Buffering", "no"),
        ("Connection", "close"),
        *cors_headers,
    ]
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers)
    return f"HTTP/1.1 200 OK\r\n{lines}\r\n".encode("latin-1")
