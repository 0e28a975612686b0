"""Hostile clients of the HTTP transports, on real sockets, each loop bounded: a
stream that never reads is closed as slow with the server's memory for it
within its budget; an /emulation flood is refused and its stream closed (3013)
while others are served; garbage bodies are refused without a traceback; a
stream client that sends after its request is dropped; and a node shutting
down tells every stream why before its end."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import socket
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from wsfan.node import Node

from tests.conftest import TIMEOUT_SCALE
from tests.processes import clean_env, running
from tests.streams_client import TIMEOUT, Clients, Stream, UniWebSocket

# config/default.toml has presence and join/leave off outside namespaces; the tests
# below use them (or a presence call) on channels such as "news", so they say so.
WITH_PRESENCE = {"presence": True, "join_leave": True}

BUDGET = 65536  # client.max_unsent_bytes of the slow-reader tests
PAD = "x" * 4000
MESSAGE = len(PAD) + 200  # one publication on the wire, with its envelope and framing
MAX_PUBLICATIONS = 20000  # ~80 MB: far more than any loopback socket buffers


@pytest.fixture
def port(http_server, http_port: int) -> int:
    """The port of this test's server (started)."""
    return http_port


class RawStream:
    """A stream request on a bare socket with a small receive buffer: it reads
    only when told to."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.received = b""
        self._loop = asyncio.get_running_loop()

    @classmethod
    async def open(cls, port: int, request: bytes, rcvbuf: int = 4096) -> RawStream:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        stream = cls(sock)
        await stream._loop.sock_sendall(sock, request)
        return stream

    async def read_until(self, pattern: bytes) -> bytes:
        """Reads until `pattern` has come; everything received so far."""
        while pattern not in self.received:
            data = await asyncio.wait_for(self._loop.sock_recv(self.sock, 65536), TIMEOUT)
            assert data, f"closed before {pattern!r}: {self.received[-300:]!r}"
            self.received += data
        return self.received

    async def send(self, data: bytes) -> None:
        await self._loop.sock_sendall(self.sock, data)

    async def until_closed(self) -> None:
        """Reads until the server closes the connection (or resets it)."""
        while True:
            try:
                data = await asyncio.wait_for(self._loop.sock_recv(self.sock, 65536), TIMEOUT)
            except ConnectionResetError:
                return
            if not data:
                return

    def close(self) -> None:
        self.sock.close()


def head(method: str, target: str, port: int, body: bytes = b"") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    if method == "POST":
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def field(received: bytes, name: str) -> str:
    found = re.search(rb'"%s":"([^"]+)"' % name.encode(), received)
    assert found, received[-300:]
    return found.group(1).decode()


async def stalled_subscriber(port: int, clients: Clients, kind: str) -> tuple[RawStream, str]:
    """A `kind` stream subscribed to "news" that will not read again; its client id."""
    if kind == "uni_http_stream":
        body = json.dumps({"subs": {"news": {}}}).encode()
        raw = await RawStream.open(port, head("POST", "/connection/uni_http_stream", port, body))
        return raw, field(await raw.read_until(b'"subs"'), "client")
    connect = quote(json.dumps({"id": 1, "connect": {}}))
    raw = await RawStream.open(port, head("GET", f"/connection/sse?cf_connect={connect}", port))
    received = await raw.read_until(b'"node"')
    stream = Stream.__new__(Stream)  # only its session and node, for `emulate`
    stream.session, stream.node = field(received, "session"), field(received, "node")
    assert await clients.emulate(stream, {"id": 2, "subscribe": {"channel": "news"}}) == 204
    await raw.read_until(b'"id":2')
    return raw, field(received, "client")


@pytest.mark.settings(client={"max_unsent_bytes": BUDGET})
@pytest.mark.parametrize("kind", ["sse", "uni_http_stream"])
@pytest.mark.gen_test(timeout=60 * TIMEOUT_SCALE)
async def test_a_stream_that_never_reads_is_closed_as_slow_with_its_memory_in_budget(
    port, node: Node, kind
):
    async with Clients(port) as clients:
        raw, client_id = await stalled_subscriber(port, clients, kind)
        try:
            session = node.hub.session(client_id)
            assert session is not None
            most_held = most_unsent = 0
            for published in range(MAX_PUBLICATIONS):
                await node.publish("news", PAD)
                most_held = max(most_held, session.outbox.held_bytes)
                most_unsent = max(most_unsent, session.transport.unsent_bytes())
                if session.is_closed:
                    break
                if published % 10 == 0:
                    await asyncio.sleep(0.005)  # the hub flushes
            assert session.is_closed, f"still open after {published} publications"
            assert most_held <= BUDGET + MESSAGE, most_held
            assert most_unsent <= BUDGET, most_unsent
            assert (await clients.metrics())["wsfan_disconnects_total{code=3008}"] == 1
        finally:
            raw.close()


@pytest.mark.settings(
    channels=WITH_PRESENCE, transports={"max_request_body_bytes": 4096, "emulation_rate": 50.0}
)
@pytest.mark.gen_test(timeout=30 * TIMEOUT_SCALE)
async def test_an_emulation_flood_is_refused_and_its_stream_closed_3013_while_others_are_served(
    port,
):
    async with Clients(port) as attacker, Clients(port, source="127.0.0.2") as other:
        bystander = await other.connect("sse")
        stream = await attacker.connect("http_stream")
        commands = [{"id": i, "presence_stats": {"channel": "news"}} for i in range(10, 60)]
        flood = [attacker.emulate(stream, *commands) for _ in range(200)]  # ~2.5 KB each
        statuses = Counter(await asyncio.gather(*flood))
        assert statuses[429] >= 100, statuses  # past the burst (2 x emulation_rate)
        messages = await stream.rest()
        shed = {"code": 3013, "reason": "too many requests", "reconnect": True}
        assert messages[-1] == {"push": {"disconnect": shed}}
        assert stream.clean_end
        # Another address is neither rate limited nor slowed down.
        assert await other.emulate(bystander, {"id": 2, "presence_stats": {"channel": "a"}}) == 204
        assert "presence_stats" in await bystander.reply(2)


GARBAGE = {
    "random-bytes": os.urandom(3000),
    # Far past the JSON decoder's recursion limit, and still within a request head
    # once percent-encoded in cf_connect.
    "deep-nesting": b"[" * 5000 + b"]" * 5000,
    "deep-objects": b'{"a":' * 2000 + b"1" + b"}" * 2000,
    "not-utf8": b'\xff\xfe{"id":1,"connect":{}}',
}
BAD_REQUEST = {"code": 3501, "reason": "bad request", "reconnect": False}
ENDPOINTS = [
    "POST /emulation",
    "POST /connection/http_stream",
    "POST /connection/uni_http_stream",
    "POST /connection/uni_sse",
    "GET /connection/sse",
    "GET /connection/uni_sse",
    "WS /connection/uni_websocket",
]


async def answer_to(clients: Clients, endpoint: str, body: bytes) -> tuple[int, Any]:
    """(HTTP status, what came after: the messages of a 200 stream, or the close
    code of a uni WebSocket)."""
    method, path = endpoint.split()
    if method == "WS":
        ws = await clients.uni("uni_websocket")
        assert isinstance(ws, UniWebSocket)
        await ws.ws.send_bytes(body)
        messages = await ws.rest()
        return 101, (messages, ws.close_code)
    if method == "GET":
        query = "?cf_connect=" + quote(body)
        stream = await clients.open("GET", path + query)
    else:
        stream = await clients.open("POST", path, body, {"Content-Type": "text/plain"})
    if stream.status != 200:
        return stream.status, await stream.text()
    messages = await stream.rest()
    assert stream.clean_end
    return 200, messages


@pytest.mark.parametrize("garbage", list(GARBAGE))
@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.gen_test
async def test_garbage_is_refused_without_a_traceback(port, endpoint, garbage, caplog):
    async with Clients(port) as clients:
        with caplog.at_level(logging.INFO):
            status, after = await answer_to(clients, endpoint, GARBAGE[garbage])
        if status == 101:  # the uni WebSocket: closed as a bad request, nothing sent
            assert after == ([], 3501)
        elif status == 200:  # a stream: one disconnect push (3501), then its end
            assert [json.dumps(m) for m in after] in (
                [json.dumps({"push": {"disconnect": BAD_REQUEST}})],
                [json.dumps({"disconnect": BAD_REQUEST})],
            ), after
        else:
            assert 400 <= status < 500, (status, after)
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
        assert errors == []


@pytest.mark.gen_test
async def test_a_stream_client_that_sends_after_its_request_is_dropped(port, node: Node):
    body = json.dumps({"id": 1, "connect": {}}).encode()
    raw = await RawStream.open(port, head("POST", "/connection/http_stream", port, body))
    try:
        await raw.read_until(b'"id":1')
        assert node.hub.num_clients == 1
        await raw.send(head("GET", "/connection/http_stream", port))  # pipelining, say
        await raw.until_closed()
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while node.hub.num_clients:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
    finally:
        raw.close()


SHUTDOWN = {"code": 3001, "reason": "shutdown", "reconnect": True}


@pytest.mark.gen_test(timeout=30 * TIMEOUT_SCALE)
async def test_a_node_shutting_down_tells_every_stream_why_before_its_end(tmp_path: Path):
    env = clean_env(
        WSFAN_EMBEDDED__ENABLED="false",
        WSFAN_BROKER__TYPE="memory",
        WSFAN_LOG__LEVEL="warning",
    )
    with running(tmp_path, env, ("--workers", "1")) as server:
        server.wait_ready()
        async with Clients(server.port) as clients:
            opened: list[Stream | UniWebSocket] = [
                await clients.connect("http_stream"),
                await clients.connect("sse"),
            ]
            for kind in ("uni_sse", "uni_http_stream", "uni_websocket"):
                uni = await clients.uni(kind, {})
                assert "connect" in await uni.recv()
                opened.append(uni)
            os.kill(server.proc.pid, signal.SIGTERM)
            for stream in opened:
                last = (await stream.rest())[-1]
                if isinstance(stream, UniWebSocket):
                    assert last == {"disconnect": SHUTDOWN}
                    assert stream.close_code == 3001
                elif stream in opened[:2]:
                    assert last == {"push": {"disconnect": SHUTDOWN}}
                    assert stream.clean_end
                else:
                    assert last == {"disconnect": SHUTDOWN}
                    assert stream.clean_end
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, server.proc.wait, 15) == 0
