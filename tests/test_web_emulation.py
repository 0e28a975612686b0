"""POST /emulation on one instance: each row of the table in
server/web/emulation.py's docstring, at its edge where it has one."""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Iterator

import pytest
from tornado.ioloop import IOLoop
from tornado.web import Application
from wsfan.node import Node

from tests.streams_client import Clients, serving_as_run_py

ORIGIN = "https://app.example"
PRESENCE = {"id": 7, "presence_stats": {"channel": "news"}}


@pytest.fixture
def port(http_server, http_port: int) -> int:
    """The port of this test's server (started)."""
    return http_port


@pytest.fixture
def served(app: Application, node: Node, io_loop: IOLoop) -> Iterator[int]:
    """The port of `app` served as run.py serves it (X- headers read)."""
    yield from serving_as_run_py(app, node.settings, io_loop)


def body_of_size(size: int, node: str) -> str:
    """An /emulation body of exactly `size` bytes, for an unknown session of `node`."""
    pad = size - len(json.dumps({"session": "", "node": node, "data": ""}))
    return json.dumps({"session": "x" * pad, "node": node, "data": ""})


@pytest.mark.settings(client={"allowed_origins": [ORIGIN]}, transports={"cors_max_age": 123})
@pytest.mark.gen_test
async def test_preflight_is_204_with_the_origin_echoed_and_max_age(port):
    async with Clients(port) as clients:
        headers = {
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        }
        status, answer, _ = await clients.call("OPTIONS", "/emulation", headers=headers)
        assert status == 204
        assert answer["Access-Control-Allow-Origin"] == ORIGIN
        assert answer["Access-Control-Max-Age"] == "123"
        assert "POST" in answer["Access-Control-Allow-Methods"]
        assert answer["Access-Control-Allow-Headers"] == "content-type"


@pytest.mark.settings(client={"allowed_origins": [ORIGIN]})
@pytest.mark.gen_test
async def test_an_origin_the_policy_refuses_is_403(port, node: Node):
    async with Clients(port) as clients:
        stream = await clients.connect("http_stream")
        evil = {"Origin": "https://evil.example"}
        assert await clients.emulate(stream, PRESENCE, headers=evil) == 403
        assert await clients.emulate(stream, {"id": 8, "presence_stats": {"channel": "a"}}) == 204
        assert (await stream.recv())["id"] == 8  # the refused request's command never ran


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
@pytest.mark.gen_test
async def test_methods_other_than_post_are_405(port, method):
    async with Clients(port) as clients:
        status, answer, _ = await clients.call(
            method, "/emulation", "{}" if method != "GET" else None
        )
        assert status == 405
        assert answer["Allow"] == "POST, OPTIONS"


@pytest.mark.settings(transports={"max_request_body_bytes": 1024})
@pytest.mark.gen_test
async def test_a_body_of_max_request_body_bytes_passes_and_one_byte_more_is_413(port, node: Node):
    async with Clients(port) as clients:
        at_limit = body_of_size(1024, node.cluster.uid)
        assert len(at_limit.encode()) == 1024 and json.loads(at_limit)
        assert (await clients.post("/emulation", at_limit))[0] == 204
        over = body_of_size(1025, node.cluster.uid)
        assert (await clients.post("/emulation", over))[0] == 413


@pytest.mark.parametrize(
    "body",
    [
        "{not json",
        "[]",
        '"a string"',
        '{"session": "s", "node": "n"}',
        '{"session": 1, "node": "n", "data": ""}',
        '{"session": "s", "node": "n", "data": ["a"]}',
        '{"session": "s", "node": "n", "data": "\\ud800"}',
        b'{"session": "\xff", "node": "n", "data": ""}',
    ],
    ids=[
        "not-json",
        "array",
        "string",
        "no-data",
        "session-not-string",
        "data-not-string",
        "lone-surrogate",
        "not-utf8",
    ],
)
@pytest.mark.gen_test
async def test_a_malformed_body_is_400(port, body):
    async with Clients(port) as clients:
        headers = {"Content-Type": "application/json"}
        assert (await clients.post("/emulation", body, headers))[0] == 400


@pytest.mark.gen_test(timeout=10)
async def test_a_node_no_instance_answers_for_is_404(port, node: Node):
    async with Clients(port) as clients:
        stream = await clients.connect("sse")
        assert await clients.emulate(stream, PRESENCE, node="no-such-node") == 404


@pytest.mark.gen_test
async def test_an_unknown_session_is_204_and_ignored(port, node: Node):
    async with Clients(port) as clients:
        stream = await clients.connect("http_stream")
        assert await clients.emulate(stream, PRESENCE, session="unknown") == 204
        assert await clients.emulate(stream, {"id": 8, "presence_stats": {"channel": "a"}}) == 204
        assert (await stream.recv())["id"] == 8  # and reply 7 never came before it


@pytest.mark.parametrize("guess", ["client id", "random"])
@pytest.mark.gen_test
async def test_a_guessed_session_reaches_no_stream(port, node: Node, guess):
    async with Clients(port) as clients:
        stream = await clients.connect("http_stream")
        watcher = await clients.connect("sse")
        await clients.emulate(watcher, {"id": 2, "subscribe": {"channel": "guess"}})
        assert "subscribe" in await watcher.reply(2)
        session = stream.client if guess == "client id" else secrets.token_urlsafe(24)
        publish = {"id": 7, "publish": {"channel": "guess", "data": "forged"}}
        assert await clients.emulate(stream, publish, session=session) == 204
        # The stream's own next command comes back first: nothing ran for the guess,
        # neither on it nor anywhere else (no publication was made).
        assert await clients.emulate(stream, {"id": 8, "history": {"channel": "guess"}}) == 204
        reply = await stream.recv()
        assert reply["id"] == 8
        assert reply["history"].get("publications", []) == []
        assert await clients.emulate(watcher, {"id": 3, "presence_stats": {"channel": "a"}}) == 204
        await watcher.reply(3)
        assert [p for p in watcher.pushes if "pub" in p] == []


@pytest.mark.settings(transports={"emulation_rate": 1.0})
@pytest.mark.gen_test
async def test_requests_up_to_twice_emulation_rate_pass_and_one_more_is_429(port, node: Node):
    async with Clients(port) as clients:
        stream = await clients.connect("http_stream")
        assert [await clients.emulate(stream, {}) for _ in range(3)] == [204, 204, 429]


@pytest.mark.settings(transports={"emulation_rate": 0.0})
@pytest.mark.gen_test
async def test_emulation_rate_zero_turns_the_limit_off(port, node: Node):
    async with Clients(port) as clients:
        stream = await clients.connect("http_stream")
        assert {await clients.emulate(stream, {}) for _ in range(150)} == {204}


@pytest.mark.settings(transports={"emulation_rate": 1.0})
@pytest.mark.gen_test
async def test_the_rate_is_per_client_address_which_only_a_trusted_proxy_may_name(served):
    # 127.0.0.1 is a trusted proxy (server.trusted_proxies), 127.0.0.2 is not.
    async with Clients(served, source="127.0.0.2") as direct, Clients(served) as proxy:
        stream = await direct.connect("http_stream")
        spoofed = [{"X-Real-Ip": f"10.0.0.{i}", "X-Forwarded-For": f"10.1.0.{i}"} for i in range(3)]
        assert [await direct.emulate(stream, {}, headers=h) for h in spoofed] == [204, 204, 429]
        forwarded = {"X-Real-Ip": f"10.2.{uuid.uuid4().int % 250}.1"}
        assert await proxy.emulate(stream, {}, headers=forwarded) == 204  # another client
