"""Two in-process nodes sharing a Redis deployment (one Redis, or client-side shards),
each with its own HTTP server: fixtures `a` and `b` for the cross-instance suites.
Loaded as a pytest plugin by tests/conftest.py; a module may override `settings`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator

import pytest
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from tornado.testing import bind_unused_port
from wsfan.compose import build_node
from wsfan.config import Settings
from wsfan.node import Node
from wsfan.protocol import Encoding
from wsfan.web.app import make_app
from wsfan.web.endpoint import close_websockets

from tests.api_client import ApiCaller
from tests.client import ProtoClient
from tests.conftest import TIMEOUT_SCALE


class Instance:
    def __init__(self, node: Node, port: int, http_client: AsyncHTTPClient) -> None:
        self.node = node
        self.port = port
        self.api = ApiCaller(http_client, f"http://127.0.0.1:{port}/api")
        self.clients: list[ProtoClient] = []

    async def client(self, *channels: str) -> ProtoClient:
        url = f"ws://127.0.0.1:{self.port}/connection/websocket"
        c = await ProtoClient.open(url, Encoding.JSON, timeout=5 * TIMEOUT_SCALE)
        self.clients.append(c)
        await c.connect()
        for channel in channels:
            await c.result("subscribe", {"channel": channel})
        return c


@pytest.fixture
def a(node: Node, http_server: HTTPServer, http_port: int, http_client: AsyncHTTPClient):
    instance = Instance(node, http_port, http_client)
    yield instance
    for c in instance.clients:
        c.close()


@pytest.fixture
def b(settings: Settings, io_loop: IOLoop, http_client: AsyncHTTPClient) -> Iterator[Instance]:
    """A second node on the same Redis, with its own HTTP server."""
    node = build_node(settings)
    io_loop.run_sync(node.start)
    sock, port = bind_unused_port()
    server = HTTPServer(make_app(node))
    server.add_socket(sock)
    instance = Instance(node, port, http_client)
    yield instance
    for c in instance.clients:
        c.close()
    server.stop()
    io_loop.run_sync(lambda: close_websockets(server.request_callback))
    io_loop.run_sync(server.close_all_connections)
    io_loop.run_sync(node.close)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout * TIMEOUT_SCALE
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)
