"""The HTTP proxy end to end: real clients (raw protocol and the official
centrifuge-python SDK) against a server whose hooks are a real Tornado backend
speaking Centrifugo's proxy format (tests/proxy_backend.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from centrifuge import Client as SDKClient
from centrifuge import SubscriptionState
from tornado.ioloop import IOLoop
from wsfan.app.layer import AppLayer
from wsfan.app.proxy import ProxyHooks
from wsfan.compose import proxy_hooks
from wsfan.config import ConfigError, load_settings
from wsfan.node import Node
from wsfan.protocol import Encoding

from tests.client import ProtoClient
from tests.conftest import TIMEOUT_SCALE
from tests.processes import config_exit
from tests.proxy_backend import ProxyBackend, down_url, until

TIMEOUT = 5 * TIMEOUT_SCALE
TEST_TIMEOUT = 20 * TIMEOUT_SCALE
HEADERS = {"Cookie": "session=s3cret", "Authorization": "Bearer x", "X-Other": "not forwarded"}
CLOSED = {"allow_subscribe": False, "allow_publish": False, "allow_anonymous": False}
NAMESPACES = {
    "proxied": {
        **CLOSED,
        "subscribe_proxy": True,
        "publish_proxy": True,
        "sub_refresh_proxy": True,
        "history_size": 10,
        "history_ttl": 60.0,
    },
    "plain": {"allow_anonymous": True, "allow_publish": True},
}
pytestmark = pytest.mark.settings(namespaces=NAMESPACES)
BACKEND_REQUESTS = 4  # proxy.max_connections here


@pytest.fixture
def backend(node: Node, io_loop: IOLoop) -> Iterator[ProxyBackend]:
    """A backend answering every point, installed as `node`'s proxy (as `build`
    does from `[proxy]`), forwarding Cookie and Authorization."""
    backend = ProxyBackend()
    backend.start()
    settings = node.settings.with_overrides(
        proxy={
            **backend.endpoints(),
            "http_headers": ["Cookie", "Authorization"],
            "timeout": 1.0 * TIMEOUT_SCALE,
            "refresh_retry_interval": 0.1,
            "max_connections": BACKEND_REQUESTS,
        }
    )
    hooks = proxy_hooks(settings)
    assert isinstance(hooks, ProxyHooks)
    layer = AppLayer(None, hooks, settings, node.metrics)
    layer.attach(node.spawn)
    layer.start()
    node.app = layer
    yield backend
    io_loop.run_sync(layer.close)
    io_loop.run_sync(backend.stop)


async def _open(ws_url: str, encoding: Encoding = Encoding.JSON) -> ProtoClient:
    return await ProtoClient.open(ws_url, encoding, TIMEOUT, headers=HEADERS)


# Connect ----------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_a_connect_without_a_token_is_decided_by_the_backend(
    ws_url: str, node: Node, backend: ProxyBackend
):
    backend.allow("connect", user="alice", info={"plan": "pro"}, data={"welcome": 1})
    client = await _open(ws_url)
    try:
        result = await client.connect(name="tests", data={"hello": True})
        assert result["data"] == {"welcome": 1}
        session = node.hub.session(result["client"])
        assert session is not None and session.user == "alice"
        assert session.conn_info == {"plan": "pro"}
        asked = backend.last("connect")
        assert asked.body["data"] == {"hello": True} and asked.body["name"] == "tests"
        assert asked.headers["Cookie"] == "session=s3cret"
        assert asked.headers["Authorization"] == "Bearer x"
        assert "X-Other" not in asked.headers
    finally:
        client.close()


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_the_connect_proxys_subs_become_server_side_subscriptions_with_info_and_data(
    ws_url: str, node: Node, backend: ProxyBackend
):
    backend.allow(
        "connect",
        user="alice",
        channels=["plain:news"],
        subs={"proxied:room": {"info": {"role": "owner"}, "data": {"motd": "hi"}}},
    )
    client = await _open(ws_url)
    try:
        result = await client.connect()
        assert set(result["subs"]) == {"plain:news", "proxied:room"}
        assert result["subs"]["proxied:room"]["data"] == {"motd": "hi"}
        assert "data" not in result["subs"]["plain:news"]
        session = node.hub.session(result["client"])
        assert session is not None
        sub = session.subscriptions.active("proxied:room")
        assert sub is not None and sub.info.chan_info == {"role": "owner"}
    finally:
        client.close()


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_a_backend_error_code_reaches_the_client_unchanged(
    ws_url: str, backend: ProxyBackend
):
    backend.deny("connect", 1001, "not today")
    client = await _open(ws_url)
    try:
        error = (await client.call("connect", {}))["error"]
        assert error["code"] == 1001 and error["message"] == "not today"
    finally:
        client.close()


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_a_backend_disconnect_closes_with_its_code(ws_url: str, backend: ProxyBackend):
    backend.disconnect("connect", 4501, "banned")
    client = await _open(ws_url)
    try:
        await client.send({"id": 1, "connect": {}})
        code, _ = await client.closed()
        assert code == 4501
    finally:
        client.close()


# Subscribe, publish, rpc ----------------------------------------------------------------


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_the_subscribe_proxy_decides_whatever_allow_subscribe_says(
    ws_url: str, backend: ProxyBackend
):
    backend.allow("subscribe", info={"role": "reader"}, data={"motd": "hi"})
    client = await _open(ws_url)
    try:
        await client.connect()
        result = await client.result("subscribe", {"channel": "proxied:room"})
        assert result.get("data") == {"motd": "hi"}
        asked = backend.last("subscribe")
        assert asked.body["channel"] == "proxied:room"
        assert asked.headers["Cookie"] == "session=s3cret"  # forwarded after connect too
        backend.deny("subscribe", 103, "permission denied")
        error = (await client.call("subscribe", {"channel": "proxied:other"}))["error"]
        assert error["code"] == 103
    finally:
        client.close()


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_channels_without_the_proxy_option_follow_the_namespace(
    ws_url: str, backend: ProxyBackend
):
    client = await _open(ws_url)
    try:
        await client.connect()
        await client.result("subscribe", {"channel": "plain:room"})
        assert backend.requests("subscribe") == []
    finally:
        client.close()


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_the_publish_proxy_replaces_the_data_subscribers_get(
    ws_url: str, backend: ProxyBackend
):
    backend.allow("publish", data={"text": "cleaned"})
    client = await _open(ws_url)
    try:
        await client.connect()
        await client.result("subscribe", {"channel": "proxied:room"})
        await client.result("publish", {"channel": "proxied:room", "data": {"text": "raw"}})
        (pub,) = await client.publications("proxied:room", 1)
        assert pub["data"] == {"text": "cleaned"} and pub["offset"] == 1
        assert backend.last("publish").body["data"] == {"text": "raw"}
    finally:
        client.close()


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_a_publication_the_backend_skips_history_for_has_no_offset(
    ws_url: str, node: Node, backend: ProxyBackend
):
    backend.allow("publish", skip_history=True)
    client = await _open(ws_url)
    try:
        await client.connect()
        await client.result("subscribe", {"channel": "proxied:room"})
        await client.result("publish", {"channel": "proxied:room", "data": {"n": 1}})
        (pub,) = await client.publications("proxied:room", 1)
        assert not pub.get("offset")
        assert (await node.reads.position("proxied:room")).offset == 0
    finally:
        client.close()


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_rpc_is_answered_by_the_backend(ws_url: str, backend: ProxyBackend):
    backend.allow("rpc", data={"sum": 3})
    client = await _open(ws_url, Encoding.MSGPACK)
    try:
        await client.connect()
        result = await client.result("rpc", {"method": "add", "data": {"a": 1, "b": 2}})
        assert result["data"] == {"sum": 3}
        asked = backend.last("rpc").body
        assert asked["method"] == "add" and asked["encoding"] == "binary"
    finally:
        client.close()


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_binary_rpc_data_of_a_msgpack_client_travels_as_b64data(
    ws_url: str, backend: ProxyBackend
):
    backend.allow("rpc", b64data="AAEC")  # bytes 0, 1, 2
    client = await _open(ws_url, Encoding.MSGPACK)
    try:
        await client.connect()
        result = await client.result("rpc", {"method": "echo", "data": b"\xff\x00"})
        assert result["data"] == b"\x00\x01\x02"
        assert backend.last("rpc").body["b64data"] == "/wA="
    finally:
        client.close()


# Refresh and sub_refresh -----------------------------------------------------------------


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_the_refresh_proxy_extends_a_connection_the_connect_proxy_limited(
    ws_url: str, node: Node, backend: ProxyBackend
):
    backend.allow("connect", user="alice", expire_at=int(time.time()) + 1)
    backend.allow("refresh", expire_at=int(time.time()) + 3600, info={"fresh": True})
    client = await _open(ws_url)
    try:
        result = await client.connect()
        assert "expires" not in result  # the server refreshes, not the client
        await until(lambda: len(backend.requests("refresh")) == 1)
        asked = backend.last("refresh")
        assert asked.body["user"] == "alice" and asked.body["client"] == result["client"]
        assert asked.headers["Cookie"] == "session=s3cret"
        session = node.hub.session(result["client"])
        await until(lambda: session is not None and session.conn_info == {"fresh": True})
    finally:
        client.close()


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_the_refresh_proxy_saying_expired_closes_with_3005(
    ws_url: str, backend: ProxyBackend
):
    backend.allow("connect", user="alice", expire_at=int(time.time()) + 1)
    backend.allow("refresh", expired=True)
    client = await _open(ws_url)
    try:
        await client.connect()
        code, _ = await client.closed()
        assert code == 3005
    finally:
        client.close()


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_a_refresh_proxy_that_is_down_is_asked_again_and_the_connection_stays(
    ws_url: str, node: Node, backend: ProxyBackend
):
    backend.allow("connect", user="alice", expire_at=int(time.time()) + 1)
    backend.answer("refresh", b"garbage")
    client = await _open(ws_url)
    try:
        result = await client.connect()
        await until(lambda: len(backend.requests("refresh")) >= 2, 15)
        session = node.hub.session(result["client"])
        assert session is not None and session.is_connected
    finally:
        client.close()


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_the_sub_refresh_proxy_ends_a_subscription_with_2501(
    ws_url: str, backend: ProxyBackend
):
    backend.allow("subscribe", expire_at=int(time.time()) + 1)
    backend.allow("sub_refresh", expired=True)
    client = await _open(ws_url)
    try:
        await client.connect()
        await client.result("subscribe", {"channel": "proxied:room"})
        push = await client.push("unsubscribe", "proxied:room")
        assert push["unsubscribe"]["code"] == 2501
        assert backend.last("sub_refresh").body["channel"] == "proxied:room"
    finally:
        client.close()


# Failures -------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_a_backend_that_is_down_gives_100_and_the_connection_goes_on(
    ws_url: str, node: Node, backend: ProxyBackend, caplog: pytest.LogCaptureFixture
):
    client = await _open(ws_url)
    try:
        await client.connect()
        await backend.stop()
        with caplog.at_level(logging.WARNING):
            error = (await client.call("rpc", {"method": "m"}))["error"]
            assert error["code"] == 100 and error.get("temporary") is True
            again = (await client.call("rpc", {"method": "m"}))["error"]
            assert again["code"] == 100
        lines = [r for r in caplog.records if "rpc" in r.getMessage()]
        assert len(lines) == 1  # one line, however often it fails
        await client.result("subscribe", {"channel": "plain:room"})  # still serving
    finally:
        client.close()


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_a_slow_backend_gives_100_within_the_timeout(ws_url: str, backend: ProxyBackend):
    hold = backend.slow("subscribe")
    client = await _open(ws_url)
    try:
        await client.connect()
        loop = asyncio.get_running_loop()
        started = loop.time()
        error = (await client.call("subscribe", {"channel": "proxied:room"}))["error"]
        assert error["code"] == 100
        assert loop.time() - started < 3 * TIMEOUT_SCALE
    finally:
        hold.set()
        client.close()


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_a_backend_answering_garbage_gives_100(ws_url: str, backend: ProxyBackend):
    backend.answer("connect", b"<html>oops</html>")
    client = await _open(ws_url)
    try:
        assert (await client.call("connect", {}))["error"]["code"] == 100
    finally:
        client.close()


# The official SDK -----------------------------------------------------------------------


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_the_python_sdk_connects_subscribes_and_calls_through_the_proxy(
    ws_url: str, node: Node, backend: ProxyBackend
):
    backend.allow("connect", user="bob")
    backend.allow("rpc", data={"pong": True})
    client = SDKClient(ws_url, timeout=TIMEOUT, headers=HEADERS, min_reconnect_delay=0.05)
    try:
        await client.connect()
        await client.ready()
        sub = client.new_subscription("proxied:room")
        await sub.subscribe()
        await sub.ready()
        assert sub.state is SubscriptionState.SUBSCRIBED
        reply = await client.rpc("ping", {})
        assert reply.data == {"pong": True}
        assert [s.user for s in node.hub.sessions()] == ["bob"]
    finally:
        await client.disconnect()


# Attacks --------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_a_connect_storm_sends_the_backend_at_most_max_connections_requests_at_once(
    ws_url: str, backend: ProxyBackend
):
    hold = backend.slow("connect")
    clients = [await _open(ws_url) for _ in range(3 * BACKEND_REQUESTS)]
    try:
        for client in clients:
            await client.send({"id": 1, "connect": {}})
        await until(lambda: len(backend.requests("connect")) == BACKEND_REQUESTS)
        await asyncio.sleep(0.2 * TIMEOUT_SCALE)  # the others wait for a slot
        assert len(backend.requests("connect")) == BACKEND_REQUESTS
        hold.set()
        replies = [await client.reply(1) for client in clients]
        assert all("error" not in reply for reply in replies), replies
        assert len(backend.requests("connect")) == len(clients)
    finally:
        hold.set()
        for client in clients:
            client.close()


# Start-up -------------------------------------------------------------------------------


def test_an_endpoint_that_is_no_http_url_is_a_configuration_error():
    settings = load_settings(env={}).with_overrides(proxy={"rpc_endpoint": "ftp://x/rpc"})
    with pytest.raises(ConfigError, match=r"proxy\.rpc_endpoint"):
        proxy_hooks(settings)


def test_no_endpoint_builds_no_proxy():
    assert proxy_hooks(load_settings(env={})) is None


def test_the_command_line_exits_2_for_an_unreadable_ca_file(tmp_path: Path):
    config = f'[proxy]\nconnect_endpoint = "{down_url()}"\nca_file = "{tmp_path / "x.pem"}"\n'
    result = config_exit(tmp_path, config)
    assert result.returncode == 2, result.stderr
    assert "proxy.ca_file" in result.stderr
