"""The official centrifuge-python SDK, unmodified, with tokens: refresh, expiry, limits.

The refresh tests wait for real token lifetimes (whole seconds), so they run on
the memory broker only: token handling does not touch the broker.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from centrifuge import (
    Client,
    ClientEventHandler,
    ClientState,
    ServerPublicationContext,
    ServerSubscribedContext,
    SubscriptionState,
    UnsubscribedContext,
)
from wsfan.auth.cli import mint
from wsfan.node import Node

from tests.conftest import TIMEOUT_SCALE
from tests.test_sdk_python import TEST_TIMEOUT, TIMEOUT, ClientEvents, SubEvents, sdk_client, until

PRIVATE = "private:room"
NAMESPACES = {"private": {"require_sub_token": True, "allow_publish": True, "history_size": 10}}
MEMORY_ONLY = pytest.mark.brokers("memory")
# Tokens live 2 s (the reply's ttl rounds down to 1 s); a connection not refreshed
# would close 0.5 s after its token's exp, so 3.5 s connected proves refreshes.
TOKEN_TTL = 2
CLOSE_DELAY = 0.5
WATCH = 3.5


class Minter:
    """A get_token callback that counts its calls."""

    def __init__(self, node: Node, user: str, **claims: Any) -> None:
        self.secret = node.settings.auth.hmac_secret
        self.user = user
        self.claims = claims
        self.calls = 0

    async def connection(self) -> str:
        self.calls += 1
        return mint(self.secret, self.user, **self.claims)

    async def subscription(self, channel: str) -> str:
        self.calls += 1
        return mint(self.secret, self.user, channel=channel, **self.claims)


class ServerSubEvents(ClientEventHandler):
    """Client events, plus the server-side subscriptions' ones."""

    def __init__(self) -> None:
        self.connected: list[Any] = []
        self.disconnected: list[Any] = []
        self.subscribed: list[ServerSubscribedContext] = []
        self.publications: list[ServerPublicationContext] = []

    async def on_connected(self, ctx: Any) -> None:
        self.connected.append(ctx)

    async def on_disconnected(self, ctx: Any) -> None:
        self.disconnected.append(ctx)

    async def on_subscribed(self, ctx: ServerSubscribedContext) -> None:
        self.subscribed.append(ctx)

    async def on_publication(self, ctx: ServerPublicationContext) -> None:
        self.publications.append(ctx)


class SubEventsWithUnsubscribe(SubEvents):
    def __init__(self) -> None:
        super().__init__()
        self.unsubscribed: list[UnsubscribedContext] = []

    async def on_unsubscribed(self, ctx: UnsubscribedContext) -> None:
        self.unsubscribed.append(ctx)


def session_of(node: Node, client: Client) -> Any:
    session = node.hub.session(client.client_id)
    assert session is not None
    return session


# Connection tokens ------------------------------------------------------------------


@MEMORY_ONLY
@pytest.mark.settings(auth={"expired_close_delay": CLOSE_DELAY})
@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_sdk_refreshes_its_connection_token_without_reconnecting(ws_url: str, node: Node):
    minter = Minter(node, "alice", ttl=TOKEN_TTL)
    events = ClientEvents()
    async with sdk_client(ws_url, node, events, get_token=minter.connection) as client:
        client_id = client.client_id
        first_expiry = session_of(node, client).expires_at
        await asyncio.sleep(WATCH)
        assert client.state is ClientState.CONNECTED
        assert client.client_id == client_id
        assert len(events.connecting) == 1 and len(events.connected) == 1
        assert minter.calls >= 2  # the connect, then at least one refresh
        assert session_of(node, client).expires_at > first_expiry


@MEMORY_ONLY
@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_sdk_with_an_expired_token_gets_a_new_one_and_connects(ws_url: str, node: Node):
    minter = Minter(node, "alice")
    expired = mint(node.settings.auth.hmac_secret, "alice", ttl=-5)
    events = ClientEvents()
    async with sdk_client(
        ws_url, node, events, token=expired, get_token=minter.connection
    ) as client:
        assert client.state is ClientState.CONNECTED
        assert minter.calls == 1
        assert session_of(node, client).user == "alice"


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_sdk_with_an_invalid_token_stops_with_3500(ws_url: str, node: Node):
    events = ClientEvents()
    client = Client(
        ws_url,
        events=events,
        token=mint("a-secret-the-server-does-not-know-at-all!!", "alice"),
        timeout=TIMEOUT,
        proxy=None,
        min_reconnect_delay=0.05,
    )
    await client.connect()
    await until(lambda: client.state is ClientState.DISCONNECTED)
    await asyncio.sleep(0.3)  # several reconnect delays: it does not try again
    assert [(d.code, d.reason) for d in events.disconnected] == [(3500, "invalid token")]
    assert events.connected == []
    await client.disconnect()


@MEMORY_ONLY
@pytest.mark.settings(auth={"expired_close_delay": CLOSE_DELAY})
@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_sdk_without_get_token_is_closed_3005_when_its_token_expires(ws_url: str, node: Node):
    events = ClientEvents()
    token = mint(node.settings.auth.hmac_secret, "alice", ttl=1)
    async with sdk_client(ws_url, node, events, token=token) as client:
        started = time.monotonic()
        await until(lambda: any(c.code == 3005 for c in events.connecting), timeout=TIMEOUT)
        assert time.monotonic() - started <= 1 + CLOSE_DELAY + TIMEOUT_SCALE
        # Its reconnect with the same, now expired, token is answered 109 and,
        # with no get_token to ask, the SDK stops.
        await until(lambda: client.state is ClientState.DISCONNECTED)


# Server-side subscriptions from the channels claim ----------------------------------------


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_sdk_receives_publications_of_its_token_channels(ws_url: str, node: Node):
    events = ServerSubEvents()
    token = mint(node.settings.auth.hmac_secret, "alice", channels=["news"])
    async with sdk_client(ws_url, node, events, token=token):
        await until(lambda: [s.channel for s in events.subscribed] == ["news"])
        await node.publish("news", {"text": "to alice"})
        await until(lambda: len(events.publications) == 1)
        assert events.publications[0].channel == "news"
        assert events.publications[0].pub.data == {"text": "to alice"}


@pytest.mark.settings(client={"max_channels": 2})
@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_sdk_with_more_token_channels_than_allowed_stops_with_3505(ws_url: str, node: Node):
    events = ServerSubEvents()
    client = Client(
        ws_url,
        events=events,
        token=mint(node.settings.auth.hmac_secret, "alice", channels=["a", "b", "c"]),
        timeout=TIMEOUT,
        proxy=None,
        min_reconnect_delay=0.05,
    )
    await client.connect()
    await until(lambda: client.state is ClientState.DISCONNECTED)
    await asyncio.sleep(0.3)
    assert [(d.code, d.reason) for d in events.disconnected] == [(3505, "channel limit")]
    await client.disconnect()


@pytest.mark.settings(client={"max_channels": 1})
@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_sdk_subscription_over_max_channels_fails_alone_with_106(ws_url: str, node: Node):
    async with sdk_client(ws_url, node) as client:
        first = client.new_subscription("a")
        await first.subscribe()
        await first.ready()
        events = SubEventsWithUnsubscribe()
        second = client.new_subscription("b", events=events)
        await second.subscribe()
        await until(lambda: second.state is SubscriptionState.UNSUBSCRIBED)
        assert [u.code for u in events.unsubscribed] == [106]
        assert client.state is ClientState.CONNECTED
        assert first.state is SubscriptionState.SUBSCRIBED


# Subscription tokens --------------------------------------------------------------------


@MEMORY_ONLY
@pytest.mark.settings(namespaces=NAMESPACES, auth={"expired_close_delay": CLOSE_DELAY})
@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_sdk_refreshes_its_subscription_token_and_stays_subscribed(ws_url: str, node: Node):
    minter = Minter(node, "alice", ttl=TOKEN_TTL)
    token = mint(node.settings.auth.hmac_secret, "alice")
    async with sdk_client(ws_url, node, token=token) as client:
        events = SubEventsWithUnsubscribe()
        sub = client.new_subscription(PRIVATE, events=events, get_token=minter.subscription)
        await sub.subscribe()
        await sub.ready()
        await asyncio.sleep(WATCH)
        assert sub.state is SubscriptionState.SUBSCRIBED
        assert len(events.subscribed) == 1 and events.unsubscribed == []
        assert minter.calls >= 2  # the subscribe, then at least one sub_refresh
        await node.publish(PRIVATE, "still here")
        await until(lambda: [p.data for p in events.publications] == ["still here"])


@MEMORY_ONLY
@pytest.mark.settings(namespaces=NAMESPACES)
@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_sdk_with_an_expired_subscription_token_gets_a_new_one(ws_url: str, node: Node):
    minter = Minter(node, "alice")
    secret = node.settings.auth.hmac_secret
    async with sdk_client(ws_url, node, token=mint(secret, "alice")) as client:
        expired = mint(secret, "alice", channel=PRIVATE, ttl=-5)
        sub = client.new_subscription(PRIVATE, token=expired, get_token=minter.subscription)
        await sub.subscribe()
        await sub.ready()
        assert sub.state is SubscriptionState.SUBSCRIBED
        assert minter.calls == 1


@pytest.mark.settings(namespaces=NAMESPACES)
@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_sdk_subscription_to_a_private_channel_without_token_is_refused_103(
    ws_url: str, node: Node
):
    async with sdk_client(ws_url, node) as client:
        events = SubEventsWithUnsubscribe()
        sub = client.new_subscription(PRIVATE, events=events)
        await sub.subscribe()
        await until(lambda: sub.state is SubscriptionState.UNSUBSCRIBED)
        assert [u.code for u in events.unsubscribed] == [103]
        assert client.state is ClientState.CONNECTED
