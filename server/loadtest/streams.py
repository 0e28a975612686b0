"""Subscribing clients over HTTP streams (`--transport sse` or `http_stream`).

A client opens `GET /connection/sse?cf_connect=<connect command>` or
`POST /connection/http_stream` (the connect command as its JSON body) on the
host of its WebSocket URL, and reads the chunked response with a parser of
its own (an asyncio protocol per connection, no HTTP library on the hot
path): the messages a WebSocket frame would carry, newline-delimited
(http_stream) or one `data:` event each (sse). Frames of nothing but this
tool's publications skip the JSON decoder, as over a WebSocket.

The commands after connect go through `POST /emulation`
(`{"session", "node", "data"}`, `data` the newline-delimited commands) as the
JavaScript SDK sends them: the subscribe once the connect reply named the
session and node, `{}` answering each server ping `{}`, and a resubscribe
after an unsubscribe push. A worker's clients share a few keep-alive
connections for them (`Emulation`). An answer other than 204 counts as an
error `emulation <status>`, and fails the client when it answered its
subscribe. The server's disconnect push carries the close code a WebSocket
close frame would (none: 1006), and decides reconnecting the same way.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import quote, urlsplit

from picows import WSCloseCode, WSMsgType

from ..errors import NO_CLOSE_FRAME, NO_RECONNECT_FROM
from .client import PUBLICATION_LINE, Carrier, Pool, Receiver, SubscribeFailed
from .publisher import read_response
from .wire import Codec

__all__ = ["EMULATION_CONNECTIONS", "Emulation", "StreamPool", "StreamSubscriber", "endpoint_of"]

EMULATION_CONNECTIONS = 8
"""Keep-alive connections to /emulation per worker process, at most."""

# One SSE event of one publication push of this tool's payload (see client.py).
_SSE_PUBLICATION = re.compile(rb"^data: ?" + PUBLICATION_LINE, re.MULTILINE)
_HTTP_STREAM_PUBLICATION = re.compile(rb"^" + PUBLICATION_LINE, re.MULTILINE)
_json = json.JSONDecoder().decode


@dataclass(frozen=True)
class Endpoint:
    """Where a stream client connects: the stream's URL path and /emulation's."""

    host: str
    port: int
    secure: bool
    netloc: str
    stream_path: str
    emulation_path: str


def endpoint_of(ws_url: str, transport: str) -> Endpoint:
    """The `transport` endpoint beside the WebSocket endpoint `ws_url`: its
    `/connection/websocket` (or its path's end) replaced by `/connection/<transport>`,
    `/emulation` beside `/connection`."""
    parts = urlsplit(ws_url)
    secure = parts.scheme == "wss"
    path = parts.path.rstrip("/")
    base = path.removesuffix("/connection/websocket") if path.endswith("/websocket") else ""
    return Endpoint(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or (443 if secure else 80),
        secure=secure,
        netloc=parts.netloc,
        stream_path=f"{base}/connection/{transport}",
        emulation_path=f"{base}/emulation",
    )


class Emulation:
    """POST /emulation on up to `connections` keep-alive connections that a
    worker's clients share; one request at a time on each, in the order posted.
    Every answer but 204 counts as `emulation <status>` (or the exception's
    name) and calls the request's `failed`."""

    def __init__(self, endpoint: Endpoint, connections: int, timeout: float, pool: Pool) -> None:
        self.endpoint = endpoint
        self.connections = max(1, connections)
        self.timeout = timeout
        self.pool = pool
        self.head = (
            f"POST {endpoint.emulation_path} HTTP/1.1\r\nHost: {endpoint.netloc}\r\n"
            "Content-Type: application/json\r\n"
        ).encode("latin-1")
        self.queue: asyncio.Queue[tuple[bytes, Callable[[], None] | None]] = asyncio.Queue()
        self.idle = 0
        self.tasks: list[asyncio.Task[None]] = []

    def post(
        self, session: str, node: str, data: bytes, failed: Callable[[], None] | None = None
    ) -> None:
        """Queue `data` (encoded commands) for the stream of `session` on `node`."""
        body = {"session": session, "node": node, "data": data.decode()}
        self.queue.put_nowait((json.dumps(body, separators=(",", ":")).encode(), failed))
        if self.idle == 0 and len(self.tasks) < self.connections:
            self.tasks.append(asyncio.get_running_loop().create_task(self._connection()))

    async def _connection(self) -> None:
        endpoint = self.endpoint
        stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                self.idle += 1
                try:
                    body, failed = await self.queue.get()
                finally:
                    self.idle -= 1
                problem = ""
                try:
                    async with asyncio.timeout(self.timeout):
                        if stream is None:
                            context = ssl.create_default_context() if endpoint.secure else None
                            stream = await asyncio.open_connection(
                                endpoint.host, endpoint.port, ssl=context
                            )
                        reader, writer = stream
                        length = b"Content-Length: %d\r\n\r\n" % len(body)
                        writer.write(self.head + length + body)
                        status, keep, _ = await read_response(reader)
                    if not keep:
                        writer.close()
                        stream = None
                    if status != 204:
                        problem = str(status)
                except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
                    problem = type(exc).__name__
                    if stream is not None:
                        stream[1].close()
                    stream = None
                if problem:
                    self.pool.stats.error(f"emulation {problem}")
                    if failed is not None:
                        failed()
        finally:
            if stream is not None:
                stream[1].close()

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()


class StreamConnection(asyncio.Protocol):
    """One HTTP stream of a `StreamSubscriber`: sends its request, reads the
    chunked response, hands the messages to the client; `send` posts commands
    to /emulation for the session the connect reply named."""

    def __init__(
        self, client: StreamSubscriber, request: bytes, sse: bool, emulation: Emulation
    ) -> None:
        self.client = client
        self.request = request
        self.sse = sse
        self.emulation = emulation
        self.transport: asyncio.Transport | None = None
        self.head = True  # the response head is still to come
        self.parts: list[bytes] = []  # bytes received but not parsed yet
        self.have = 0  # their length
        self.need = 0  # bytes the next parse needs (at least)
        self.tail = b""  # a line not yet complete
        self.event: list[bytes] = []  # data lines of an SSE event not yet complete
        self.session = ""
        self.node = ""
        self.code: int | None = None  # of the server's disconnect push

    # Carrier -------------------------------------------------------------------

    @property
    def is_disconnected(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    def send(self, msg_type: WSMsgType, message: bytes) -> None:
        """Commands (a pong, a resubscribe) to the server, through /emulation."""
        self.post(message)

    def post(self, message: bytes, failed: Callable[[], None] | None = None) -> None:
        if self.session and not self.is_disconnected:
            self.emulation.post(self.session, self.node, message, failed)

    def send_close(self, close_code: WSCloseCode = WSCloseCode.OK) -> None:
        """A stream has no close frame: leaving is closing the connection."""

    def disconnect(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # asyncio.Protocol -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self.client.opened(self)
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.lost(self)

    def data_received(self, data: bytes) -> None:
        # The hot path: usually one chunk of one publication per call.
        if self.parts:
            self.parts.append(data)
            self.have += len(data)
            if self.have < self.need:
                return
            data = b"".join(self.parts)
            self.parts = []
        if self.head:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self._hold(data, len(data) + 1)
                return
            if not self._response(data[:end]):
                return
            self.head = False
            data = data[end + 4 :]
        bodies = []
        pos, size = 0, len(data)
        while pos < size:
            eol = data.find(b"\r\n", pos)
            if eol < 0:
                self._hold(data[pos:], size - pos + 1)
                break
            try:
                length = int(data[pos:eol].split(b";", 1)[0], 16)
            except ValueError:
                self._broken("malformed chunk")
                return
            if length == 0:  # the end of the stream: the server closes next
                break
            start = eol + 2
            end = start + length
            if end + 2 > size:
                self._hold(data[pos:], end + 2 - pos)
                break
            bodies.append(data[start:end])
            pos = end + 2
        if bodies:
            self._messages(bodies[0] if len(bodies) == 1 else b"".join(bodies))

    def _hold(self, data: bytes, need: int) -> None:
        """Keep `data` until at least `need` bytes (with it) arrived."""
        self.parts, self.have, self.need = [data], len(data), need

    def _response(self, head: bytes) -> bool:
        """Check the response head: 200 and chunked, else the client fails."""
        lines = head.split(b"\r\n")
        try:
            status = int(lines[0].split()[1])
        except (IndexError, ValueError):
            self._broken("malformed response")
            return False
        if status != 200:
            self.client.refused(self, f"http {status}")
            return False
        chunked = any(
            line.split(b":", 1)[0].strip().lower() == b"transfer-encoding"
            and b"chunked" in line.lower()
            for line in lines[1:]
        )
        if not chunked:
            self._broken("response not chunked")
            return False
        return True

    def _broken(self, kind: str) -> None:
        self.client.refused(self, kind)

    def _messages(self, payload: bytes) -> None:
        """Chunk bodies: complete lines are handled, a partial one kept."""
        client = self.client
        if client.transport is not self:
            return  # a connection this client already left
        if self.tail:
            payload, self.tail = self.tail + payload, b""
        if payload[-1:] != b"\n":
            cut = payload.rfind(b"\n") + 1
            payload, self.tail = payload[:cut], payload[cut:]
            if not payload:
                return
        now = time.time_ns()
        if self.sse:
            if not self.event and payload[-2:] == b"\n\n":
                found = _SSE_PUBLICATION.findall(payload)
                if found and len(found) == payload.count(b"\n\n"):
                    for sent, step, offset in found:
                        client.count(int(offset) if offset else 0, int(sent), int(step), now)
                    return
            lines = self._events(payload)
        else:
            found = _HTTP_STREAM_PUBLICATION.findall(payload)
            if found and len(found) == payload.count(b"\n"):
                for sent, step, offset in found:
                    client.count(int(offset) if offset else 0, int(sent), int(step), now)
                return
            lines = payload.split(b"\n")
        try:
            messages = [_json(line.decode()) for line in lines if line]
        except ValueError:  # UnicodeDecodeError too
            self._broken("malformed message")
            return
        client.handle(self, messages, now)

    def _events(self, payload: bytes) -> list[bytes]:
        """The messages of the SSE events `payload` (complete lines) completes:
        an event's data lines joined, each line of that a message."""
        out: list[bytes] = []
        for line in payload.split(b"\n")[:-1]:
            if line[-1:] == b"\r":
                line = line[:-1]
            if not line:
                if self.event:
                    out.extend(b"\n".join(self.event).split(b"\n"))
                    self.event = []
                continue
            name, _, value = line.partition(b":")
            if name == b"data":  # a comment (no name) and other fields are skipped
                self.event.append(value[1:] if value[:1] == b" " else value)
        return out


class StreamSubscriber(Receiver):
    """One simulated client over an HTTP stream (its `StreamConnection`s call it)."""

    pool: StreamPool

    def opened(self, stream: StreamConnection) -> None:
        self.transport = stream
        self.live += 1
        self.pool.stats.connected += 1

    def connected(self, result: dict[str, Any]) -> None:
        """The connect reply: subscribe (recovering when positioned) through /emulation."""
        stream = self.transport
        if not isinstance(stream, StreamConnection):
            return
        stream.session = str(result.get("session", ""))
        stream.node = str(result.get("node", ""))
        if not stream.session:
            self.pool.stats.error("connect reply without a session")
            self.fail(SubscribeFailed("connect"))
            return
        position = (self.offset, self.epoch) if self.recovering else None
        name = self.pool.channel_names[self.channel]

        def failed() -> None:
            if self.transport is stream and not self.subscribed:
                self.fail(SubscribeFailed("subscribe"))

        stream.post(self.pool.codec.subscribe(name, position), failed)

    def disconnect_push(self, transport: Carrier, body: dict[str, Any]) -> None:
        """The server's close code, as a WebSocket close frame would carry it."""
        if isinstance(transport, StreamConnection) and transport.code is None:
            transport.code = int(body.get("code", 0))
            self.pool.stats.closed(transport.code)

    def refused(self, stream: StreamConnection, kind: str) -> None:
        """The stream cannot go on (`kind` counted as an error): a client not yet
        subscribed fails (its open returns False); one that was is dropped and
        reconnects as after any drop (1006)."""
        self.pool.stats.error(kind)
        if stream is self.transport and self.ready is not None and not self.ready.done():
            self.fail(SubscribeFailed(kind))
        else:
            stream.disconnect()

    def lost(self, stream: StreamConnection) -> None:
        if not self.gone(stream):
            return
        pool, stats = self.pool, self.pool.stats
        code = stream.code
        if code is None:
            stats.closed(NO_CLOSE_FRAME)
            code = NO_CLOSE_FRAME
        if code < NO_RECONNECT_FROM:
            pool.reconnect_later(self)


class StreamPool(Pool):
    """A worker's stream clients (`transport` "sse" or "http_stream"), with the
    /emulation connections they share."""

    def __init__(
        self,
        transport: str,
        urls: list[str],
        codec: Codec,
        channel_names: list[str],
        timeout: float,
        token: Callable[[int], str],
        emulation_connections: int = EMULATION_CONNECTIONS,
    ) -> None:
        super().__init__(urls, codec, channel_names, timeout, token)
        self.transport = transport
        self.endpoints = [endpoint_of(url, transport) for url in urls]
        self.emulations = [
            Emulation(endpoint, emulation_connections, timeout, self) for endpoint in self.endpoints
        ]
        self._ssl = ssl.create_default_context() if self.endpoints[0].secure else None

    def request(self, client: Receiver, endpoint: Endpoint) -> bytes:
        """The stream's HTTP request for `client`: its connect command in it."""
        connect = self.codec.connect(self.token(client.index))
        head = f"Host: {endpoint.netloc}\r\n"
        if self.transport == "sse":
            query = quote(connect.decode(), safe="")
            return (
                f"GET {endpoint.stream_path}?cf_connect={query} HTTP/1.1\r\n{head}"
                "Accept: text/event-stream\r\n\r\n"
            ).encode("latin-1")
        return (
            f"POST {endpoint.stream_path} HTTP/1.1\r\n{head}"
            f"Content-Type: application/json\r\nContent-Length: {len(connect)}\r\n\r\n"
        ).encode("latin-1") + connect

    async def dial(self, client: Receiver) -> Carrier:
        assert isinstance(client, StreamSubscriber)
        which = client.index % len(self.endpoints)
        endpoint, emulation = self.endpoints[which], self.emulations[which]
        request = self.request(client, endpoint)
        sse = self.transport == "sse"
        _, stream = await asyncio.get_running_loop().create_connection(
            lambda: StreamConnection(client, request, sse, emulation),
            endpoint.host,
            endpoint.port,
            ssl=self._ssl,
        )
        return stream

    async def close(self, timeout: float = 5.0) -> None:
        for emulation in self.emulations:
            emulation.close()
        await super().close(timeout)
