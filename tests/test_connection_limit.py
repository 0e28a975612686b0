"""server.max_connections: handshakes beyond it get HTTP 503, not a crash."""

from __future__ import annotations

import asyncio

import pytest
from tornado.httpclient import HTTPClientError
from wsfan.node import Node
from wsfan.protocol import Encoding

from tests.conftest import TIMEOUT_SCALE


async def until(condition, timeout: float = 5 * TIMEOUT_SCALE) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@pytest.mark.settings(server={"max_connections": 3})
@pytest.mark.gen_test
async def test_connections_up_to_the_limit_open_and_one_more_gets_503(open_client, node: Node):
    clients = [await open_client(Encoding.JSON) for _ in range(3)]
    for c in clients:
        await c.connect()
    with pytest.raises(HTTPClientError) as refused:
        await open_client(Encoding.JSON)
    assert refused.value.code == 503
    assert node.metrics.open_connections == 3


@pytest.mark.settings(server={"max_connections": 1})
@pytest.mark.gen_test
async def test_a_closed_connection_frees_its_place(open_client, node: Node):
    first = await open_client(Encoding.JSON)
    first.close()
    await until(lambda: node.metrics.open_connections == 0)
    second = await open_client(Encoding.JSON)
    await second.connect()
