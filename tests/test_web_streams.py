"""The bidirectional streams (http_stream, sse) read with a plain HTTP client:
the connect reply, the answer's headers, commands through /emulation answered on
the stream, pings and pongs, disconnect pushes before the stream ends, the
refusals, and the connection limits counting streams."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator

import aiohttp
import pytest
from tornado.httpclient import HTTPClientError
from tornado.ioloop import IOLoop
from tornado.web import Application
from wsfan.api.keys import DEVELOPMENT_KEY
from wsfan.auth.cli import mint
from wsfan.node import Node
from wsfan.protocol import Encoding

from tests.client import ProtoClient
from tests.conftest import TIMEOUT_SCALE
from tests.streams_client import BIDIRECTIONAL, Clients, serving_as_run_py

# config/default.toml has presence and join/leave off outside namespaces; the tests
# below use them (or a presence call) on channels such as "news", so they say so.
WITH_PRESENCE = {"presence": True, "join_leave": True}

each_kind = pytest.mark.parametrize("kind", BIDIRECTIONAL)


@pytest.fixture
def port(http_server, http_port: int) -> int:
    """The port of this test's server (started)."""
    return http_port


def token(node: Node, user: str) -> str:
    return mint(node.settings.auth.hmac_secret, user)


@each_kind
@pytest.mark.gen_test
async def test_connect_reply_carries_a_session_secret_and_the_node(port, node: Node, kind):
    async with Clients(port) as clients:
        stream = await clients.connect(kind)
        assert stream.node == node.cluster.uid
        assert stream.session != stream.client
        assert len(stream.session) >= 32  # a secret, not guessable


@each_kind
@pytest.mark.gen_test
async def test_stream_answer_is_chunked_and_nothing_may_cache_buffer_or_compress_it(port, kind):
    content_type = {"http_stream": "application/x-ndjson", "sse": "text/event-stream"}[kind]
    async with Clients(port) as clients:
        stream = await clients.start(kind, headers={"Accept-Encoding": "gzip, deflate, br"})
        assert stream.status == 200
        headers = stream.headers
        assert headers["Content-Type"] == content_type
        assert headers["Transfer-Encoding"] == "chunked"
        assert "no-cache" in headers["Cache-Control"]
        assert "no-store" in headers["Cache-Control"]
        assert headers["X-Accel-Buffering"] == "no"
        assert "Content-Encoding" not in headers
        assert "Content-Length" not in headers


@each_kind
@pytest.mark.gen_test
async def test_commands_through_emulation_are_answered_on_the_stream(port, kind):
    async with Clients(port) as clients:
        stream = await clients.connect(kind)
        subscribe = {"id": 2, "subscribe": {"channel": "news"}}
        publish = {"id": 3, "publish": {"channel": "news", "data": {"n": 1}}}
        assert await clients.emulate(stream, subscribe, publish) == 204
        assert "subscribe" in await stream.reply(2)
        assert "publish" in await stream.reply(3)
        assert (await stream.push("pub", "news"))["pub"]["data"] == {"n": 1}


@each_kind
@pytest.mark.gen_test
async def test_emulation_requests_are_handled_in_the_order_they_were_answered(port, kind):
    async with Clients(port) as clients:
        stream = await clients.connect(kind)
        assert await clients.emulate(stream, {"id": 2, "subscribe": {"channel": "news"}}) == 204
        for i in range(3, 8):
            publish = {"id": i, "publish": {"channel": "news", "data": i}}
            assert await clients.emulate(stream, publish) == 204
        data = [(await stream.push("pub", "news"))["pub"]["data"] for _ in range(5)]
        assert data == [3, 4, 5, 6, 7]


@pytest.mark.settings(channels=WITH_PRESENCE, client={"ping_interval": 0.1, "pong_timeout": 0.2})
@each_kind
@pytest.mark.gen_test
async def test_pings_arrive_and_pongs_through_emulation_keep_the_stream(port, kind):
    async with Clients(port) as clients:
        stream = await clients.connect(kind)
        pings = 0
        while pings < 5:  # 0.5 s: more than pong_timeout twice over
            if await stream.recv() == {}:
                pings += 1
                assert await clients.emulate(stream, {}) == 204
        assert await clients.emulate(stream, {"id": 2, "presence_stats": {"channel": "a"}}) == 204
        assert "presence_stats" in await stream.reply(2)


@pytest.mark.settings(client={"ping_interval": 0.1, "pong_timeout": 0.2})
@each_kind
@pytest.mark.gen_test
async def test_a_stream_that_does_not_pong_gets_disconnect_3012_before_it_ends(port, kind):
    async with Clients(port) as clients:
        stream = await clients.connect(kind)
        messages = await stream.rest()
        assert messages[-1] == {
            "push": {"disconnect": {"code": 3012, "reason": "no pong", "reconnect": True}}
        }
        assert stream.clean_end  # the last chunk came after the push


@pytest.mark.parametrize(
    ("disconnect", "expected"),
    [
        (None, {"code": 3503, "reason": "force disconnect", "reconnect": False}),
        (
            {"code": 3555, "reason": "banned"},
            {"code": 3555, "reason": "banned", "reconnect": False},
        ),
        ({"code": 4100, "reason": "moved"}, {"code": 4100, "reason": "moved", "reconnect": True}),
    ],
    ids=["default", "35xx", "custom"],
)
@each_kind
@pytest.mark.gen_test
async def test_server_api_disconnect_is_pushed_with_its_code_before_the_stream_ends(
    port, node: Node, kind, disconnect, expected
):
    async with Clients(port) as clients:
        stream = await clients.connect(kind, token=token(node, "alice"))
        params: dict[str, object] = {"user": "alice"}
        if disconnect is not None:
            params["disconnect"] = disconnect
        headers = {"X-API-Key": DEVELOPMENT_KEY, "Content-Type": "application/json"}
        status, _, _ = await clients.post("/api/disconnect", json.dumps(params), headers)
        assert status == 200
        assert await stream.rest() == [{"push": {"disconnect": expected}}]
        assert stream.clean_end


@each_kind
@pytest.mark.gen_test
async def test_a_refused_connect_gets_disconnect_3500_before_the_stream_ends(port, kind):
    async with Clients(port) as clients:
        stream = await clients.start(kind, {"token": "not-a-token"})
        assert stream.status == 200
        disconnect = {"code": 3500, "reason": "invalid token", "reconnect": False}
        assert await stream.rest() == [{"push": {"disconnect": disconnect}}]
        assert stream.clean_end


@each_kind
@pytest.mark.gen_test
async def test_a_malformed_connect_command_gets_disconnect_3501(port, kind):
    async with Clients(port) as clients:
        if kind == "sse":
            stream = await clients.open("GET", "/connection/sse", query={"cf_connect": "[1,"})
        else:
            stream = await clients.open("POST", "/connection/http_stream", "[1,")
        assert stream.status == 200
        messages = await stream.rest()
        assert [m["push"]["disconnect"]["code"] for m in messages] == [3501]


@each_kind
@pytest.mark.gen_test
async def test_a_stream_without_a_connect_command_is_400(port, kind):
    async with Clients(port) as clients:
        if kind == "sse":
            stream = await clients.open("GET", "/connection/sse")
        else:
            stream = await clients.open("POST", "/connection/http_stream", "")
        assert stream.status == 400


@each_kind
@pytest.mark.gen_test
async def test_a_stream_by_the_other_method_is_405(port, kind):
    async with Clients(port) as clients:
        if kind == "sse":
            stream = await clients.open("PUT", "/connection/sse", "{}")
        else:
            stream = await clients.open("GET", "/connection/http_stream")
        assert stream.status == 405


@each_kind
@pytest.mark.gen_test
async def test_a_stream_over_http_1_0_is_505(port, kind):
    command = json.dumps({"id": 1, "connect": {}})
    query = {"cf_connect": command} if kind == "sse" else None
    body = None if kind == "sse" else command
    async with (
        aiohttp.ClientSession(version=aiohttp.HttpVersion10) as http,
        http.request(
            "GET" if kind == "sse" else "POST",
            f"http://127.0.0.1:{port}/connection/{kind}",
            params=query,
            data=body,
        ) as response,
    ):
        assert response.status == 505


# Limits counting streams ---------------------------------------------------------


@pytest.mark.settings(server={"max_connections": 2})
@each_kind
@pytest.mark.gen_test
async def test_server_max_connections_counts_streams_and_one_more_is_503(port, node: Node, kind):
    async with Clients(port) as clients:
        await clients.connect(kind)
        await clients.connect(kind)
        assert (await clients.start(kind)).status == 503
        with pytest.raises(HTTPClientError) as refused:  # one count for every transport
            await ProtoClient.open(f"ws://127.0.0.1:{port}/connection/websocket", Encoding.JSON)
        assert refused.value.code == 503


@pytest.mark.settings(client={"max_connections_per_ip": 2})
@each_kind
@pytest.mark.gen_test
async def test_per_address_cap_counts_streams_and_one_more_gets_disconnect_3504(port, kind):
    async with Clients(port) as clients:
        first = await clients.connect(kind)
        await clients.connect(kind)
        websocket = await ProtoClient.open(
            f"ws://127.0.0.1:{port}/connection/websocket", Encoding.JSON
        )
        try:
            assert await websocket.closed() == (3504, "connection limit")  # one count for all
        finally:
            websocket.close()
        third = await clients.start(kind)
        assert third.status == 200
        disconnect = {"code": 3504, "reason": "connection limit", "reconnect": False}
        assert await third.rest() == [{"push": {"disconnect": disconnect}}]
        first.close()
        deadline = asyncio.get_running_loop().time() + 5 * TIMEOUT_SCALE
        while True:  # until the server has seen the first one go
            again = await clients.start(kind)
            message = await again.recv()
            if "id" in message:
                break
            assert asyncio.get_running_loop().time() < deadline, message
            await asyncio.sleep(0.02)


@pytest.mark.settings(client={"allowed_origins": ["https://app.example"]})
@pytest.mark.parametrize("path", ["/connection/sse", "/connection/uni_sse"])
@pytest.mark.gen_test
async def test_cf_connect_is_redacted_from_the_access_log(port, node: Node, path, caplog):
    secret_token = token(node, "alice")
    async with Clients(port) as clients:
        with caplog.at_level(logging.INFO, logger="tornado.access"):
            query = {"cf_connect": json.dumps({"token": secret_token})}
            origin = {"Origin": "https://evil.example"}
            stream = await clients.open("GET", path, query=query, headers=origin)
            assert stream.status == 403
        lines = [r.getMessage() for r in caplog.records if r.name == "tornado.access"]
        assert any(path in line for line in lines), lines
        assert not any(secret_token in line or "token" in line for line in lines), lines


@each_kind
@pytest.mark.gen_test
async def test_a_stream_ends_at_once_when_its_client_goes(port, node: Node, kind):
    async with Clients(port) as clients:
        stream = await clients.connect(kind)
        assert node.hub.num_clients == 1
        stream.close()
        deadline = asyncio.get_running_loop().time() + 5 * TIMEOUT_SCALE
        while node.hub.num_clients:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)


# Served as run.py serves ------------------------------------------------------------


@pytest.fixture
def served(app: Application, node: Node, io_loop: IOLoop) -> Iterator[int]:
    """The port of `app` served as run.py serves it."""
    yield from serving_as_run_py(app, node.settings, io_loop)


@pytest.mark.parametrize(
    "path", ["/connection/http_stream", "/connection/uni_http_stream", "/connection/uni_sse"]
)
@pytest.mark.gen_test
async def test_a_connect_body_reaches_the_stream_where_run_py_serves_it(served, path):
    async with Clients(served) as clients:
        body = json.dumps({"id": 1, "connect": {}} if path.endswith("/http_stream") else {})
        stream = await clients.open("POST", path, body)
        assert stream.status == 200
        assert "connect" in await stream.recv()


@pytest.mark.settings(channels=WITH_PRESENCE)
@pytest.mark.gen_test
async def test_an_emulation_body_reaches_the_stream_where_run_py_serves_it(served):
    async with Clients(served) as clients:
        stream = await clients.connect("http_stream")
        assert await clients.emulate(stream, {"id": 2, "presence_stats": {"channel": "a"}}) == 204
        assert "presence_stats" in await stream.reply(2)


@pytest.mark.settings(transports={"max_request_body_bytes": 1024})
@pytest.mark.parametrize("path", ["/connection/http_stream", "/emulation"])
@pytest.mark.gen_test
async def test_a_body_one_byte_over_the_limit_is_413_where_run_py_serves_it(served, path):
    async with Clients(served) as clients:
        status, _, text = await clients.post(path, " " * 1025)
        assert status == 413, text
