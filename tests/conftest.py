"""Shared fixtures: a real server on a free port per test, with real backing servers.

Per-test settings: `@pytest.mark.settings(client={"max_channels": 2})` layers
those keys over the shipped defaults (validated like any config layer).
Timeouts in tests are multiplied by TIMEOUT_SCALE (env TEST_TIMEOUT_SCALE) for
slow machines.
"""

from __future__ import annotations

import asyncio
import os
import socket
import warnings
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from tornado.web import Application
from wsfan.compose import build_node
from wsfan.config import Settings, load_settings
from wsfan.node import Node
from wsfan.protocol import Encoding
from wsfan.web.app import make_app
from wsfan.web.endpoint import close_websockets
from wsfan.web.upgrade import Listener

from tests.client import ProtoClient

pytest_plugins = [
    "tests.conftest_embedded",
    "tests.broker_fixtures",
    "tests.two_nodes",
    "tests.valkey_cluster",
]

TIMEOUT_SCALE = float(os.environ.get("TEST_TIMEOUT_SCALE", "1"))


BROKERS = ("memory", "redis")
"""The brokers every test using `broker_type` runs on."""

ACROSS_REDIS = ("redis", "sharded", "cluster")
"""Every Redis deployment, for the cross-instance subset (`@pytest.mark.brokers(*ACROSS_REDIS)`):
one Valkey, client-side sharding over the session's two, and the session's Redis Cluster
(tests/valkey_cluster.py)."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "settings(**sections): settings layered for this test")
    config.addinivalue_line("markers", "brokers(*types): run on these brokers, not BROKERS")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # A module with a `broker_type` fixture of its own has chosen its broker.
    if "broker_type" in metafunc.fixturenames and not hasattr(metafunc.module, "broker_type"):
        marker = metafunc.definition.get_closest_marker("brokers")
        metafunc.parametrize("broker_type", marker.args if marker else BROKERS, indirect=True)


@pytest.fixture
def broker_type(request: pytest.FixtureRequest) -> str:
    """Runs a test once per broker: in memory, and on the session's real Valkey (more
    with the `brokers` marker)."""
    return str(request.param)


@pytest.fixture
def settings(request: pytest.FixtureRequest, broker_type: str) -> Settings:
    base = broker_settings(request, broker_type)
    marker = request.node.get_closest_marker("settings")
    return base.with_overrides(**marker.kwargs) if marker else base


def broker_settings(request: pytest.FixtureRequest, broker_type: str) -> Settings:
    """The shipped defaults on `broker_type`'s backend (the session's real servers)."""
    kind = "memory" if broker_type == "memory" else "redis"
    base = load_settings(env={}).with_overrides(broker={"type": kind})
    if broker_type != "memory":
        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_prefix")
        base = base.with_overrides(redis={"url": url, "prefix": prefix})
    if broker_type == "sharded":
        second = request.getfixturevalue("second_redis_url")
        base = base.with_overrides(redis={"shards": [url, second]})
    if broker_type == "cluster":
        cluster = request.getfixturevalue("cluster_url")
        base = base.with_overrides(redis={"url": cluster, "cluster": True})
    return base


@pytest.fixture
def node(settings: Settings, io_loop: IOLoop) -> Iterator[Node]:
    node = build_node(settings)
    io_loop.run_sync(node.start)
    yield node
    io_loop.run_sync(node.close)


@pytest.fixture
def io_loop() -> Iterator[IOLoop]:
    """pytest-tornado's per-test loop, without its leak.

    Tornado remembers the current asyncio loop when an IOLoop becomes current,
    asking for one to be made when there is none (after a test's asyncio.run),
    and nobody closed that one: its ResourceWarning then failed some later test.
    Here it is made, and closed, explicitly.
    """
    previous = asyncio.new_event_loop()
    asyncio.set_event_loop(previous)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # make_current, as pytest-tornado
        loop = IOLoop()
        loop.make_current()
    yield loop
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        loop.clear_current()
    loop.close(all_fds=True)
    asyncio.set_event_loop(None)
    previous.close()


@pytest.fixture
def app(node: Node) -> Application:
    return make_app(node)


@pytest.fixture
def http_server(
    app: Application, io_loop: IOLoop, _unused_port: tuple[socket.socket, int]
) -> Iterator[HTTPServer]:
    """pytest-tornado's server, taking `app` as a declared dependency: the plugin asks
    for it dynamically, which hides the broker parameter from pytest."""
    server = HTTPServer(app)
    listener = Listener(server)  # what run.py listens with: upgrades on the fast path
    listener.add_sockets([_unused_port[0]])
    yield server
    listener.stop()
    io_loop.run_sync(lambda: close_websockets(app))
    io_loop.run_sync(server.close_all_connections)


@pytest.fixture
def ws_url(http_server: HTTPServer, http_port: int) -> str:
    """The WebSocket endpoint of this test's server (started by pytest-tornado)."""
    return f"ws://127.0.0.1:{http_port}/connection/websocket"


@pytest.fixture(params=[Encoding.JSON, Encoding.MSGPACK], ids=["json", "msgpack"])
def encoding(request: pytest.FixtureRequest) -> Encoding:
    """Runs a test once per wire encoding."""
    return request.param


ClientFactory = Callable[..., Awaitable[ProtoClient]]
Opener = Callable[[Encoding], Awaitable[ProtoClient]]


@pytest.fixture
def open_client(ws_url: str) -> Iterator[Opener]:
    """Opens protocol clients in a given encoding; all are closed after the test."""
    opened: list[ProtoClient] = []

    async def open_in(encoding: Encoding) -> ProtoClient:
        c = await ProtoClient.open(ws_url, encoding, timeout=5 * TIMEOUT_SCALE)
        opened.append(c)
        return c

    yield open_in
    for c in opened:
        c.close()


@pytest.fixture
def client(
    open_client: Callable[[Encoding], Awaitable[ProtoClient]], encoding: Encoding
) -> ClientFactory:
    """Opens protocol clients in the test's encoding; `connect=True` also sends connect."""

    async def open_connected(connect: bool = True, **connect_params: Any) -> ProtoClient:
        c = await open_client(encoding)
        if connect:
            await c.connect(**connect_params)
        return c

    return open_connected
