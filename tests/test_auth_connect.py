"""Connection tokens on the wire: connect, refresh, expiry, `info` and `channels` claims."""

from __future__ import annotations

import asyncio
import time
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

OTHER_SECRET = "a-different-secret-that-is-long-enough-to-sign-with"


@pytest.fixture
def token(node: Node):
    """Mints tokens with the test server's own secret."""

    def make(user: str = "alice", **kwargs: Any) -> str:
        return mint(node.settings.auth.hmac_secret, user, **kwargs)

    return make


@pytest.fixture
def json_client(open_client):
    async def open_json() -> ProtoClient:
        return await open_client(Encoding.JSON)

    return open_json


async def wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout * TIMEOUT_SCALE
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


# Connect ----------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_connect_with_a_token_sets_the_user_and_tells_when_to_refresh(client, node, token):
    c = await client(connect=False)
    result = await c.connect(token=token("alice", ttl=60))
    assert result["expires"] is True
    assert 58 <= result["ttl"] <= 60
    session = node.hub.session(c.client_id)
    assert session is not None and session.user == "alice"


@pytest.mark.gen_test
async def test_token_without_exp_does_not_expire(json_client, token):
    c = await json_client()
    result = await c.connect(token=token("alice", ttl=0))
    assert "expires" not in result and "ttl" not in result


@pytest.mark.gen_test
async def test_expiry_years_away_is_capped_at_a_year(json_client, token):
    c = await json_client()
    result = await c.connect(token=token("alice", ttl=20 * 365 * 86400))
    assert 364 * 86400 <= result["ttl"] <= 365 * 86400


@pytest.mark.settings(channels=WITH_PRESENCE)
@pytest.mark.gen_test
async def test_token_info_is_the_conn_info_in_presence(json_client, token):
    c = await json_client()
    await c.connect(token=token("alice", info={"name": "Alice"}))
    await c.result("subscribe", {"channel": "news"})
    presence = (await c.result("presence", {"channel": "news"}))["presence"]
    assert presence[c.client_id] == {
        "user": "alice",
        "client": c.client_id,
        "conn_info": {"name": "Alice"},
    }


@pytest.mark.settings(channels=WITH_PRESENCE)
@pytest.mark.gen_test
async def test_token_info_travels_with_joins_and_publications(client, token):
    bob = await client(connect=False)
    await bob.connect(token=token("bob"))
    await bob.result("subscribe", {"channel": "news"})
    alice = await client(connect=False)
    await alice.connect(token=token("alice", info={"role": "admin"}))
    await alice.result("subscribe", {"channel": "news"})
    join = await bob.push("join", "news")
    while join["join"]["info"]["client"] != alice.client_id:  # bob's own join comes first
        join = await bob.push("join", "news")
    assert join["join"]["info"]["conn_info"] == {"role": "admin"}
    await alice.result("publish", {"channel": "news", "data": {"text": "hi"}})
    pub = (await bob.publications("news", 1))[0]
    assert pub["info"] == {
        "user": "alice",
        "client": alice.client_id,
        "conn_info": {"role": "admin"},
    }


def _forged(kind: str, secret: str) -> str:
    claims = {"sub": "alice", "exp": int(time.time()) + 60}
    if kind == "bad-signature":
        return jwt.encode(claims, OTHER_SECRET, algorithm="HS256")
    if kind == "wrong-algorithm":
        return jwt.encode(claims, secret + secret, algorithm="HS512")
    if kind == "alg-none":
        return jwt.encode(claims, None, algorithm="none")
    if kind == "subscription-token":
        return jwt.encode({**claims, "channel": "news"}, secret, algorithm="HS256")
    return "not.a.token"


@pytest.mark.parametrize(
    "kind", ["bad-signature", "wrong-algorithm", "alg-none", "subscription-token", "garbage"]
)
@pytest.mark.gen_test
async def test_invalid_token_closes_with_3500(json_client, node, kind: str):
    c = await json_client()
    await c.send({"id": 1, "connect": {"token": _forged(kind, node.settings.auth.hmac_secret)}})
    assert await c.closed() == (3500, "invalid token")
    assert node.hub.num_clients == 0


@pytest.mark.gen_test
async def test_expired_token_answers_109_and_a_fresh_token_then_connects(json_client, token, node):
    c = await json_client()
    reply = await c.call("connect", {"token": token("alice", ttl=-10)})
    assert reply["error"] == {"code": 109, "message": "token expired"}
    assert node.hub.num_clients == 0
    await c.connect(token=token("alice"))
    assert node.hub.session(c.client_id) is not None


@pytest.mark.settings(client={"allow_anonymous": False})
@pytest.mark.gen_test
async def test_connect_without_a_token_answers_101_when_tokens_are_required(json_client):
    c = await json_client()
    assert (await c.call("connect", {}))["error"]["code"] == 101


@pytest.mark.settings(
    client={"allow_anonymous": False},
    namespaces={"members": {"allow_anonymous": False}, "lobby": {"allow_anonymous": True}},
)
@pytest.mark.gen_test
async def test_token_with_empty_sub_connects_an_anonymous_user(json_client, token, node):
    c = await json_client()
    await c.connect(token=token(""))
    assert node.hub.session(c.client_id).user == ""
    assert (await c.call("subscribe", {"channel": "members:1"}))["error"]["code"] == 103
    await c.result("subscribe", {"channel": "lobby:1"})


@pytest.mark.settings(auth={"hmac_secret": ""})
@pytest.mark.gen_test
async def test_token_closes_with_3500_when_no_key_is_configured(json_client):
    c = await json_client()
    token = mint("some-secret-that-nobody-configured-anywhere!", "alice")
    await c.send({"id": 1, "connect": {"token": token}})
    assert (await c.closed())[0] == 3500


# Refresh ----------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_refresh_with_a_new_token_extends_the_connection(json_client, token, node):
    c = await json_client()
    await c.connect(token=token("alice", ttl=60))
    result = await c.result("refresh", {"token": token("alice", ttl=600)})
    assert result["expires"] is True and 598 <= result["ttl"] <= 600
    assert node.hub.session(c.client_id).expires_at >= time.time() + 598


@pytest.mark.gen_test
async def test_refresh_with_a_token_without_exp_stops_the_expiry(json_client, token):
    c = await json_client()
    await c.connect(token=token("alice", ttl=60))
    assert await c.result("refresh", {"token": token("alice", ttl=0)}) == {}


@pytest.mark.gen_test
async def test_refresh_with_an_expired_token_closes_with_3005(json_client, token):
    c = await json_client()
    await c.connect(token=token("alice", ttl=60))
    await c.send({"id": 9, "refresh": {"token": token("alice", ttl=-1)}})
    disconnect = await c.push("disconnect")
    assert disconnect["disconnect"] == {
        "code": 3005,
        "reason": "connection expired",
        "reconnect": True,
    }
    assert (await c.closed())[0] == 3005


@pytest.mark.gen_test
async def test_refresh_with_an_invalid_token_closes_with_3500(json_client, token, node):
    c = await json_client()
    await c.connect(token=token("alice"))
    await c.send({"id": 9, "refresh": {"token": _forged("bad-signature", "")}})
    assert (await c.closed())[0] == 3500


@pytest.mark.gen_test
async def test_refresh_with_another_users_token_closes_with_3500(json_client, token):
    c = await json_client()
    await c.connect(token=token("alice"))
    await c.send({"id": 9, "refresh": {"token": token("mallory")}})
    assert (await c.closed())[0] == 3500


@pytest.mark.settings(channels=WITH_PRESENCE)
@pytest.mark.gen_test
async def test_refresh_with_new_info_updates_presence(json_client, token):
    c = await json_client()
    await c.connect(token=token("alice", info={"v": 1}))
    await c.result("subscribe", {"channel": "news"})
    await c.result("refresh", {"token": token("alice", info={"v": 2})})
    presence = (await c.result("presence", {"channel": "news"}))["presence"]
    assert presence[c.client_id]["conn_info"] == {"v": 2}


@pytest.mark.gen_test
async def test_anonymous_connection_may_not_refresh_into_a_user(json_client, token):
    c = await json_client()
    await c.connect()
    await c.send({"id": 9, "refresh": {"token": token("alice")}})
    assert (await c.closed())[0] == 3500


# Expiry -----------------------------------------------------------------------------


@pytest.mark.settings(auth={"expired_close_delay": 0.2})
@pytest.mark.gen_test(timeout=10 * TIMEOUT_SCALE)
async def test_connection_not_refreshed_in_time_closes_with_3005(json_client, token):
    c = await json_client()
    await c.connect(token=token("alice", ttl=1))
    started = time.monotonic()
    disconnect = await c.push("disconnect")
    assert disconnect["disconnect"]["code"] == 3005
    assert disconnect["disconnect"]["reconnect"] is True
    assert (await c.closed())[0] == 3005
    assert time.monotonic() - started >= 0.2  # not before exp plus the delay


@pytest.mark.settings(channels=WITH_PRESENCE, auth={"expired_close_delay": 0.2})
@pytest.mark.gen_test(timeout=10 * TIMEOUT_SCALE)
async def test_connection_refreshed_in_time_stays_open_past_the_first_expiry(
    json_client, token, node
):
    c = await json_client()
    await c.connect(token=token("alice", ttl=1))
    await c.result("refresh", {"token": token("alice", ttl=30)})
    await asyncio.sleep(2.0)  # past the first token's exp plus the delay
    assert await c.result("presence_stats", {"channel": "news"})
    assert node.hub.session(c.client_id) is not None


# Server-side subscriptions (the channels claim) ----------------------------------------


@pytest.mark.gen_test
async def test_token_channels_are_subscribed_on_connect_and_listed_in_subs(client, token, node):
    c = await client(connect=False)
    await node.publish("news", {"n": 1})
    result = await c.connect(token=token("alice", channels=["news", "chat:1"]))
    assert set(result["subs"]) == {"news", "chat:1"}
    news = result["subs"]["news"]
    assert news["recoverable"] is True and news["offset"] == 1 and news["epoch"]
    await node.publish("news", {"n": 2})
    pub = (await c.publications("news", 1))[0]
    assert pub == {"data": {"n": 2}, "offset": 2}
    assert set(node.hub.session(c.client_id).channels) == {"news", "chat:1"}


@pytest.mark.gen_test
async def test_token_channels_recover_from_the_position_the_client_sends(json_client, token, node):
    first = await json_client()
    result = await first.connect(token=token("alice", channels=["news"]))
    position = result["subs"]["news"]
    first.close()
    await wait_for(lambda: node.hub.num_clients == 0)
    for n in (1, 2, 3):
        await node.publish("news", {"n": n})
    again = await json_client()
    subs = {"news": {"recover": True, "offset": position["offset"], "epoch": position["epoch"]}}
    result = await again.connect(token=token("alice", channels=["news"]), subs=subs)
    news = result["subs"]["news"]
    assert (news["was_recovering"], news["recovered"]) == (True, True)
    assert [p["data"] for p in news["publications"]] == [{"n": 1}, {"n": 2}, {"n": 3}]


@pytest.mark.settings(client={"max_channels": 2})
@pytest.mark.gen_test
async def test_token_channels_up_to_max_channels_are_subscribed(json_client, token):
    c = await json_client()
    result = await c.connect(token=token("alice", channels=["a", "b"]))
    assert set(result["subs"]) == {"a", "b"}
    assert (await c.call("subscribe", {"channel": "c"}))["error"]["code"] == 106


@pytest.mark.settings(client={"max_channels": 2})
@pytest.mark.gen_test
async def test_token_channels_over_max_channels_close_with_3505(json_client, token, node):
    c = await json_client()
    await c.send({"id": 1, "connect": {"token": token("alice", channels=["a", "b", "c"])}})
    assert await c.closed() == (3505, "channel limit")
    assert node.hub.num_channels == 0


@pytest.mark.gen_test
async def test_token_channel_in_an_unknown_namespace_answers_102(json_client, token, node):
    c = await json_client()
    reply = await c.call("connect", {"token": token("alice", channels=["news", "nope:1"])})
    assert reply["error"]["code"] == 102
    assert node.hub.num_clients == 0 and node.hub.num_channels == 0
