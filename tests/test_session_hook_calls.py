"""The command handlers through the application's hooks, on in-process sessions:
each point allowed and refused, precedence over the namespace rules, failures,
server-side refreshes and notifications."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from wsfan.app import (
    Client,
    ConnectContext,
    ConnectResult,
    Disconnect,
    PublishContext,
    PublishResult,
    RefreshContext,
    RefreshResult,
    ReplyError,
    RPCContext,
    RPCResult,
    SubRefreshContext,
    SubRefreshResult,
    SubscribeContext,
    SubscribeResult,
)
from wsfan.auth.cli import mint
from wsfan.compose import build_node
from wsfan.config import load_settings
from wsfan.errors import ErrorCode
from wsfan.node import Node
from wsfan.session import Session
from wsfan.transport import Handshake

from tests.conftest import TIMEOUT_SCALE
from tests.transports import RecordingTransport, messages

TIMEOUT = 10 * TIMEOUT_SCALE
OPEN = {
    "open": {"allow_anonymous": True, "allow_publish": True, "history_size": 10, "presence": True}
}
SHUT = {"shut": {"allow_subscribe": False, "allow_publish": False, "history_size": 10}}
TOKENS = {"tokens": {"require_sub_token": True}}


@asynccontextmanager
async def hooked(application: object, **overrides: Any) -> AsyncIterator[Node]:
    """A started node (memory broker) whose hooks are `application`'s methods."""
    namespaces = {**OPEN, **SHUT, **TOKENS}
    settings = load_settings(env={}).with_overrides(
        broker={"type": "memory"}, namespaces=namespaces, **overrides
    )
    node = build_node(settings, app=application)
    await node.start()
    try:
        yield node
    finally:
        await node.close()


class Peer:
    """One in-process connection and what it was sent."""

    def __init__(self, node: Node, handshake: Handshake | None = None) -> None:
        self.transport = RecordingTransport()
        self.session = Session(
            node,
            self.transport,
            "10.0.0.7",
            settings=node.settings,
            metrics=node.metrics,
            tokens=node.tokens,
            handshake=handshake,
        )
        self._id = 0

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """The reply to one command ({} if none came: the connection closed)."""
        self._id += 1
        await self.session.handle_frame(json.dumps({"id": self._id, method: params or {}}))
        self.session.outbox.flush()
        found = [m for m in messages(self.transport) if m.get("id") == self._id]
        return found[0] if found else {}

    def pushes(self, kind: str) -> list[dict[str, Any]]:
        self.session.outbox.flush()
        return [m["push"] for m in messages(self.transport) if kind in m.get("push", {})]


async def until(condition: Callable[[], Any]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def hook_failures(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "wsfan.app.layer"]


# connecting ---------------------------------------------------------------------------


class Connecting:
    def __init__(self, answer: Any = None) -> None:
        self.answer = answer or ConnectResult("alice", info={"role": "admin"}, data={"hi": 1})
        self.asked: list[ConnectContext] = []

    async def connecting(self, ctx: ConnectContext) -> ConnectResult:
        self.asked.append(ctx)
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer  # type: ignore[no-any-return]


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_a_connecting_hook_sets_the_user_info_and_the_replys_data():
    async with hooked(Connecting()) as node:
        peer = Peer(node)
        reply = await peer.call("connect", {"name": "py", "version": "1.0", "data": {"a": 1}})
        assert reply["connect"]["data"] == {"hi": 1}
        assert (peer.session.user, peer.session.conn_info) == ("alice", {"role": "admin"})


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_a_connecting_hook_is_asked_with_the_client_and_what_it_sent():
    app = Connecting()
    handshake = Handshake([("Cookie", "session=abc; theme=dark"), ("X-Team", "blue")])
    async with hooked(app) as node:
        peer = Peer(node, handshake)
        await peer.call("connect", {"name": "py", "version": "1.0", "data": {"a": 1}})
        ctx = app.asked[0]
        assert (ctx.name, ctx.version, ctx.data, ctx.claims) == ("py", "1.0", {"a": 1}, None)
        assert ctx.client.transport == "websocket" and ctx.client.encoding == "json"
        assert ctx.client.remote_addr == "10.0.0.7"
        assert ctx.cookies == {"session": "abc", "theme": "dark"}
        assert ctx.headers["x-team"] == ctx.headers["X-TEAM"] == "blue"


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_the_handshake_is_dropped_once_connected():
    async with hooked(Connecting()) as node:
        peer = Peer(node, Handshake([("Cookie", "session=abc")]))
        await peer.call("connect")
        assert peer.session.handshake is None


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_a_connecting_hook_gets_the_verified_claims_of_a_token():
    app = Connecting(ConnectResult("bob"))
    async with hooked(app) as node:
        token = mint(node.settings.auth.hmac_secret, "alice", info={"from": "token"})
        await Peer(node).call("connect", {"token": token})
        claims = app.asked[0].claims
        assert claims is not None and (claims.user, claims.info) == ("alice", {"from": "token"})
        assert app.asked[0].token == token


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_an_invalid_token_never_reaches_the_connecting_hook():
    app = Connecting()
    async with hooked(app) as node:
        peer = Peer(node)
        await peer.call("connect", {"token": "not-a-token"})
        assert peer.transport.closed == 3500 and app.asked == []


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_a_connecting_hook_admits_clients_where_anonymous_ones_are_not():
    async with hooked(Connecting(), client={"allow_anonymous": False}) as node:
        reply = await Peer(node).call("connect")
        assert "error" not in reply


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_a_connecting_hooks_reply_error_answers_the_connect():
    async with hooked(Connecting(ReplyError(ErrorCode.UNAUTHORIZED))) as node:
        peer = Peer(node)
        reply = await peer.call("connect")
        assert reply["error"]["code"] == 101 and not peer.session.is_connected


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_a_connecting_hooks_disconnect_closes_with_its_code():
    async with hooked(Connecting(Disconnect(4503, "banned"))) as node:
        peer = Peer(node)
        await peer.call("connect")
        assert peer.transport.closed == 4503


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_a_connecting_hooks_channels_become_server_side_subscriptions():
    async with hooked(Connecting(ConnectResult("alice", channels=["open:a"]))) as node:
        peer = Peer(node)
        reply = await peer.call("connect")
        assert list(reply["connect"]["subs"]) == ["open:a"]
        assert peer.session.channels == ["open:a"]


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_a_connecting_hooks_subs_carry_each_subscriptions_info_and_data():
    subs = {"open:b": SubscribeResult(info={"seat": 4}, data={"welcome": True})}
    async with hooked(Connecting(ConnectResult("alice", channels=["open:a"], subs=subs))) as node:
        peer = Peer(node)
        reply = await peer.call("connect")
        assert list(reply["connect"]["subs"]) == ["open:a", "open:b"]
        assert reply["connect"]["subs"]["open:b"]["data"] == {"welcome": True}
        sub = peer.session.subscriptions.active("open:b")
        assert sub is not None and sub.info.chan_info == {"seat": 4}


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_a_connecting_hooks_subs_that_are_no_subscribe_results_are_a_failure():
    bad = ConnectResult("alice", subs={"open:b": {"info": 1}})  # type: ignore[dict-item]
    async with hooked(Connecting(bad)) as node:
        reply = await Peer(node).call("connect")
        assert reply["error"]["code"] == 100


# refresh --------------------------------------------------------------------------------


class Expiring(Connecting):
    """Connects with an expiry a second away; its refresh answers from `answers`."""

    def __init__(self, *answers: Any) -> None:
        super().__init__(ConnectResult("alice", expire_at=int(time.time()) + 1))
        self.answers = list(answers)
        self.refreshed: list[RefreshContext] = []

    async def refresh(self, ctx: RefreshContext) -> RefreshResult:
        self.refreshed.append(ctx)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer  # type: ignore[no-any-return]


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_a_refresh_hook_extends_the_connection_with_new_info():
    app = Expiring(RefreshResult(expire_at=int(time.time()) + 3600, info={"v": 2}))
    async with hooked(app) as node:
        peer = Peer(node)
        reply = await peer.call("connect")
        assert "expires" not in reply["connect"]  # the server refreshes, not the client
        await until(lambda: peer.session.conn_info == {"v": 2})
        assert peer.session.is_connected and len(app.refreshed) == 1
        assert peer.session.expires_at is not None and peer.session.expires_at > time.time() + 60


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_a_refresh_hook_saying_expired_closes_with_3005():
    async with hooked(Expiring(RefreshResult(expired=True))) as node:
        peer = Peer(node)
        await peer.call("connect")
        await until(lambda: peer.transport.closed is not None)
        assert peer.transport.closed == 3005


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_a_failed_refresh_is_retried_and_the_connection_stays(
    caplog: pytest.LogCaptureFixture,
):
    later = RefreshResult(expire_at=int(time.time()) + 3600)
    app = Expiring(RuntimeError("auth service down"), later)
    async with hooked(app, proxy={"refresh_retry_interval": 0.05}) as node:
        peer = Peer(node)
        await peer.call("connect")
        await until(lambda: len(app.refreshed) == 2)
        assert peer.session.is_connected and peer.transport.closed is None
        assert hook_failures(caplog) == [
            "python refresh hook failed: raised RuntimeError: auth service down"
        ]


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_without_a_refresh_hook_the_client_is_told_to_refresh():
    expire_at = int(time.time()) + 60
    async with hooked(Connecting(ConnectResult("alice", expire_at=expire_at))) as node:
        reply = await Peer(node).call("connect")
        assert reply["connect"]["expires"] is True and 0 < reply["connect"]["ttl"] <= 60


# subscribing --------------------------------------------------------------------------


class Subscribing:
    def __init__(self, answer: Any = None) -> None:
        self.answer = answer or SubscribeResult(info={"seat": 3}, data={"welcome": True})
        self.asked: list[SubscribeContext] = []

    async def subscribing(self, ctx: SubscribeContext) -> SubscribeResult:
        self.asked.append(ctx)
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer  # type: ignore[no-any-return]


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_a_subscribing_hook_allows_with_info_and_data():
    app = Subscribing()
    async with hooked(app) as node:
        peer = Peer(node)
        await peer.call("connect")
        reply = await peer.call("subscribe", {"channel": "open:a", "data": {"q": 1}})
        assert reply["subscribe"]["data"] == {"welcome": True}
        assert app.asked[0].channel == "open:a" and app.asked[0].data == {"q": 1}
        presence = await node.channel_presence("open:a")
        assert presence[peer.session.client_id].chan_info == {"seat": 3}


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_a_subscribing_hook_refuses_with_its_error():
    async with hooked(Subscribing(ReplyError(ErrorCode.PERMISSION_DENIED))) as node:
        peer = Peer(node)
        await peer.call("connect")
        reply = await peer.call("subscribe", {"channel": "open:a"})
        assert reply["error"]["code"] == 103 and peer.session.channels == []


@pytest.mark.parametrize("channel", ["shut:a", "tokens:a"], ids=["allow-off", "token-required"])
@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_a_subscribing_hook_decides_whatever_the_namespace_says(channel: str):
    async with hooked(Subscribing()) as node:
        peer = Peer(node)
        await peer.call("connect")
        assert "subscribe" in await peer.call("subscribe", {"channel": channel})


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_a_sub_refresh_hook_saying_expired_ends_the_subscription_with_2501():
    class App(Subscribing):
        async def sub_refresh(self, ctx: SubRefreshContext) -> SubRefreshResult:
            return SubRefreshResult(expired=True)

    async with hooked(App(SubscribeResult(expire_at=int(time.time()) + 1))) as node:
        peer = Peer(node)
        await peer.call("connect")
        reply = await peer.call("subscribe", {"channel": "open:a"})
        assert "expires" not in reply["subscribe"]
        await until(lambda: peer.pushes("unsubscribe"))
        assert peer.pushes("unsubscribe")[0]["unsubscribe"]["code"] == 2501


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_a_sub_refresh_hook_extends_the_subscription_with_new_info():
    refreshed = asyncio.Event()

    class App(Subscribing):
        async def sub_refresh(self, ctx: SubRefreshContext) -> SubRefreshResult:
            refreshed.set()
            return SubRefreshResult(expire_at=int(time.time()) + 3600, info={"seat": 4})

    answer = SubscribeResult(info={"seat": 3}, expire_at=int(time.time()) + 1)
    async with hooked(App(answer)) as node:
        peer = Peer(node)
        await peer.call("connect")
        await peer.call("subscribe", {"channel": "open:a"})
        await asyncio.wait_for(refreshed.wait(), TIMEOUT)

        async def seat() -> Any:
            return (await node.channel_presence("open:a"))[peer.session.client_id].chan_info

        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT
        while await seat() != {"seat": 4} and loop.time() < deadline:
            await asyncio.sleep(0.005)
        assert await seat() == {"seat": 4} and peer.session.channels == ["open:a"]


# publishing ---------------------------------------------------------------------------


class Publishing:
    def __init__(self, answer: Any) -> None:
        self.answer = answer

    async def publishing(self, ctx: PublishContext) -> PublishResult:
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer  # type: ignore[no-any-return]


async def published(node: Node, app: Publishing, channel: str = "open:a") -> tuple[Peer, Any]:
    """A subscriber's reply to its own publish, and the publication it got."""
    peer = Peer(node)
    await peer.call("connect")
    await peer.call("subscribe", {"channel": channel})
    reply = await peer.call("publish", {"channel": channel, "data": {"text": "hi"}})
    if "error" in reply:
        return peer, reply
    await until(lambda: peer.pushes("pub"))
    return peer, peer.pushes("pub")[0]["pub"]


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_a_publishing_hook_replaces_the_data():
    app = Publishing(PublishResult(data={"text": "hi", "checked": True}))
    async with hooked(app) as node:
        _, pub = await published(node, app)
        assert pub["data"] == {"text": "hi", "checked": True} and pub["offset"] == 1


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_a_publishing_hook_that_keeps_the_data_publishes_it():
    app = Publishing(PublishResult())
    async with hooked(app) as node:
        _, pub = await published(node, app)
        assert pub["data"] == {"text": "hi"}


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_a_publication_that_skips_history_has_no_offset_and_is_not_kept():
    app = Publishing(PublishResult(skip_history=True))
    async with hooked(app) as node:
        _, pub = await published(node, app)
        assert "offset" not in pub
        assert (await node.reads.position("open:a")).offset == 0


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_a_publishing_hooks_error_code_reaches_the_client_unchanged():
    app = Publishing(ReplyError(ErrorCode.PERMISSION_DENIED, "read only"))
    async with hooked(app) as node:
        _, reply = await published(node, app)
        assert reply["error"] == {"code": 103, "message": "read only"}


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_a_publishing_hook_allows_where_the_namespace_does_not():
    class App(Publishing):
        async def subscribing(self, ctx: SubscribeContext) -> SubscribeResult:
            return SubscribeResult()

    app = App(PublishResult())
    async with hooked(app) as node:
        _, pub = await published(node, app, "shut:a")
        assert pub["data"] == {"text": "hi"}


# rpc ------------------------------------------------------------------------------------


class Answering:
    async def rpc(self, ctx: RPCContext) -> RPCResult:
        if ctx.method == "whoami":
            return RPCResult({"user": ctx.client.user, "data": ctx.data})
        raise ReplyError(ErrorCode.METHOD_NOT_FOUND)


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_the_rpc_hook_answers_with_its_result():
    async with hooked(Answering()) as node:
        peer = Peer(node)
        await peer.call("connect")
        reply = await peer.call("rpc", {"method": "whoami", "data": [1]})
        assert reply["rpc"] == {"data": {"user": "", "data": [1]}}


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_the_rpc_hooks_error_is_the_reply():
    async with hooked(Answering()) as node:
        peer = Peer(node)
        await peer.call("connect")
        assert (await peer.call("rpc", {"method": "nope"}))["error"]["code"] == 104


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_rpc_without_an_rpc_hook_is_not_available():
    async with hooked(Subscribing()) as node:
        peer = Peer(node)
        await peer.call("connect")
        assert (await peer.call("rpc", {"method": "whoami"}))["error"]["code"] == 108


# Misbehaving hooks --------------------------------------------------------------------


class Misbehaving:
    def __init__(self, how: str) -> None:
        self.how = how

    async def rpc(self, ctx: RPCContext) -> Any:
        if self.how == "raises":
            raise KeyError("bug")
        if self.how == "hangs":
            await asyncio.Event().wait()
        return {"not": "an RPCResult"}


@pytest.mark.parametrize("how", ["raises", "hangs", "garbage"])
@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_a_misbehaving_hook_gives_error_100_and_the_connection_goes_on(
    how: str, caplog: pytest.LogCaptureFixture
):
    async with hooked(Misbehaving(how), app={"timeout": 0.05}) as node:
        peer = Peer(node)
        await peer.call("connect")
        reply = await peer.call("rpc", {"method": "m"})
        assert reply["error"] == {
            "code": 100,
            "message": "internal server error",
            "temporary": True,
        }
        assert len(hook_failures(caplog)) == 1
        assert "subscribe" in await peer.call("subscribe", {"channel": "open:a"})
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# Notifications ------------------------------------------------------------------------


class Notified:
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    async def connected(self, client: Client) -> None:
        self.events.append(("connected", client.user))

    async def subscribed(self, client: Client, channel: str) -> None:
        self.events.append(("subscribed", channel))

    async def unsubscribed(self, client: Client, channel: str) -> None:
        self.events.append(("unsubscribed", channel))

    async def disconnected(self, client: Client, code: int, reason: str) -> None:
        self.events.append(("disconnected", code, reason))


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_notifications_follow_the_connections_life():
    app = Notified()
    async with hooked(app) as node:
        peer = Peer(node)
        await peer.call("connect")
        await peer.call("subscribe", {"channel": "open:a"})
        await peer.call("subscribe", {"channel": "open:b"})
        await peer.call("unsubscribe", {"channel": "open:a"})
        await peer.session.server_unsubscribe("open:b")
        await peer.call("unsubscribe", {"channel": "open:never"})  # not subscribed: no event
        peer.session.disconnect(Disconnect(4000, "bye"))
        await until(lambda: len(app.events) == 6)
        assert app.events == [
            ("connected", ""),
            ("subscribed", "open:a"),
            ("subscribed", "open:b"),
            ("unsubscribed", "open:a"),
            ("unsubscribed", "open:b"),
            ("disconnected", 4000, "bye"),
        ]


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_subscriptions_held_when_the_connection_closes_are_unsubscribed_too():
    app = Notified()
    async with hooked(app) as node:
        peer = Peer(node)
        await peer.call("connect")
        await peer.call("subscribe", {"channel": "open:a"})
        peer.session.disconnect(Disconnect(4000, "bye"))
        await until(lambda: len(app.events) == 4)
        assert app.events[2:] == [("disconnected", 4000, "bye"), ("unsubscribed", "open:a")]


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_a_subscription_that_expires_is_unsubscribed():
    app = Notified()
    async with hooked(app) as node:
        peer = Peer(node)
        await peer.call("connect")
        await peer.call("subscribe", {"channel": "open:a"})
        subscriptions = peer.session.subscriptions
        sub = subscriptions.active("open:a")
        assert sub is not None
        subscriptions.end_expired("open:a", sub)
        await until(lambda: len(app.events) == 3)
        assert app.events[2] == ("unsubscribed", "open:a")


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_a_client_that_goes_away_is_disconnected_with_3000():
    app = Notified()
    async with hooked(app) as node:
        peer = Peer(node)
        await peer.call("connect")
        peer.session.on_transport_closed()
        await until(lambda: len(app.events) == 2)
        assert app.events[1] == ("disconnected", 3000, "connection closed")


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_a_connection_that_never_connected_gets_no_notification():
    app = Notified()
    async with hooked(app) as node:
        peer = Peer(node)
        peer.session.on_transport_closed()
        await asyncio.sleep(0.01)
        assert app.events == []


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_server_side_subscriptions_are_notified_too():
    class App(Notified):
        async def connecting(self, ctx: ConnectContext) -> ConnectResult:
            return ConnectResult("alice", channels=["open:a"])

    app = App()
    async with hooked(app) as node:
        peer = Peer(node)
        await peer.call("connect")
        await peer.session.server_subscribe("open:b")
        await until(lambda: len(app.events) == 3)
        assert app.events == [
            ("connected", "alice"),
            ("subscribed", "open:a"),
            ("subscribed", "open:b"),
        ]


class Leaving:
    """Hooks during which the client goes away."""

    def __init__(self) -> None:
        self.peer: Peer | None = None

    async def connecting(self, ctx: ConnectContext) -> ConnectResult:
        assert self.peer is not None
        self.peer.session.on_transport_closed()
        return ConnectResult("alice")

    async def subscribing(self, ctx: SubscribeContext) -> SubscribeResult:
        assert self.peer is not None
        self.peer.session.on_transport_closed()
        return SubscribeResult()


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_a_client_gone_during_the_connecting_hook_is_not_registered():
    app = Leaving()
    async with hooked(app) as node:
        app.peer = peer = Peer(node)
        assert await peer.call("connect") == {}
        assert list(node.hub.sessions()) == [] and not peer.session.is_connected


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_a_client_gone_during_the_subscribing_hook_leaves_no_subscriber():
    class App(Leaving):
        async def connecting(self, ctx: ConnectContext) -> ConnectResult:
            return ConnectResult("alice")

    app = App()
    async with hooked(app) as node:
        app.peer = peer = Peer(node)
        await peer.call("connect")
        assert await peer.call("subscribe", {"channel": "open:a"}) == {}
        assert not node.hub.has_subscribers("open:a") and peer.session.channels == []
