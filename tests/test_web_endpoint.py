"""The WebSocket endpoint's shared state (server/web/endpoint.py): which app has
one, and how shutdown closes the connections it holds."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from tornado.web import Application
from wsfan.auth.origin import OriginPolicy
from wsfan.node import Node
from wsfan.web.endpoint import Endpoint, LiveConnections, close_websockets, endpoint_of
from wsfan.web.websocket_transport import Connection

from tests.conftest import TIMEOUT_SCALE


class FakeConnection:
    """Stands in for a Connection: records being aborted, leaves when told."""

    def __init__(self, live: LiveConnections) -> None:
        self.live = live
        self.aborted = False

    def abort(self) -> None:
        self.aborted = True
        self.live.discard(cast(Connection, self))


def _add(live: LiveConnections) -> FakeConnection:
    connection = FakeConnection(live)
    live.add(cast(Connection, connection))
    return connection


def test_an_app_with_an_endpoint_in_its_settings_has_that_endpoint(node: Node) -> None:
    endpoint = Endpoint(node, OriginPolicy())
    assert endpoint_of(Application(websocket_endpoint=endpoint)) is endpoint


@pytest.mark.parametrize("app", [object(), Application(), Application(websocket_endpoint=1)])
def test_anything_else_has_no_endpoint(app: Any) -> None:
    assert endpoint_of(app) is None


@pytest.mark.gen_test
async def test_connections_left_after_the_grace_are_aborted() -> None:
    live = LiveConnections()
    connections = [_add(live), _add(live)]
    await live.close_all(grace=0.01)
    assert all(c.aborted for c in connections)


@pytest.mark.gen_test
async def test_connections_that_leave_within_the_grace_are_not_aborted() -> None:
    live = LiveConnections()
    leaving = _add(live)
    loop = asyncio.get_running_loop()
    loop.call_later(0.01, live.discard, cast(Connection, leaving))
    await live.close_all(grace=5 * TIMEOUT_SCALE)
    assert not leaving.aborted


@pytest.mark.gen_test
async def test_close_websockets_closes_the_apps_live_connections(node: Node) -> None:
    endpoint = Endpoint(node, OriginPolicy())
    connection = _add(endpoint.live)
    await close_websockets(Application(websocket_endpoint=endpoint), grace=0.01)
    assert connection.aborted


@pytest.mark.gen_test
async def test_close_websockets_on_an_app_without_an_endpoint_does_nothing() -> None:
    await close_websockets(Application(), grace=0.01)
