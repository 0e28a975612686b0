"""Every server API method's effect, seen by real WebSocket clients, on both brokers."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient
from wsfan.node import Node
from wsfan.protocol import Encoding

from tests.api_client import ApiCaller
from tests.client import ProtoClient
from tests.conftest import TIMEOUT_SCALE, Opener

# A namespace with everything off: no history, no presence, clients may not publish.
QUIET = {"quiet": {"allow_anonymous": True}}
# config/default.toml has presence and join/leave off outside namespaces; the tests
# below use them (or a presence call) on channels such as "news", so they say so.
WITH_PRESENCE = {"presence": True, "join_leave": True}


@pytest.fixture
def api(http_server: Any, http_client: AsyncHTTPClient, http_port: int) -> ApiCaller:
    return ApiCaller(http_client, f"http://127.0.0.1:{http_port}/api")


async def connected(open_client: Opener, encoding: Encoding = Encoding.JSON) -> ProtoClient:
    c = await open_client(encoding)
    await c.connect()
    return c


def name_user(node: Node, c: ProtoClient, user: str) -> None:
    """Give a connection a user id. Connections here are anonymous until tokens
    exist, so tests name the user on the session directly."""
    session = node.hub.session(c.client_id)
    assert session is not None
    node.hub.remove_session(session)
    session.user = user
    node.hub.add_session(session)


async def subscribed(open_client: Opener, channel: str) -> ProtoClient:
    c = await connected(open_client)
    await c.result("subscribe", {"channel": channel})
    return c


# publish ---------------------------------------------------------------------


@pytest.mark.gen_test
async def test_publish_reaches_subscribers_and_answers_offset_and_epoch(
    api: ApiCaller, open_client: Opener
) -> None:

    c = await connected(open_client)
    reply = await c.result("subscribe", {"channel": "news"})
    result = await api.result("publish", {"channel": "news", "data": {"text": "hi"}})
    assert result == {"offset": 1, "epoch": reply["epoch"]}
    pub = (await c.push("pub", "news"))["pub"]
    assert pub == {"data": {"text": "hi"}, "offset": 1}


@pytest.mark.settings(namespaces=QUIET)
@pytest.mark.gen_test
async def test_publish_to_a_channel_without_history_answers_an_empty_result(
    api: ApiCaller, open_client: Opener
) -> None:
    c = await subscribed(open_client, "quiet:a")
    assert await api.result("publish", {"channel": "quiet:a", "data": 1}) == {}
    assert (await c.push("pub", "quiet:a"))["pub"] == {"data": 1}


@pytest.mark.settings(namespaces=QUIET)
@pytest.mark.gen_test
async def test_publish_is_allowed_where_clients_may_not_publish(api: ApiCaller) -> None:
    assert await api.result("publish", {"channel": "quiet:a", "data": 1}) == {}


@pytest.mark.gen_test
async def test_publish_delivers_its_tags(api: ApiCaller, open_client: Opener) -> None:
    c = await subscribed(open_client, "news")
    await api.result("publish", {"channel": "news", "data": 1, "tags": {"kind": "alert"}})
    assert (await c.push("pub", "news"))["pub"]["tags"] == {"kind": "alert"}


@pytest.mark.gen_test
async def test_publish_to_an_unknown_namespace_answers_102(api: ApiCaller) -> None:
    assert await api.error("publish", {"channel": "nope:a", "data": 1}) == {
        "code": 102,
        "message": "unknown channel",
    }


@pytest.mark.gen_test
async def test_publish_to_a_malformed_channel_answers_107_naming_it(api: ApiCaller) -> None:
    error = await api.error("publish", {"channel": "two words", "data": 1})
    assert error["code"] == 107
    assert error["message"].startswith("channel:")


@pytest.mark.gen_test
async def test_a_repeated_idempotency_key_returns_the_first_result_and_is_not_delivered_again(
    api: ApiCaller, open_client: Opener
) -> None:
    c = await subscribed(open_client, "news")
    params = {"channel": "news", "data": "once", "idempotency_key": "k1"}
    first = await api.result("publish", params)
    again = await api.result("publish", {**params, "data": "twice"})
    assert again == first
    await api.result("publish", {"channel": "news", "data": "marker"})
    assert [p["data"] for p in await c.publications("news", 2)] == ["once", "marker"]
    history = await api.result("history", {"channel": "news", "limit": -1})
    assert [p["data"] for p in history["publications"]] == ["once", "marker"]


@pytest.mark.gen_test
async def test_the_same_idempotency_key_in_another_channel_publishes(api: ApiCaller) -> None:
    a = await api.result("publish", {"channel": "a", "data": 1, "idempotency_key": "k"})
    b = await api.result("publish", {"channel": "b", "data": 1, "idempotency_key": "k"})
    assert a["offset"] == b["offset"] == 1
    assert a["epoch"] != b["epoch"]


@pytest.mark.settings(api={"idempotency_window": 0.2})
@pytest.mark.gen_test
async def test_an_idempotency_key_publishes_again_after_the_window(api: ApiCaller) -> None:
    params = {"channel": "news", "data": 1, "idempotency_key": "k"}
    assert (await api.result("publish", params))["offset"] == 1
    await asyncio.sleep(0.4)
    assert (await api.result("publish", params))["offset"] == 2


@pytest.mark.gen_test
async def test_skip_history_delivers_without_keeping(api: ApiCaller, open_client: Opener) -> None:
    c = await subscribed(open_client, "news")
    assert await api.result("publish", {"channel": "news", "data": 1, "skip_history": True}) == {}
    assert (await c.push("pub", "news"))["pub"] == {"data": 1}
    history = await api.result("history", {"channel": "news", "limit": -1})
    assert history["publications"] == [] and history["offset"] == 0


@pytest.mark.gen_test
async def test_b64data_reaches_msgpack_clients_as_binary(
    api: ApiCaller, open_client: Opener
) -> None:
    c = await connected(open_client, Encoding.MSGPACK)
    await c.result("subscribe", {"channel": "news"})
    payload = base64.b64encode(b"\x00\x01\xff").decode()
    await api.result("publish", {"channel": "news", "b64data": payload})
    assert (await c.push("pub", "news"))["pub"]["data"] == b"\x00\x01\xff"


# broadcast -------------------------------------------------------------------


@pytest.mark.gen_test
async def test_broadcast_publishes_to_each_channel_and_answers_each_in_order(
    api: ApiCaller, open_client: Opener
) -> None:
    a, b = await subscribed(open_client, "a"), await subscribed(open_client, "b")
    result = await api.result(
        "broadcast", {"channels": ["a", "nope:x", "b"], "data": {"n": 1}, "tags": {"t": "1"}}
    )
    responses = result["responses"]
    assert responses[0]["result"]["offset"] == 1
    assert responses[1] == {"error": {"code": 102, "message": "unknown channel"}}
    assert responses[2]["result"]["offset"] == 1
    for c, channel in ((a, "a"), (b, "b")):
        assert (await c.push("pub", channel))["pub"] == {
            "data": {"n": 1},
            "offset": 1,
            "tags": {"t": "1"},
        }


@pytest.mark.settings(api={"max_broadcast_channels": 2})
@pytest.mark.gen_test
async def test_broadcast_over_the_channel_limit_answers_106(api: ApiCaller) -> None:
    error = await api.error("broadcast", {"channels": ["a", "b", "c"], "data": 1})
    assert error["code"] == 106


# subscribe / unsubscribe -------------------------------------------------------


@pytest.mark.gen_test
async def test_subscribe_pushes_subscribe_with_data_then_delivers_the_channel(
    api: ApiCaller, open_client: Opener
) -> None:
    c = await connected(open_client)
    await api.result("publish", {"channel": "news", "data": "before"})
    params = {"user": "", "client": c.client_id, "channel": "news", "data": {"welcome": 1}}
    assert await api.result("subscribe", params) == {}
    push = (await c.push("subscribe", "news"))["subscribe"]
    assert push["data"] == {"welcome": 1}
    assert push["recoverable"] is True and push["positioned"] is True
    assert push["offset"] == 1 and push["epoch"]
    await api.result("publish", {"channel": "news", "data": "after"})
    assert (await c.push("pub", "news"))["pub"] == {"data": "after", "offset": 2}


@pytest.mark.settings(channels=WITH_PRESENCE)
@pytest.mark.gen_test
async def test_a_server_side_subscription_shows_in_presence_with_its_info(
    api: ApiCaller, open_client: Opener
) -> None:
    c = await connected(open_client)
    params = {"user": "", "client": c.client_id, "channel": "news", "info": {"role": "guest"}}
    await api.result("subscribe", params)
    await c.push("subscribe", "news")
    presence = (await api.result("presence", {"channel": "news"}))["presence"]
    assert presence == {
        c.client_id: {"user": "", "client": c.client_id, "chan_info": {"role": "guest"}}
    }


@pytest.mark.gen_test
async def test_subscribe_with_recover_since_sends_the_missed_publications(
    api: ApiCaller, open_client: Opener
) -> None:
    first = await api.result("publish", {"channel": "news", "data": 1})
    await api.result("publish", {"channel": "news", "data": 2})
    await api.result("publish", {"channel": "news", "data": 3})
    c = await connected(open_client)
    since = {"offset": first["offset"], "epoch": first["epoch"]}
    await api.result(
        "subscribe",
        {"user": "", "client": c.client_id, "channel": "news", "recover_since": since},
    )
    assert (await c.push("subscribe", "news"))["subscribe"]["offset"] == 3
    assert [p["data"] for p in await c.publications("news", 2)] == [2, 3]


@pytest.mark.gen_test
async def test_subscribe_of_a_user_reaches_every_connection_of_theirs_only(
    api: ApiCaller, open_client: Opener, node: Node
) -> None:
    a1, a2, b = [await connected(open_client) for _ in range(3)]
    name_user(node, a1, "alice")
    name_user(node, a2, "alice")
    name_user(node, b, "bob")
    await api.result("subscribe", {"user": "alice", "channel": "news"})
    for c in (a1, a2):
        await c.push("subscribe", "news")
    await b.result("subscribe", {"channel": "marker"})
    await api.result("publish", {"channel": "news", "data": 1})
    await api.result("publish", {"channel": "marker", "data": 2})
    assert (await b.push("pub"))["channel"] == "marker"
    assert not any("subscribe" in p for p in b.pushes)


@pytest.mark.gen_test
async def test_subscribe_of_a_connection_already_in_the_channel_changes_nothing(
    api: ApiCaller, open_client: Opener
) -> None:
    c = await subscribed(open_client, "news")
    await c.result("subscribe", {"channel": "marker"})
    await api.result("subscribe", {"user": "", "client": c.client_id, "channel": "news"})
    await api.result("publish", {"channel": "news", "data": 1})
    await api.result("publish", {"channel": "marker", "data": 2})
    assert [(await c.push("pub"))["channel"] for _ in range(2)] == ["news", "marker"]
    assert not any("subscribe" in p for p in c.pushes)


@pytest.mark.gen_test
async def test_subscribe_to_an_unknown_namespace_answers_102(api: ApiCaller) -> None:
    error = await api.error("subscribe", {"user": "u", "channel": "nope:a"})
    assert error["code"] == 102


@pytest.mark.gen_test
async def test_unsubscribe_pushes_code_2000_and_stops_delivery(
    api: ApiCaller, open_client: Opener
) -> None:
    c = await subscribed(open_client, "news")
    await c.result("subscribe", {"channel": "marker"})
    params = {"user": "", "client": c.client_id, "channel": "news"}
    assert await api.result("unsubscribe", params) == {}
    assert (await c.push("unsubscribe", "news"))["unsubscribe"]["code"] == 2000
    await api.result("publish", {"channel": "news", "data": "gone"})
    await api.result("publish", {"channel": "marker", "data": "here"})
    assert (await c.push("pub"))["channel"] == "marker"


# disconnect ------------------------------------------------------------------


@pytest.mark.gen_test
async def test_disconnect_closes_with_3503_force_disconnect_by_default(
    api: ApiCaller, open_client: Opener
) -> None:
    c = await connected(open_client)
    assert await api.result("disconnect", {"user": "", "client": c.client_id}) == {}
    push = (await c.push("disconnect"))["disconnect"]
    assert push == {"code": 3503, "reason": "force disconnect", "reconnect": False}
    assert await c.closed() == (3503, "force disconnect")


@pytest.mark.gen_test
async def test_disconnect_with_a_custom_code_and_reason(
    api: ApiCaller, open_client: Opener
) -> None:
    c = await connected(open_client)
    params = {"user": "", "client": c.client_id, "disconnect": {"code": 4001, "reason": "moved"}}
    await api.result("disconnect", params)
    assert (await c.push("disconnect"))["disconnect"]["reconnect"] is True
    assert await c.closed() == (4001, "moved")


@pytest.mark.gen_test
async def test_disconnect_of_a_user_keeps_the_whitelisted_and_other_users(
    api: ApiCaller, open_client: Opener, node: Node
) -> None:
    a1, a2, b = [await connected(open_client) for _ in range(3)]
    for c, user in ((a1, "alice"), (a2, "alice"), (b, "bob")):
        name_user(node, c, user)
    await api.result("disconnect", {"user": "alice", "whitelist": [a2.client_id]})
    assert (await a1.closed())[0] == 3503
    for c in (a2, b):
        await c.result("subscribe", {"channel": "still-here"})


# refresh ---------------------------------------------------------------------


@pytest.mark.gen_test
async def test_refresh_with_expired_closes_with_3005(api: ApiCaller, open_client: Opener) -> None:
    c = await connected(open_client)
    await api.result("refresh", {"user": "", "client": c.client_id, "expired": True})
    assert (await c.closed())[0] == 3005


@pytest.mark.gen_test
async def test_refresh_with_a_past_expire_at_closes_with_3005(
    api: ApiCaller, open_client: Opener
) -> None:
    c = await connected(open_client)
    await api.result("refresh", {"user": "", "client": c.client_id, "expire_at": 1})
    assert (await c.closed())[0] == 3005


@pytest.mark.gen_test(timeout=10 * TIMEOUT_SCALE)
@pytest.mark.settings(auth={"expired_close_delay": 0.0})  # no grace after expire_at
async def test_refresh_with_expire_at_closes_the_connection_then(
    api: ApiCaller, open_client: Opener
) -> None:
    c = await connected(open_client)
    expire_at = int(time.time()) + 2
    await api.result("refresh", {"user": "", "client": c.client_id, "expire_at": expire_at})
    await c.result("subscribe", {"channel": "alive-before-expiry"})
    assert (await c.closed())[0] == 3005
    assert time.time() >= expire_at - 0.05


@pytest.mark.gen_test(timeout=10 * TIMEOUT_SCALE)
async def test_refresh_without_expire_at_lifts_an_expiry(
    api: ApiCaller, open_client: Opener
) -> None:
    c = await connected(open_client)
    expire_at = int(time.time()) + 1
    await api.result("refresh", {"user": "", "client": c.client_id, "expire_at": expire_at})
    await api.result("refresh", {"user": "", "client": c.client_id})
    await asyncio.sleep(max(0.0, expire_at - time.time()) + 0.3)
    await c.result("subscribe", {"channel": "still-connected"})


# presence and history ----------------------------------------------------------


@pytest.mark.settings(channels=WITH_PRESENCE)
@pytest.mark.gen_test
async def test_presence_and_presence_stats_list_the_channels_clients(
    api: ApiCaller, open_client: Opener
) -> None:
    a, b = await subscribed(open_client, "news"), await subscribed(open_client, "news")
    presence = (await api.result("presence", {"channel": "news"}))["presence"]
    assert presence == {
        a.client_id: {"user": "", "client": a.client_id},
        b.client_id: {"user": "", "client": b.client_id},
    }
    stats = await api.result("presence_stats", {"channel": "news"})
    assert stats == {"num_clients": 2, "num_users": 1}


@pytest.mark.settings(namespaces=QUIET)
@pytest.mark.parametrize("method", ["presence", "presence_stats"])
@pytest.mark.gen_test
async def test_presence_of_a_channel_without_presence_answers_108(
    api: ApiCaller, method: str
) -> None:
    error = await api.error(method, {"channel": "quiet:a"})
    assert error == {"code": 108, "message": "channel keeps no presence"}


@pytest.mark.gen_test
async def test_history_answers_publications_offset_and_epoch(api: ApiCaller) -> None:
    for i in range(1, 5):
        position = await api.result("publish", {"channel": "news", "data": i})
    result = await api.result("history", {"channel": "news", "limit": 2})
    assert result == {
        "publications": [{"data": 1, "offset": 1}, {"data": 2, "offset": 2}],
        "offset": 4,
        "epoch": position["epoch"],
    }
    newest = await api.result("history", {"channel": "news", "limit": 2, "reverse": True})
    assert [p["offset"] for p in newest["publications"]] == [4, 3]
    since = {"offset": 2, "epoch": position["epoch"]}
    after = await api.result("history", {"channel": "news", "limit": -1, "since": since})
    assert [p["offset"] for p in after["publications"]] == [3, 4]


@pytest.mark.gen_test
async def test_history_without_limit_answers_only_the_position(api: ApiCaller) -> None:
    await api.result("publish", {"channel": "news", "data": 1})
    result = await api.result("history", {"channel": "news"})
    assert result["publications"] == [] and result["offset"] == 1


@pytest.mark.gen_test
async def test_history_since_another_epoch_answers_112(api: ApiCaller) -> None:
    await api.result("publish", {"channel": "news", "data": 1})
    since = {"offset": 0, "epoch": "not-it"}
    error = await api.error("history", {"channel": "news", "limit": -1, "since": since})
    assert error["code"] == 112


@pytest.mark.settings(namespaces=QUIET)
@pytest.mark.gen_test
async def test_history_of_a_channel_without_history_answers_108(api: ApiCaller) -> None:
    assert (await api.error("history", {"channel": "quiet:a"}))["code"] == 108


@pytest.mark.gen_test
async def test_history_remove_drops_publications_but_keeps_the_position(api: ApiCaller) -> None:
    await api.result("publish", {"channel": "news", "data": 1})
    last = await api.result("publish", {"channel": "news", "data": 2})
    assert await api.result("history_remove", {"channel": "news"}) == {}
    result = await api.result("history", {"channel": "news", "limit": -1})
    assert result["publications"] == []
    assert (result["offset"], result["epoch"]) == (last["offset"], last["epoch"])


# channels and info -------------------------------------------------------------


@pytest.mark.gen_test
async def test_channels_lists_channels_with_subscribers_and_their_count(
    api: ApiCaller, open_client: Opener
) -> None:
    a = await subscribed(open_client, "chat:one")
    await a.result("subscribe", {"channel": "news"})
    await subscribed(open_client, "chat:one")
    result = await api.result("channels", {})
    assert result == {"channels": {"chat:one": {"num_clients": 2}, "news": {"num_clients": 1}}}
    filtered = await api.result("channels", {"pattern": "chat:*"})
    assert filtered == {"channels": {"chat:one": {"num_clients": 2}}}


@pytest.mark.gen_test
async def test_channels_with_a_malformed_pattern_answers_107(api: ApiCaller) -> None:
    assert await api.error("channels", {"pattern": "{a"}) == {
        "code": 107,
        "message": "pattern: unclosed {",
    }


@pytest.mark.gen_test
async def test_info_describes_this_node(api: ApiCaller, open_client: Opener, node: Node) -> None:
    await subscribed(open_client, "news")
    await connected(open_client)
    (info,) = (await api.result("info"))["nodes"]
    assert info["uid"] == node.cluster.uid
    assert info["name"] == node.name and info["version"] == node.version
    assert (info["num_clients"], info["num_users"], info["num_subs"], info["num_channels"]) == (
        2,
        1,
        1,
        1,
    )
    assert info["uptime"] >= 0


# batch -----------------------------------------------------------------------


@pytest.mark.parametrize("parallel", [False, True], ids=["sequential", "parallel"])
@pytest.mark.gen_test
async def test_batch_answers_every_command_in_order(api: ApiCaller, parallel: bool) -> None:
    commands = [
        {"publish": {"channel": "news", "data": 1}},
        {"publish": {"channel": "nope:x", "data": 1}},
        {"no_such_method": {}},
        {"batch": {"commands": []}},
        {"publish": {}, "history": {}},
        {"history": {"channel": "news", "limit": 1}},
    ]
    answer = await api.call("batch", {"commands": commands, "parallel": parallel})
    replies = answer["replies"]
    assert replies[0]["publish"]["offset"] == 1
    assert replies[1] == {"error": {"code": 102, "message": "unknown channel"}}
    assert replies[2]["error"]["code"] == 104
    assert replies[3]["error"] == {
        "code": 107,
        "message": "commands[3]: a batch cannot contain a batch",
    }
    assert replies[4]["error"]["message"] == "commands[4]: expected a map with one method"
    assert "history" in replies[5]


@pytest.mark.settings(api={"max_batch_commands": 2})
@pytest.mark.gen_test
async def test_batch_over_the_command_limit_answers_106(api: ApiCaller) -> None:
    answer = await api.call("batch", {"commands": [{"info": {}}] * 3})
    assert answer["error"]["code"] == 106
