"""The request body of a client endpoint that takes one (a stream's connect,
an /emulation request), up to `transports.max_request_body_bytes`.

The server's HTTP server reads no body for a route that does not ask for one
(wsfan.web.upgrade.MAX_PLAIN_BODY: Tornado refuses it with 400 before any
handler runs). These handlers stream theirs: once the headers are in, each
raises its connection's limit, keeps up to `body_limit` bytes, and reads on
(dropping) up to DISCARD_BYTES past it so the client hears the 413; beyond
that Tornado closes the connection.
"""

from __future__ import annotations

from tornado.http1connection import HTTP1Connection
from tornado.web import RequestHandler, stream_request_body

__all__ = ["DISCARD_BYTES", "BodyHandler"]

DISCARD_BYTES = 1 << 20
"""Body bytes past the limit read (and dropped) before the connection is closed."""


@stream_request_body
class BodyHandler(RequestHandler):
    """A handler whose body is `body()`: None when it was over `body_limit()`."""

    _chunks: list[bytes]
    _size: int

    def body_limit(self) -> int:
        """The largest body kept."""
        raise NotImplementedError

    def prepare(self) -> None:
        self._chunks = []
        self._size = 0
        if isinstance(self.request.connection, HTTP1Connection):
            self.request.connection.set_max_body_size(self.body_limit() + DISCARD_BYTES)

    def data_received(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size <= self.body_limit():
            self._chunks.append(chunk)
        else:
            self._chunks = []  # read on so the client hears the 413, keep nothing

    def body(self) -> bytes | None:
        """The whole body (b"" for none), or None when it was over the limit."""
        if self._size > self.body_limit():
            return None
        return b"".join(self._chunks)
