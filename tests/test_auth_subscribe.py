"""Subscription tokens on the wire: private namespaces, sub_refresh and subscription expiry."""

from __future__ import annotations

import asyncio
from typing import Any

import jwt
import pytest
from wsfan.auth.cli import mint
from wsfan.node import Node
from wsfan.protocol import Encoding

from tests.client import ProtoClient
from tests.conftest import TIMEOUT_SCALE

# config/default.toml has presence and join/leave off outside namespaces; the tests
# below use them (or a presence call) on channels such as "news", so they say so.
WITH_PRESENCE = {"presence": True, "join_leave": True}

PRIVATE = "private:room1"
NAMESPACES = {
    "private": {
        "require_sub_token": True,
        "presence": True,
        "join_leave": True,
        "allow_publish": True,
        "history_size": 10,
    },
    "closed": {"allow_subscribe": False},
}


@pytest.fixture
def token(node: Node):
    def make(user: str = "alice", **kwargs: Any) -> str:
        return mint(node.settings.auth.hmac_secret, user, **kwargs)

    return make


@pytest.fixture
def connected(open_client, token):
    """A JSON client connected as `user` (anonymous for "")."""

    async def open_as(user: str = "alice") -> ProtoClient:
        c = await open_client(Encoding.JSON)
        await c.connect(**({"token": token(user)} if user else {}))
        return c

    return open_as


async def error_code(c: ProtoClient, method: str, params: dict[str, Any]) -> int:
    return (await c.call(method, params))["error"]["code"]


# Subscribe --------------------------------------------------------------------------


@pytest.mark.settings(namespaces=NAMESPACES)
@pytest.mark.gen_test
async def test_private_channel_without_a_token_answers_103(connected):
    c = await connected()
    assert await error_code(c, "subscribe", {"channel": PRIVATE}) == 103


@pytest.mark.settings(namespaces=NAMESPACES)
@pytest.mark.gen_test
async def test_private_channel_with_its_token_subscribes_and_tells_when_to_refresh(client, token):
    c = await client(connect=False)
    await c.connect(token=token("alice"))
    result = await c.result(
        "subscribe", {"channel": PRIVATE, "token": token("alice", channel=PRIVATE, ttl=60)}
    )
    assert result["expires"] is True and 58 <= result["ttl"] <= 60
    assert result["recoverable"] is True


@pytest.mark.settings(namespaces=NAMESPACES)
@pytest.mark.gen_test
async def test_subscription_token_without_exp_does_not_expire(connected, token):
    c = await connected()
    params = {"channel": PRIVATE, "token": token("alice", channel=PRIVATE, ttl=0)}
    assert "expires" not in await c.result("subscribe", params)


@pytest.mark.settings(namespaces=NAMESPACES)
@pytest.mark.gen_test
async def test_token_for_another_channel_answers_103(connected, token):
    c = await connected()
    params = {"channel": PRIVATE, "token": token("alice", channel="private:room2")}
    assert await error_code(c, "subscribe", params) == 103


@pytest.mark.settings(namespaces=NAMESPACES)
@pytest.mark.gen_test
async def test_token_for_another_user_answers_103(connected, token):
    c = await connected("alice")
    params = {"channel": PRIVATE, "token": token("bob", channel=PRIVATE)}
    assert await error_code(c, "subscribe", params) == 103


@pytest.mark.settings(namespaces=NAMESPACES)
@pytest.mark.gen_test
async def test_anonymous_connection_with_an_anonymous_token_subscribes(connected, token):
    c = await connected("")
    await c.result("subscribe", {"channel": PRIVATE, "token": token("", channel=PRIVATE)})


@pytest.mark.settings(namespaces=NAMESPACES)
@pytest.mark.gen_test
async def test_expired_subscription_token_answers_109(connected, token):
    c = await connected()
    params = {"channel": PRIVATE, "token": token("alice", channel=PRIVATE, ttl=-1)}
    assert (await c.call("subscribe", params))["error"] == {"code": 109, "message": "token expired"}


@pytest.mark.parametrize("kind", ["bad-signature", "alg-none", "connection-token", "garbage"])
@pytest.mark.settings(namespaces=NAMESPACES)
@pytest.mark.gen_test
async def test_invalid_subscription_token_answers_103(connected, token, node, kind: str):
    claims = {"sub": "alice", "channel": PRIVATE}
    forged = {
        "bad-signature": jwt.encode(claims, "x" * 40, algorithm="HS256"),
        "alg-none": jwt.encode(claims, None, algorithm="none"),
        "connection-token": token("alice"),
        "garbage": "garbage",
    }[kind]
    c = await connected()
    assert await error_code(c, "subscribe", {"channel": PRIVATE, "token": forged}) == 103
    assert node.hub.subscribers(PRIVATE) == []


@pytest.mark.settings(namespaces=NAMESPACES)
@pytest.mark.gen_test
async def test_subscription_token_grants_a_namespace_closed_to_subscribe(connected, token):
    c = await connected()
    assert await error_code(c, "subscribe", {"channel": "closed:1"}) == 103
    await c.result(
        "subscribe", {"channel": "closed:1", "token": token("alice", channel="closed:1")}
    )


@pytest.mark.settings(namespaces=NAMESPACES)
@pytest.mark.gen_test
async def test_subscription_token_info_is_the_chan_info_of_presence_and_publications(
    connected, token
):
    alice, bob = await connected("alice"), await connected("bob")
    for c, user in ((bob, "bob"), (alice, "alice")):
        sub_token = token(user, channel=PRIVATE, info={"seat": user})
        await c.result("subscribe", {"channel": PRIVATE, "token": sub_token})
    presence = (await alice.result("presence", {"channel": PRIVATE}))["presence"]
    assert presence[alice.client_id]["chan_info"] == {"seat": "alice"}
    await alice.result("publish", {"channel": PRIVATE, "data": "hi"})
    pub = (await bob.publications(PRIVATE, 1))[0]
    assert pub["info"]["chan_info"] == {"seat": "alice"}


# Publish, history and presence in a private namespace -----------------------------------


@pytest.mark.settings(namespaces=NAMESPACES)
@pytest.mark.gen_test
async def test_private_channel_needs_a_subscription_to_publish_read_history_or_presence(
    connected, token
):
    c = await connected()
    for method, params in (
        ("publish", {"channel": PRIVATE, "data": 1}),
        ("history", {"channel": PRIVATE}),
        ("presence", {"channel": PRIVATE}),
        ("presence_stats", {"channel": PRIVATE}),
    ):
        assert await error_code(c, method, params) == 103, method
    await c.result("subscribe", {"channel": PRIVATE, "token": token("alice", channel=PRIVATE)})
    await c.result("publish", {"channel": PRIVATE, "data": 1})
    assert len((await c.result("history", {"channel": PRIVATE, "limit": -1}))["publications"]) == 1
    assert (await c.result("presence_stats", {"channel": PRIVATE}))["num_clients"] == 1


# sub_refresh ------------------------------------------------------------------------


@pytest.mark.settings(namespaces=NAMESPACES)
@pytest.mark.gen_test
async def test_sub_refresh_extends_the_subscription(connected, token, node):
    c = await connected()
    await c.result(
        "subscribe", {"channel": PRIVATE, "token": token("alice", channel=PRIVATE, ttl=60)}
    )
    result = await c.result(
        "sub_refresh", {"channel": PRIVATE, "token": token("alice", channel=PRIVATE, ttl=600)}
    )
    assert result["expires"] is True and 598 <= result["ttl"] <= 600


@pytest.mark.settings(namespaces=NAMESPACES)
@pytest.mark.gen_test
async def test_sub_refresh_with_new_info_updates_presence(connected, token):
    c = await connected()
    sub_token = token("alice", channel=PRIVATE, info=1)
    await c.result("subscribe", {"channel": PRIVATE, "token": sub_token})
    await c.result(
        "sub_refresh", {"channel": PRIVATE, "token": token("alice", channel=PRIVATE, info=2)}
    )
    presence = (await c.result("presence", {"channel": PRIVATE}))["presence"]
    assert presence[c.client_id]["chan_info"] == 2


@pytest.mark.settings(namespaces=NAMESPACES)
@pytest.mark.gen_test
async def test_sub_refresh_of_a_channel_not_subscribed_answers_103(connected, token):
    c = await connected()
    params = {"channel": PRIVATE, "token": token("alice", channel=PRIVATE)}
    assert await error_code(c, "sub_refresh", params) == 103


@pytest.mark.settings(namespaces=NAMESPACES)
@pytest.mark.gen_test
async def test_sub_refresh_with_an_expired_token_answers_110(connected, token):
    c = await connected()
    await c.result("subscribe", {"channel": PRIVATE, "token": token("alice", channel=PRIVATE)})
    params = {"channel": PRIVATE, "token": token("alice", channel=PRIVATE, ttl=-1)}
    assert await error_code(c, "sub_refresh", params) == 110


@pytest.mark.settings(namespaces=NAMESPACES)
@pytest.mark.gen_test
async def test_sub_refresh_with_a_token_for_another_channel_answers_103(connected, token):
    c = await connected()
    await c.result("subscribe", {"channel": PRIVATE, "token": token("alice", channel=PRIVATE)})
    params = {"channel": PRIVATE, "token": token("alice", channel="private:other")}
    assert await error_code(c, "sub_refresh", params) == 103


# Expiry -----------------------------------------------------------------------------


@pytest.mark.settings(
    channels=WITH_PRESENCE, namespaces=NAMESPACES, auth={"expired_close_delay": 0.2}
)
@pytest.mark.gen_test(timeout=10 * TIMEOUT_SCALE)
async def test_subscription_not_refreshed_in_time_ends_with_unsubscribe_2501(
    connected, token, node
):
    c = await connected()
    await c.result(
        "subscribe", {"channel": PRIVATE, "token": token("alice", channel=PRIVATE, ttl=1)}
    )
    push = await c.push("unsubscribe", PRIVATE)
    assert push["unsubscribe"] == {"code": 2501, "reason": "subscription expired"}
    assert node.hub.subscribers(PRIVATE) == []
    assert await c.result("presence_stats", {"channel": "news"})  # still connected


@pytest.mark.settings(namespaces=NAMESPACES, auth={"expired_close_delay": 0.2})
@pytest.mark.gen_test(timeout=10 * TIMEOUT_SCALE)
async def test_subscription_refreshed_in_time_outlives_its_first_token(connected, token, node):
    c = await connected()
    await c.result(
        "subscribe", {"channel": PRIVATE, "token": token("alice", channel=PRIVATE, ttl=1)}
    )
    await c.result(
        "sub_refresh", {"channel": PRIVATE, "token": token("alice", channel=PRIVATE, ttl=30)}
    )
    await asyncio.sleep(2.0)  # past the first token's exp plus the delay
    # answered only while subscribed; reading the reply also collects any push before it
    assert (await c.result("presence_stats", {"channel": PRIVATE}))["num_clients"] == 1
    assert not [p for p in c.pushes if "unsubscribe" in p]
    assert len(node.hub.subscribers(PRIVATE)) == 1
