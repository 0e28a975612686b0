"""A plain HTTP client for the stream transports, as `curl -N` or a browser's
EventSource reads them (aiohttp, no SDK).

- `Clients(port)`: an async context manager that opens streams and sends
  /emulation requests, and closes everything it opened on exit.
- `Stream`: one stream response; `recv` gives its messages (JSON values) in
  order, whatever the transport wraps them in (newline-delimited lines, or SSE
  `data:` events), and raises `Ended` once the response is over.
- `UniWebSocket`: /connection/uni_websocket the same way, one message per frame.

The bidirectional helpers speak the SDK's protocol: `connect` sends the connect
command (a POST body, or `cf_connect`), reads the reply and keeps its `session`
and `node`, which `emulate` names to send later commands.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from tornado.ioloop import IOLoop
from tornado.testing import bind_unused_port
from tornado.web import Application
from wsfan.config import Settings
from wsfan.web.endpoint import close_websockets
from wsfan.web.upgrade import make_server

from tests.conftest import TIMEOUT_SCALE

__all__ = [
    "BIDIRECTIONAL",
    "TIMEOUT",
    "UNIDIRECTIONAL",
    "Clients",
    "Ended",
    "Stream",
    "UniWebSocket",
    "serving_as_run_py",
]

TIMEOUT = 5 * TIMEOUT_SCALE
BIDIRECTIONAL = ("http_stream", "sse")
UNIDIRECTIONAL = ("uni_sse", "uni_http_stream", "uni_websocket")


def serving_as_run_py(app: Application, settings: Settings, io_loop: IOLoop) -> Iterator[int]:
    """`app` on a free port as run.py serves it (wsfan.web.upgrade.make_server:
    X- headers read from trusted proxies, no body read for a route that does not
    ask for one); yields the port, for a fixture to yield from."""
    sock, port = bind_unused_port()
    http, listener = make_server(app, settings)
    listener.add_sockets([sock])
    try:
        yield port
    finally:
        listener.stop()
        io_loop.run_sync(lambda: close_websockets(app))
        io_loop.run_sync(http.close_all_connections)


class Ended(Exception):
    """The stream (or the uni WebSocket) is over."""


class Stream:
    """One stream response, read as it arrives. `status` and `headers` are the
    answer's; a refused stream (not 200) carries its plain-text `text` instead."""

    def __init__(self, response: aiohttp.ClientResponse, sse: bool) -> None:
        self.response = response
        self.status = response.status
        self.headers = response.headers
        self.sse = sse
        self.session = self.node = self.client = ""
        self.pushes: deque[dict[str, Any]] = deque()
        self.clean_end: bool | None = None  # once ended: whether the last chunk came
        self._inbox: deque[Any] = deque()
        self._data: list[str] = []

    async def text(self) -> str:
        return await self.response.text()

    async def _line(self, timeout: float) -> str | None:
        """The next line (without its newline); None once the response is over."""
        try:
            line = await asyncio.wait_for(self.response.content.readline(), timeout)
        except aiohttp.ClientPayloadError:  # the connection ended inside the chunked body
            self.clean_end = False
            return None
        if not line:
            self.clean_end = True
            return None
        return line.decode().rstrip("\n")

    async def recv(self, timeout: float = TIMEOUT) -> Any:
        """The next message; `Ended` once the stream is over, TimeoutError if none
        comes within `timeout`."""
        while not self._inbox:
            line = await self._line(timeout)
            if line is None:
                raise Ended
            if not self.sse:
                if line:
                    self._inbox.append(json.loads(line))
            elif line.startswith("data:"):
                self._data.append(line[5:].removeprefix(" "))
            elif not line and self._data:  # an event ends with a blank line
                self._inbox.append(json.loads("\n".join(self._data)))
                self._data.clear()
        return self._inbox.popleft()

    async def reply(self, cmd_id: int) -> dict[str, Any]:
        """Reads until the reply to `cmd_id`; pushes met on the way go to `pushes`."""
        while True:
            message = await self.recv()
            if isinstance(message, dict):
                if message.get("id") == cmd_id:
                    return message
                if "push" in message:
                    self.pushes.append(message["push"])

    async def push(self, kind: str, channel: str | None = None) -> dict[str, Any]:
        """The next push of `kind` (and channel), skipping replies and pings."""
        for i, p in enumerate(self.pushes):
            if kind in p and (channel is None or p.get("channel") == channel):
                del self.pushes[i]
                return p
        while True:
            message = await self.recv()
            p = message.get("push") if isinstance(message, dict) else None
            if p is None:
                continue
            if kind in p and (channel is None or p.get("channel") == channel):
                return p
            self.pushes.append(p)

    async def rest(self, timeout: float = TIMEOUT) -> list[Any]:
        """Every message until the stream ends (TimeoutError if it does not)."""
        messages = []
        try:
            while True:
                messages.append(await self.recv(timeout))
        except Ended:
            return messages

    def close(self) -> None:
        self.response.close()


class UniWebSocket:
    """/connection/uni_websocket: the connect request went as the first message;
    each frame the server sends is one JSON value."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.close_code: int | None = None

    async def recv(self, timeout: float = TIMEOUT) -> Any:
        message = await asyncio.wait_for(self.ws.receive(), timeout)
        if message.type is aiohttp.WSMsgType.TEXT:
            return json.loads(message.data)
        self.close_code = self.ws.close_code
        raise Ended

    async def rest(self, timeout: float = TIMEOUT) -> list[Any]:
        messages = []
        try:
            while True:
                messages.append(await self.recv(timeout))
        except Ended:
            return messages


class Clients:
    """Streams and /emulation requests to the server on `port`; everything opened
    is closed on exit. Each request has a connection of its own (no keep-alive),
    from `source` (another loopback address is another client address)."""

    def __init__(self, port: int, source: str = "127.0.0.1") -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, force_close=True, local_addr=(source, 0)),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=TIMEOUT),
        )
        self._opened: list[Stream | UniWebSocket] = []

    async def __aenter__(self) -> Clients:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for opened in self._opened:
            if isinstance(opened, UniWebSocket):
                await opened.ws.close()
            else:
                opened.close()
        await self.http.close()

    # Streams -------------------------------------------------------------------

    async def open(
        self,
        method: str,
        path: str,
        body: bytes | str | None = None,
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Stream:
        """A stream request as sent; its answer, whatever it is (SSE parsing when
        the path is an SSE endpoint)."""
        response = await asyncio.wait_for(
            self.http.request(method, self.base + path, data=body, params=query, headers=headers),
            TIMEOUT,
        )
        stream = Stream(response, sse=path.partition("?")[0].endswith("sse"))
        self._opened.append(stream)
        return stream

    async def start(
        self, kind: str, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None
    ) -> Stream:
        """A bidirectional stream (`kind`: http_stream or sse) whose first request
        is the connect command with `params`; not read yet."""
        command = json.dumps({"id": 1, "connect": params or {}})
        if kind == "sse":
            query = {"cf_connect": command}
            return await self.open("GET", "/connection/sse", query=query, headers=headers)
        return await self.open("POST", "/connection/http_stream", command, headers=headers)

    async def connect(self, kind: str, **params: Any) -> Stream:
        """A connected bidirectional stream: its connect reply read, its `session`,
        `node` and `client` kept."""
        stream = await self.start(kind, params)
        assert stream.status == 200, (stream.status, await stream.text())
        result = (await stream.reply(1))["connect"]
        stream.session, stream.node, stream.client = (
            result["session"],
            result["node"],
            result["client"],
        )
        return stream

    async def uni(self, kind: str, request: Any = None, method: str = "") -> Stream | UniWebSocket:
        """A unidirectional stream of `kind` sending `request` (a JSON value, or a
        str sent as it is; None sends none): uni_sse by GET with `cf_connect`
        unless `method` is POST, the others as their endpoint takes it."""
        data = request if isinstance(request, str) or request is None else json.dumps(request)
        if kind == "uni_websocket":
            ws = await self.http.ws_connect(
                self.base.replace("http", "ws") + "/connection/uni_websocket"
            )
            opened = UniWebSocket(ws)
            self._opened.append(opened)
            if data is not None:
                await ws.send_str(data)
            return opened
        path = f"/connection/{kind}"
        if kind == "uni_sse" and method != "POST":
            query = {"cf_connect": data} if data is not None else None
            return await self.open("GET", path, query=query)
        return await self.open("POST", path, data)

    # /emulation ----------------------------------------------------------------

    async def emulate(
        self,
        stream: Stream,
        *commands: Any,
        session: str | None = None,
        node: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> int:
        """POST /emulation with `commands` for `stream` (or the `session` and `node`
        given instead); the answer's status."""
        body = {
            "session": stream.session if session is None else session,
            "node": stream.node if node is None else node,
            "data": "\n".join(json.dumps(c) for c in commands),
        }
        status, _, _ = await self.post("/emulation", json.dumps(body), headers)
        return status

    async def post(
        self, path: str, body: bytes | str, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, str]:
        """(status, headers, text) of a POST to `path`."""
        return await self.call("POST", path, body, headers)

    async def call(
        self,
        method: str,
        path: str,
        body: bytes | str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, str]:
        """(status, headers, text) of a request answered at once."""
        request = self.http.request(method, self.base + path, data=body, headers=headers)
        async with await asyncio.wait_for(request, TIMEOUT) as response:
            return response.status, response.headers, await response.text()

    async def metrics(self) -> dict[str, float]:
        """Every sample of /metrics, keyed as `name{label=value,...}`."""
        _, _, text = await self.call("GET", "/metrics")
        samples: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return samples
