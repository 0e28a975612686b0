"""The server's listening sockets, with a fast path for WebSocket upgrades.

A connection storm is mostly handshakes, and Tornado spends most of a
handshake on HTTP machinery (an IOStream, an HTTP/1 connection, a request
handler) that the WebSocket drops right after. Here each accepted socket's
first bytes are peeked at (not read): a complete, acceptable upgrade request
for the WebSocket endpoint is answered here and the socket goes straight to a
`Connection`. Everything else (other paths, refusals, a request not all
arrived yet) goes to Tornado untouched, which then reads it as usual, so its
handler answers every refusal with the same statuses as before.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

from tornado.httpserver import HTTPServer
from tornado.iostream import IOStream
from tornado.netutil import add_accept_handler

from server.auth.proxies import TrustedProxies
from server.web.websocket import (
    WEBSOCKET_PATH,
    Endpoint,
    adopt,
    endpoint_of,
    handshake_problem,
    negotiated_encoding,
    upgrade_headers,
)

__all__ = ["HEAD_TIMEOUT", "Listener", "client_address", "parse_upgrade"]

log = logging.getLogger(__name__)

MAX_HEAD = 8192
"""Bytes peeked at for the request head; a longer head goes to Tornado."""
HEAD_TIMEOUT = 10.0
"""Seconds an accepted connection may stay silent before Tornado gets it anyway."""


def parse_upgrade(data: bytes, path: str = WEBSOCKET_PATH) -> tuple[dict[str, str], int] | None:
    """The headers (names lower-cased, repeats comma-joined) and head length of a
    complete `GET path` HTTP/1.1 request at the start of `data`, or None."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = data[:end].decode("latin-1").split("\r\n")
    request = lines[0].split(" ")
    if len(request) != 3 or request[0] != "GET" or request[2] != "HTTP/1.1":
        return None
    if request[1].partition("?")[0] != path:
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            return None  # let Tornado judge anything unusual
        key, value = name.lower(), value.strip()
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    return headers, end + 4


def client_address(headers: dict[str, str], peer: str, proxies: TrustedProxies) -> str:
    """The client's address: from a trusted proxy X-Real-Ip, else the last
    X-Forwarded-For entry (as Tornado's xheaders mode reads them); from anyone
    else, or when that is not an IP, the peer's."""
    return proxies.client_address(lambda name: headers.get(name.lower()), peer)


class Listener:
    """Accepts on the server's sockets; upgrades directly what it can."""

    def __init__(self, http: HTTPServer) -> None:
        endpoint = endpoint_of(http.request_callback)
        if endpoint is None:
            raise ValueError("the HTTP server's application has no WebSocket endpoint")
        self._http = http
        self._endpoint: Endpoint = endpoint
        self._sockets: list[socket.socket] = []
        self._stops: list[Callable[[], None]] = []
        self.upgraded = 0  # handshakes answered here rather than by Tornado

    def add_sockets(self, sockets: list[socket.socket]) -> None:
        for sock in sockets:
            self._sockets.append(sock)
            self._stops.append(add_accept_handler(sock, self._accepted))

    def stop(self) -> None:
        """Stop accepting and close the listening sockets (like HTTPServer.stop)."""
        for stop in self._stops:
            stop()
        for sock in self._sockets:
            sock.close()
        self._stops, self._sockets = [], []

    # Accepted connections --------------------------------------------------

    def _accepted(self, conn: socket.socket, address: tuple[str, int]) -> None:
        conn.setblocking(False)
        loop = asyncio.get_running_loop()
        timer = loop.call_later(HEAD_TIMEOUT, self._silent, conn, address)
        loop.add_reader(conn.fileno(), self._readable, conn, address, timer)

    def _silent(self, conn: socket.socket, address: tuple[str, int]) -> None:
        if conn.fileno() >= 0:
            asyncio.get_running_loop().remove_reader(conn.fileno())
            self._to_tornado(conn, address)

    def _readable(
        self, conn: socket.socket, address: tuple[str, int], timer: asyncio.TimerHandle
    ) -> None:
        timer.cancel()
        asyncio.get_running_loop().remove_reader(conn.fileno())
        try:
            data = conn.recv(MAX_HEAD, socket.MSG_PEEK)
        except BlockingIOError:
            data = None
        except OSError:
            conn.close()
            return
        if data == b"":
            conn.close()  # closed before saying anything
            return
        upgrade = parse_upgrade(data) if data else None
        if upgrade is None or not self._upgrade(conn, address, *upgrade):
            self._to_tornado(conn, address)

    def _upgrade(
        self, conn: socket.socket, address: tuple[str, int], headers: dict[str, str], size: int
    ) -> bool:
        """Answer the handshake and start the Connection; False leaves it to Tornado."""
        endpoint = self._endpoint
        header = lambda name: headers.get(name.lower())  # noqa: E731 - names as the handler has them
        peer = address[0] if isinstance(address, tuple) else ""
        if handshake_problem(endpoint, header, peer) is not None:
            return False  # Tornado's handler refuses it with the right status
        encoding = negotiated_encoding(headers.get("sec-websocket-protocol"))
        key = headers["sec-websocket-key"]
        lines = [f"{name}: {value}" for name, value in upgrade_headers(key, encoding)]
        answer = "\r\n".join(["HTTP/1.1 101 Switching Protocols", *lines, "", ""])
        wire = answer.encode("latin-1")
        try:
            conn.recv(size)  # the head peeked at above
            sent = conn.send(wire)
        except OSError:
            sent = -1
        if sent != len(wire):  # a fresh socket takes ~200 bytes; anything else is gone
            conn.close()
            return True
        self.upgraded += 1
        ip = client_address(headers, peer, endpoint.proxies) if self._http.xheaders else peer
        asyncio.get_running_loop().create_task(adopt(conn, endpoint, encoding, ip))
        return True

    def _to_tornado(self, conn: socket.socket, address: tuple[str, int]) -> None:
        http = self._http
        try:
            stream = IOStream(
                conn, max_buffer_size=http.max_buffer_size, read_chunk_size=http.read_chunk_size
            )
            http.handle_stream(stream, address)
        except Exception:
            log.exception("handing a connection to Tornado failed")
            conn.close()
