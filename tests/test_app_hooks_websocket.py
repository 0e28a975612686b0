"""Hooks over real sockets: the handshake's headers and cookies reach the connecting
hook on both handshake paths, the official centrifuge-python SDK connects through
hooks, and a bad application layer stops the command line with exit 2."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from centrifuge import Client as SDKClient
from centrifuge import SubscriptionState
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port
from tornado.web import Application
from wsfan.app import (
    ConnectContext,
    ConnectResult,
    ReplyError,
    SubscribeContext,
    SubscribeResult,
)
from wsfan.errors import ErrorCode
from wsfan.node import Node
from wsfan.protocol import Encoding
from wsfan.web.app import make_app
from wsfan.web.endpoint import endpoint_of
from wsfan.web.websocket import close_websockets

from tests.app_hooks import install
from tests.client import ProtoClient
from tests.conftest import TIMEOUT_SCALE
from tests.processes import config_exit

TIMEOUT = 5 * TIMEOUT_SCALE
TEST_TIMEOUT = 20 * TIMEOUT_SCALE


class CookieAuth:
    """The README's example: users by session cookie, channels by user."""

    SESSIONS = {"s3cret": "alice"}

    def __init__(self) -> None:
        self.asked: list[ConnectContext] = []

    async def connecting(self, ctx: ConnectContext) -> ConnectResult:
        self.asked.append(ctx)
        user = self.SESSIONS.get(ctx.cookies.get("session", ""))
        if user is None:
            raise ReplyError(ErrorCode.UNAUTHORIZED)
        return ConnectResult(user, info={"via": ctx.headers.get("X-Client", "")})

    async def subscribing(self, ctx: SubscribeContext) -> SubscribeResult:
        if ctx.channel != f"inbox.{ctx.client.user}":
            raise ReplyError(ErrorCode.PERMISSION_DENIED)
        return SubscribeResult()


HEADERS = {"Cookie": "theme=dark; session=s3cret", "X-Client": "tests"}


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_the_fast_path_hands_headers_and_cookies_to_the_connecting_hook(
    ws_url: str, node: Node
):
    app = CookieAuth()
    install(node, app)
    client = await ProtoClient.open(ws_url, Encoding.JSON, TIMEOUT, headers=HEADERS)
    try:
        reply = await client.connect()
        assert "error" not in reply
        assert app.asked[0].cookies["session"] == "s3cret"
        assert app.asked[0].headers["x-client"] == "tests"
        session = node.hub.session(reply["client"])
        assert session is not None and session.user == "alice" and session.handshake is None
    finally:
        client.close()


@asynccontextmanager
async def tornado_handshakes(node: Node) -> AsyncIterator[str]:
    """A server without the listener's fast path: Tornado's handler answers every handshake."""
    app = make_app(node)
    server = HTTPServer(app)
    sock, port = bind_unused_port()
    server.add_sockets([sock])
    try:
        yield f"ws://127.0.0.1:{port}/connection/websocket"
    finally:
        server.stop()
        await close_websockets(app)
        await server.close_all_connections()


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_the_tornado_handler_hands_headers_and_cookies_to_the_connecting_hook(node: Node):
    app = CookieAuth()
    install(node, app)
    async with tornado_handshakes(node) as url:
        client = await ProtoClient.open(url, Encoding.MSGPACK, TIMEOUT, headers=HEADERS)
        try:
            reply = await client.connect()
            assert "error" not in reply
            assert app.asked[0].cookies == {"theme": "dark", "session": "s3cret"}
            assert app.asked[0].headers["X-CLIENT"] == "tests"
            assert app.asked[0].client.encoding == "msgpack"
        finally:
            client.close()


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_a_connection_keeps_no_handshake_when_no_connecting_hook_exists(
    ws_url: str, node: Node, app: Application
):
    endpoint = endpoint_of(app)
    assert endpoint is not None
    client = await ProtoClient.open(ws_url, Encoding.JSON, TIMEOUT, headers=HEADERS)
    try:
        await client.call("presence_stats", {"channel": "news"})  # answered: adopted by now
        sessions = [c.session for c in endpoint.live._live]  # not connected: not in the hub
        assert sessions and all(s is not None and s.handshake is None for s in sessions)
    finally:
        client.close()


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_a_connecting_hook_refusing_a_missing_cookie_answers_101(ws_url: str, node: Node):
    install(node, CookieAuth())
    client = await ProtoClient.open(ws_url, Encoding.JSON, TIMEOUT)
    try:
        assert (await client.call("connect", {}))["error"]["code"] == 101
    finally:
        client.close()


# The official SDK -----------------------------------------------------------------------


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_the_python_sdk_connects_by_cookie_and_subscribes_where_the_hook_allows(
    ws_url: str, node: Node
):
    install(node, CookieAuth())
    client = SDKClient(ws_url, timeout=TIMEOUT, headers=HEADERS, min_reconnect_delay=0.05)
    try:
        await client.connect()
        await client.ready()
        own = client.new_subscription("inbox.alice")
        await own.subscribe()
        await own.ready()
        assert own.state is SubscriptionState.SUBSCRIBED
        other = client.new_subscription("inbox.bob")
        await other.subscribe()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT
        while other.state is not SubscriptionState.UNSUBSCRIBED and loop.time() < deadline:
            await asyncio.sleep(0.01)
        assert other.state is SubscriptionState.UNSUBSCRIBED  # 103 is permanent for the SDK
    finally:
        await client.disconnect()


# The command line -----------------------------------------------------------------------


def _server_exit(tmp_path: Path, config: str, **env_vars: str) -> tuple[int, str]:
    result = config_exit(tmp_path, config, **env_vars)
    return result.returncode, result.stderr


def test_a_python_hook_and_a_proxy_endpoint_for_one_point_exit_2(tmp_path: Path):
    config = (
        '[app]\nhandlers = "tests.app_hooks:CookieApp"\n'
        '[proxy]\nconnect_endpoint = "http://127.0.0.1:1/connect"\n'
    )
    code, stderr = _server_exit(tmp_path, config)
    assert code == 2, stderr
    assert "configuration error" in stderr and "proxy.connect_endpoint" in stderr


@pytest.mark.parametrize(
    "handlers", ["tests.app_hooks", "tests.no_such_module:App", "tests.app_hooks:Missing"]
)
def test_a_bad_app_handlers_exits_2_naming_the_key(tmp_path: Path, handlers: str):
    code, stderr = _server_exit(tmp_path, f'[app]\nhandlers = "{handlers}"\n')
    assert code == 2, stderr
    assert "configuration error: app.handlers" in stderr


def test_app_handlers_is_read_from_the_environment_too(tmp_path: Path):
    code, stderr = _server_exit(tmp_path, "", WSFAN_APP__HANDLERS="tests.app_hooks:Missing")
    assert code == 2, stderr
    assert "configuration error: app.handlers" in stderr and "'Missing'" in stderr
