"""The official centrifuge-python SDK, unmodified, against a real server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from centrifuge import (
    Client,
    ClientDisconnectedError,
    ClientEventHandler,
    ClientState,
    ConnectedContext,
    ConnectingContext,
    DisconnectedContext,
    Publication,
    PublicationContext,
    SubscribedContext,
    SubscriptionEventHandler,
    SubscriptionState,
)
from wsfan.api.cluster_commands import ClusterCommands
from wsfan.errors import Disconnect, DisconnectCode
from wsfan.node import Node

from tests.conftest import TIMEOUT_SCALE

TIMEOUT = 5 * TIMEOUT_SCALE
TEST_TIMEOUT = 15 * TIMEOUT_SCALE
CHANNEL = "news"  # the shipped defaults: history, recovery, client publish
# config/default.toml keeps no presence outside namespaces; the presence test turns it on
WITH_PRESENCE = {"presence": True, "join_leave": True}


class ClientEvents(ClientEventHandler):
    def __init__(self) -> None:
        self.connected: list[ConnectedContext] = []
        self.connecting: list[ConnectingContext] = []
        self.disconnected: list[DisconnectedContext] = []

    async def on_connected(self, ctx: ConnectedContext) -> None:
        self.connected.append(ctx)

    async def on_connecting(self, ctx: ConnectingContext) -> None:
        self.connecting.append(ctx)

    async def on_disconnected(self, ctx: DisconnectedContext) -> None:
        self.disconnected.append(ctx)


class SubEvents(SubscriptionEventHandler):
    def __init__(self) -> None:
        self.publications: list[Publication] = []
        self.subscribed: list[SubscribedContext] = []

    async def on_publication(self, ctx: PublicationContext) -> None:
        self.publications.append(ctx.pub)

    async def on_subscribed(self, ctx: SubscribedContext) -> None:
        self.subscribed.append(ctx)


async def until(condition: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """Wait (bounded) until `condition()` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() >= deadline:
            raise AssertionError(f"condition not met within {timeout:g}s")
        await asyncio.sleep(0.01)


@asynccontextmanager
async def sdk_client(
    url: str, node: Node, events: ClientEventHandler | None = None, **options: Any
) -> AsyncIterator[Client]:
    """A connected SDK client, disconnected (and gone from the server) on the way out."""
    client = Client(
        url, events=events, timeout=TIMEOUT, proxy=None, min_reconnect_delay=0.05, **options
    )
    try:
        await client.connect()
        await client.ready()
        yield client
    finally:
        client_id = getattr(client, "client_id", None)
        await client.disconnect()
        if client_id:
            await until(lambda: node.hub.session(client_id) is None)


async def subscribed(client: Client, channel: str = CHANNEL) -> tuple[Any, SubEvents]:
    events = SubEvents()
    sub = client.new_subscription(channel, events=events)
    await sub.subscribe()
    await sub.ready()
    return sub, events


def offsets(pubs: list[Publication]) -> list[int]:
    return [p.offset for p in pubs]


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_connects_and_gets_a_client_id(ws_url: str, node: Node):
    events = ClientEvents()
    async with sdk_client(ws_url, node, events) as client:
        assert client.state is ClientState.CONNECTED
        assert client.client_id
        assert [c.client for c in events.connected] == [client.client_id]
        assert events.connected[0].version == node.version
        assert node.hub.session(client.client_id) is not None


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_receives_a_publication_published_on_the_node(ws_url: str, node: Node):
    async with sdk_client(ws_url, node) as client:
        sub, events = await subscribed(client)
        assert sub.state is SubscriptionState.SUBSCRIBED
        await node.publish(CHANNEL, {"text": "hello"})
        await until(lambda: len(events.publications) == 1)
        assert events.publications[0].data == {"text": "hello"}
        assert events.publications[0].offset == 1


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_publishes_and_another_sdk_client_receives_it(ws_url: str, node: Node):
    async with sdk_client(ws_url, node) as alice, sdk_client(ws_url, node) as bob:
        alice_sub, _ = await subscribed(alice)
        _, bob_events = await subscribed(bob)
        await alice_sub.publish({"text": "hi bob"})
        await until(lambda: len(bob_events.publications) == 1)
        pub = bob_events.publications[0]
        assert pub.data == {"text": "hi bob"}
        assert pub.info is not None
        assert pub.info.client == alice.client_id


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_reads_history_with_limit_and_reverse(ws_url: str, node: Node):
    for n in range(1, 6):
        await node.publish(CHANNEL, {"n": n})
    async with sdk_client(ws_url, node) as client:
        sub, events = await subscribed(client)
        oldest = await sub.history(limit=2)
        newest = await sub.history(limit=2, reverse=True)
        everything = await sub.history(limit=-1)
        position_only = await sub.history()
    assert [p.data for p in oldest.publications] == [{"n": 1}, {"n": 2}]
    assert offsets(newest.publications) == [5, 4]
    assert offsets(everything.publications) == [1, 2, 3, 4, 5]
    assert position_only.publications == []
    assert (oldest.offset, oldest.epoch) == (5, events.subscribed[0].stream_position.epoch)


@pytest.mark.settings(channels=WITH_PRESENCE)
@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_reads_presence_and_presence_stats(ws_url: str, node: Node):
    async with sdk_client(ws_url, node) as alice, sdk_client(ws_url, node) as bob:
        alice_sub, _ = await subscribed(alice)
        await subscribed(bob)
        presence = await alice_sub.presence()
        stats = await alice_sub.presence_stats()
    assert set(presence.clients) == {alice.client_id, bob.client_id}
    assert presence.clients[bob.client_id].client == bob.client_id
    assert (stats.num_clients, stats.num_users) == (2, 1)  # both anonymous: one user ""


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_recovers_missed_publications_after_a_server_initiated_reconnect(
    ws_url: str, node: Node
):
    events = ClientEvents()
    async with sdk_client(ws_url, node, events) as client:
        sub, sub_events = await subscribed(client)
        await node.publish(CHANNEL, {"n": 1})
        await until(lambda: len(sub_events.publications) == 1)
        first_id = client.client_id

        session = node.hub.session(first_id)
        assert session is not None
        session.disconnect(Disconnect(DisconnectCode.FORCE_RECONNECT))
        for n in (2, 3, 4):  # the session is gone: these can only come back by recovery
            await node.publish(CHANNEL, {"n": n})

        await until(lambda: len(sub_events.subscribed) == 2 and len(sub_events.publications) == 4)
        await node.publish(CHANNEL, {"n": 5})
        await until(lambda: len(sub_events.publications) == 5)

        assert client.client_id != first_id
        assert [c.code for c in events.connecting][-1] == DisconnectCode.FORCE_RECONNECT
        assert events.disconnected == []
        again = sub_events.subscribed[1]
        assert (again.was_recovering, again.recovered) == (True, True)
        assert [p.data for p in sub_events.publications] == [{"n": n} for n in range(1, 6)]
        assert offsets(sub_events.publications) == [1, 2, 3, 4, 5]
        assert sub.state is SubscriptionState.SUBSCRIBED


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
@pytest.mark.settings(client={"ping_interval": 0.2, "pong_timeout": 0.5})
async def test_answers_server_pings_and_stays_connected(ws_url: str, node: Node):
    events = ClientEvents()
    async with sdk_client(ws_url, node, events) as client:
        client_id = client.client_id
        await asyncio.sleep(2.0)  # ten pings; one unanswered would close with 3012
        assert client.state is ClientState.CONNECTED
        assert client.client_id == client_id
        assert node.hub.session(client_id) is not None
        assert len(events.connected) == 1
        assert len(events.connecting) == 1  # only the first connect


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_force_disconnect_leaves_the_sdk_disconnected_without_reconnecting(
    ws_url: str, node: Node
):
    events = ClientEvents()
    async with sdk_client(ws_url, node, events) as client:
        session = node.hub.session(client.client_id)
        assert session is not None
        session.disconnect(Disconnect(DisconnectCode.FORCE_DISCONNECT))
        await until(lambda: client.state is ClientState.DISCONNECTED)
        await asyncio.sleep(0.5)  # ten times the reconnect delay
        assert client.state is ClientState.DISCONNECTED
        assert [(d.code, d.reason) for d in events.disconnected] == [(3503, "force disconnect")]
        assert len(events.connected) == 1
        assert node.hub.num_clients == 0
        with pytest.raises(ClientDisconnectedError):
            await client.ready()


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_server_unsubscribe_leaves_the_sdk_subscription_unsubscribed(ws_url: str, node: Node):
    async with sdk_client(ws_url, node) as client:
        sub, _ = await subscribed(client)
        assert (
            await ClusterCommands(node).unsubscribe_here(CHANNEL, client_id=client.client_id) == 1
        )
        await until(lambda: sub.state is SubscriptionState.UNSUBSCRIBED)
        assert client.state is ClientState.CONNECTED
