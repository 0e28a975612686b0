"""The server's listening sockets: accepting, the connections not upgraded yet, and
a fast path for WebSocket upgrades.

A connection storm is mostly handshakes, and Tornado spends most of a
handshake on HTTP machinery (an IOStream, an HTTP/1 connection, a request
handler) that the WebSocket drops right after. Here each accepted socket's
request head is peeked at (not read) once all of it has arrived: a complete,
acceptable upgrade request for the WebSocket endpoint is answered here and the
socket goes straight to a `Connection`. Everything else (other paths, refusals,
heads too long to peek at) goes to Tornado untouched, which then reads it as
usual, so its handler answers every refusal with the same statuses as before.
While a head trickles in, the socket is woken only when more bytes came
(SO_RCVLOWAT), so a slow client costs a socket and a timer, not Tornado's
machinery.

No socket is held forever before it upgrades:
- its first request head must be complete within `server.head_timeout` of the
  accept (a silent one is closed then; one that Tornado reads, too);
- between keep-alive requests, the next head must come within
  `server.idle_timeout` (and a request body, too: Tornado's `body_timeout`);
- at most `server.max_pending_connections` are pending (see
  wsfan.web.pending: the longest-waiting one makes room for a newcomer);
- when the process is out of file descriptors (EMFILE), the longest-waiting
  pending connection is closed to make room; with none to close, accepting
  pauses for ACCEPT_PAUSE seconds instead of spinning. Either is logged once
  per `log.repeat_interval`, with a count.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import resource
import socket
from http import HTTPStatus

from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from tornado.web import Application

from ..config import Settings
from ..logs import Repeated
from ..transport import Handshake
from .endpoint import Endpoint, endpoint_of
from .handshake import handshake_problem, negotiated_encoding, upgrade_headers
from .held_stream import HeldStream
from .pending import PendingConnections
from .request_head import (
    HEAD_END,
    MAX_HEAD,
    client_address,
    head_arrived,
    parse_upgrade,
)
from .websocket_transport import adopt

__all__ = ["MAX_PLAIN_BODY", "Listener", "make_server"]

log = logging.getLogger(__name__)

ACCEPT_BATCH = 128
"""Connections accepted per readiness event (as Tornado's accept handler)."""
ACCEPT_PAUSE = 0.1
"""Seconds accepting stops when no file descriptor is left and none can be freed."""
MAX_PLAIN_BODY = 0
"""Request body bytes Tornado reads for any route but the server API (which sets its
own limit once the key is checked): no other route takes a body, so one that comes
is refused (400) before it is read."""
FD_RESERVE = 64
"""Descriptors besides connections: listening sockets, Redis, MongoDB, files."""
_SWITCHING = HTTPStatus.SWITCHING_PROTOCOLS
_SWITCHING_PROTOCOLS = f"HTTP/1.1 {_SWITCHING.value} {_SWITCHING.phrase}"
_OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def make_server(
    app: Application,
    settings: Settings,
    endpoint: Endpoint | None = None,
    max_body_size: int = MAX_PLAIN_BODY,
) -> tuple[HTTPServer, Listener]:
    """The HTTP server for `app` and the Listener that accepts for it (`add_sockets`).

    Tornado gets the idle timeout (between keep-alive requests), the body timeout
    (`server.idle_timeout` too) and `max_body_size` (the largest body it reads
    for a route that does not stream its own; the server's routes take none);
    the Listener the rest (see the module's docstring). `endpoint` is the
    WebSocket endpoint mounted in `app` (default: the app's own, see
    `endpoint_of`). Also raises the soft open-files limit toward what the
    settings can use, and warns when it is lower.
    """
    server = settings.server
    http = HTTPServer(
        app,
        xheaders=True,
        idle_connection_timeout=server.idle_timeout,
        body_timeout=server.idle_timeout,
        max_body_size=max_body_size,
    )
    _ensure_open_files(server.max_connections + server.max_pending_connections + FD_RESERVE)
    return http, Listener(http, endpoint)


def _ensure_open_files(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted or soft == resource.RLIM_INFINITY:
        return
    raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if raised > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (OSError, ValueError):
            pass
    if soft < wanted:
        log.warning(
            "open-files limit %d is below server.max_connections + "
            "server.max_pending_connections (+%d): at the limit new connections wait "
            "(raise `ulimit -n` or lower those settings)",
            soft,
            FD_RESERVE,
        )


class Listener:
    """Accepts on the server's sockets; upgrades directly what it can, hands the
    rest to Tornado, and keeps every connection not upgraded yet within bounds."""

    def __init__(self, http: HTTPServer, endpoint: Endpoint | None = None) -> None:
        endpoint = endpoint or endpoint_of(http.request_callback)
        if endpoint is None:
            raise ValueError("the HTTP server's application has no WebSocket endpoint")
        self._http = http
        self._endpoint: Endpoint = endpoint
        settings = endpoint.node.settings
        self.head_timeout = settings.server.head_timeout
        self.idle_timeout = settings.server.idle_timeout
        self.pending = PendingConnections(settings.server.max_pending_connections)
        self._sockets: list[socket.socket] = []
        self._accepting = False
        self._resume: object | None = None  # the timer ending a pause
        self._log_interval = settings.log.repeat_interval
        self._paused_log = Repeated(log, self._log_interval)
        self._shed_log = Repeated(log, self._log_interval)
        self._arrivals: dict[socket.socket, _Arrival] = {}  # heads not all there yet
        self._batch: set[socket.socket] = set()  # accepted by the running `_accept`
        self.upgraded = 0  # handshakes answered here rather than by Tornado
        self.refused = 0  # accepted and closed at once: every pending connection busy

    def add_sockets(self, sockets: list[socket.socket]) -> None:
        for sock in sockets:
            sock.setblocking(False)
            self._sockets.append(sock)
        self._listen(True)

    def stop(self) -> None:
        """Stop accepting and close the listening sockets (like HTTPServer.stop), and
        the connections whose request head has not arrived (Tornado's are closed by
        `HTTPServer.close_all_connections`)."""
        self._listen(False)
        if self._resume is not None:
            IOLoop.current().remove_timeout(self._resume)
            self._resume = None
        for sock in self._sockets:
            sock.close()
        self._sockets = []
        for conn in list(self._arrivals):
            self._drop_early(conn)

    # Accepting -----------------------------------------------------------------

    def _listen(self, on: bool) -> None:
        if on == self._accepting:
            return
        io_loop = IOLoop.current()
        for sock in self._sockets:
            if on:
                io_loop.add_handler(sock, self._accept, IOLoop.READ)
            else:
                io_loop.remove_handler(sock)
        self._accepting = on

    def _accept(self, sock: socket.socket, events: int) -> None:
        try:
            for _ in range(ACCEPT_BATCH):
                if not self._accepting:
                    return  # paused or stopped by an earlier accept of this batch
                try:
                    conn, address = sock.accept()
                except BlockingIOError:
                    self._caught_up()
                    return
                except ConnectionAbortedError:
                    continue
                except OSError as exc:
                    if exc.errno in _OUT_OF_DESCRIPTORS and self._make_room():
                        self._shed_log(
                            "out of file descriptors (open-files limit %d): closed the "
                            "connection waiting longest for its request head",
                            _open_files_limit(),
                        )
                        continue
                    self._pause(exc)
                    return
                self._batch.add(conn)
                self._accepted(conn, address)
        finally:
            self._batch.clear()

    def _make_room(self, spare_batch: bool = True) -> bool:
        """Close the connection waiting longest for its request head; False when none can be.

        One whose head has all arrived meanwhile (the loop has not had its turn
        yet) is served instead, and the next one tried. With `spare_batch`, one
        accepted in this batch is left alone: closing what was just accepted, for
        a newcomer that may say nothing either, would only churn.
        """
        pending = self.pending
        while (key := pending.longest_waiting()) is not None:
            if spare_batch and key in self._batch:
                return False
            arrival = self._arrivals.get(key)  # type: ignore[call-overload]
            if arrival is None or not head_arrived(arrival.sock):
                pending.drop(key)
                return True
            self._readable(arrival)  # served (or found closed): it waits no more
            if arrival.sock.fileno() < 0:
                return True
        return False

    def _pause(self, exc: OSError) -> None:
        """Stop accepting for ACCEPT_PAUSE: the connections wait in the kernel's backlog."""
        io_loop = IOLoop.current()
        self._listen(False)
        self._resume = io_loop.call_later(ACCEPT_PAUSE, self._unpause)
        self._paused_log(
            "cannot accept connections: %s (open-files limit %d); pausing for %gs",
            exc.strerror or exc,
            _open_files_limit(),
            ACCEPT_PAUSE,
        )

    def _unpause(self) -> None:
        self._resume = None
        if self._sockets:
            self._listen(True)

    def _caught_up(self) -> None:
        """Every waiting connection was accepted: a shortage is over once none was
        met for a whole log interval (so a flapping limit logs no more than one does)."""
        if self._paused_log.failing:
            self._paused_log.recovered("accepting connections again", quiet=self._log_interval)

    # Accepted connections ----------------------------------------------------

    def _accepted(self, conn: socket.socket, address: tuple[str, int]) -> None:
        conn.setblocking(False)
        pending = self.pending
        if pending.count >= pending.limit:
            # A newcomer whose request is all there is a client, not a slowloris:
            # it may take the place of one that said nothing, however young.
            if not self._make_room(spare_batch=not head_arrived(conn)):
                self.refused += 1
                self._shed_log(
                    "%d connections not upgraded yet (server.max_pending_connections), "
                    "none to close now (busy with requests, or just accepted): refused a new one",
                    pending.count,
                )
                conn.close()
                return
            self._shed_log(
                "%d connections not upgraded yet (server.max_pending_connections): closed "
                "the one waiting longest for its request head",
                pending.limit,
            )
        loop = asyncio.get_running_loop()
        arrival = _Arrival(conn, address, loop, loop.time() + self.head_timeout)
        arrival.timer = loop.call_at(arrival.deadline, self._drop_early, conn)
        self._arrivals[conn] = arrival
        pending.add(conn, lambda: self._drop_early(conn))
        loop.add_reader(conn.fileno(), self._readable, arrival)

    def _drop_early(self, conn: socket.socket) -> None:
        """Close a connection whose head did not come (in time, or at all)."""
        arrival = self._arrivals.pop(conn, None)
        if arrival is not None:
            if arrival.timer is not None:
                arrival.timer.cancel()
            arrival.loop.remove_reader(conn.fileno())
            conn.close()
        self.pending.remove(conn)

    def _readable(self, arrival: _Arrival) -> None:
        conn = arrival.sock
        try:
            data = conn.recv(MAX_HEAD, socket.MSG_PEEK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # closed before saying anything
            self._drop_early(conn)
            return
        if arrival.seen < len(data) < MAX_HEAD and HEAD_END.search(data) is None:
            # Not all there yet: be woken only once more than this has arrived.
            arrival.seen = len(data)
            with contextlib.suppress(OSError):  # then the next wake-up shows no progress
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, len(data) + 1)
            return
        # The head is complete, too long to peek at, or made no progress (the peer
        # half-closed): decide now.
        del self._arrivals[conn]
        if arrival.timer is not None:
            arrival.timer.cancel()
        asyncio.get_running_loop().remove_reader(conn.fileno())
        if arrival.seen:
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
        address = arrival.address
        upgrade = parse_upgrade(data)
        if upgrade is not None and self._upgrade(conn, address, *upgrade):
            self.pending.remove(conn)  # a WebSocket now (or gone)
            return
        complete = HEAD_END.search(data) is not None
        self._to_tornado(conn, address, arrival.deadline, complete)

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
        answer = "\r\n".join([_SWITCHING_PROTOCOLS, *lines, "", ""])
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
        handshake = Handshake(headers.items()) if endpoint.node.app.wants_handshake else None
        asyncio.get_running_loop().create_task(adopt(conn, endpoint, encoding, ip, handshake))
        return True

    def _to_tornado(
        self, conn: socket.socket, address: tuple[str, int], deadline: float, complete: bool
    ) -> None:
        """Tornado serves `conn` from here; `complete`: its whole head has arrived
        (so it is busy with a request, else it still waits for its head)."""
        http = self._http
        stream: HeldStream | None = None
        try:
            stream = HeldStream(
                conn,
                self.pending,
                deadline,
                self.idle_timeout,
                max_buffer_size=http.max_buffer_size,
                read_chunk_size=http.read_chunk_size,
            )
            if complete:
                self.pending.busy(conn)
            else:
                self.pending.wait(conn, stream.close)  # dropped by closing the stream now
            http.handle_stream(stream, address)
        except Exception:
            log.exception("handing a connection to Tornado failed")
            if stream is not None:
                stream.close()
            conn.close()
            self.pending.remove(conn)


class _Arrival:
    """An accepted socket until its request head is complete (or its deadline)."""

    __slots__ = ("address", "deadline", "loop", "seen", "sock", "timer")

    def __init__(
        self,
        sock: socket.socket,
        address: tuple[str, int],
        loop: asyncio.AbstractEventLoop,
        deadline: float,
    ) -> None:
        self.sock = sock
        self.address = address
        self.loop = loop  # whose reader watches it
        self.deadline = deadline
        self.seen = 0  # bytes of the head peeked at so far
        self.timer: asyncio.TimerHandle | None = None


def _open_files_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
