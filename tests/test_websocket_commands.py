"""Every client command over a real socket, in both encodings (the `encoding` fixture)."""

from __future__ import annotations

import pytest
from wsfan.app import RPCContext, RPCResult
from wsfan.node import Node
from wsfan.protocol import Encoding

from tests.app_hooks import install

# config/default.toml has presence and join/leave off outside namespaces; the tests
# below use them (or a presence call) on channels such as "news", so they say so.
WITH_PRESENCE = {"presence": True, "join_leave": True}

LIVE = {"live": {"history_size": 0, "allow_publish": True, "allow_anonymous": True}}
CLOSED = {"closed": {"allow_anonymous": True}}


@pytest.mark.gen_test
async def test_connect_reply_names_client_version_and_ping(client, node: Node):
    c = await client(connect=False)
    result = await c.connect(name="test")
    assert result["client"] and result["version"] == node.version
    assert result["ping"] == 25 and result["pong"] is True


@pytest.mark.gen_test
async def test_subscribe_to_channel_with_history_is_recoverable_at_current_position(client):
    c = await client()
    result = await c.result("subscribe", {"channel": "news"})
    assert result["recoverable"] is True
    assert result["offset"] == 0 and result["epoch"]


@pytest.mark.gen_test
async def test_a_positioned_subscribe_to_a_channel_with_history_is_answered_positioned(client):
    c = await client()
    result = await c.result("subscribe", {"channel": "news", "positioned": True})
    assert result["positioned"] is True


@pytest.mark.settings(namespaces=LIVE)
@pytest.mark.gen_test
async def test_subscribe_to_channel_without_history_is_not_recoverable(client):
    c = await client()
    assert await c.result("subscribe", {"channel": "live:1"}) == {}


@pytest.mark.gen_test
async def test_publish_reaches_every_subscriber_with_offset_and_publisher_info(client):
    a, b = await client(), await client()
    await a.result("subscribe", {"channel": "news"})
    await b.result("subscribe", {"channel": "news"})
    assert await b.result("publish", {"channel": "news", "data": {"text": "hi"}}) == {}
    for c in (a, b):
        pub = (await c.push("pub", "news"))["pub"]
        assert pub["data"] == {"text": "hi"} and pub["offset"] == 1
        assert pub["info"]["client"] == b.client_id and pub["info"]["user"] == ""


@pytest.mark.settings(namespaces=LIVE)
@pytest.mark.gen_test
async def test_publication_in_channel_without_history_has_no_offset(client):
    c = await client()
    await c.result("subscribe", {"channel": "live:1"})
    await c.result("publish", {"channel": "live:1", "data": 1})
    pub = (await c.push("pub", "live:1"))["pub"]
    assert pub["data"] == 1 and "offset" not in pub


@pytest.mark.gen_test
async def test_unsubscribe_stops_delivery(client, node: Node):
    c = await client()
    await c.result("subscribe", {"channel": "news"})
    assert await c.result("unsubscribe", {"channel": "news"}) == {}
    await node.publish("news", "missed")
    await c.result("subscribe", {"channel": "other"})
    await node.publish("other", "seen")
    assert (await c.push("pub"))["channel"] == "other"


@pytest.mark.gen_test
async def test_unsubscribe_from_channel_not_subscribed_succeeds(client):
    c = await client()
    assert await c.result("unsubscribe", {"channel": "news"}) == {}


@pytest.mark.gen_test
async def test_history_returns_publications_position_and_honours_limit(client, node: Node):
    c = await client()
    for i in range(5):
        await node.publish("news", i)
    result = await c.result("history", {"channel": "news", "limit": 3})
    assert [p["data"] for p in result["publications"]] == [0, 1, 2]
    assert [p["offset"] for p in result["publications"]] == [1, 2, 3]
    assert result["offset"] == 5 and result["epoch"]


@pytest.mark.gen_test
async def test_history_reverse_returns_newest_first(client, node: Node):
    c = await client()
    for i in range(5):
        await node.publish("news", i)
    result = await c.result("history", {"channel": "news", "limit": 2, "reverse": True})
    assert [p["offset"] for p in result["publications"]] == [5, 4]


@pytest.mark.gen_test
async def test_history_since_returns_only_later_publications(client, node: Node):
    c = await client()
    for i in range(5):
        await node.publish("news", i)
    epoch = (await c.result("history", {"channel": "news"}))["epoch"]
    since = {"offset": 3, "epoch": epoch}
    result = await c.result("history", {"channel": "news", "limit": -1, "since": since})
    assert [p["offset"] for p in result["publications"]] == [4, 5]


@pytest.mark.gen_test
async def test_history_with_limit_zero_returns_only_position(client, node: Node):
    c = await client()
    await node.publish("news", 1)
    result = await c.result("history", {"channel": "news", "limit": 0})
    assert result["publications"] == [] and result["offset"] == 1


@pytest.mark.settings(channels=WITH_PRESENCE)
@pytest.mark.gen_test
async def test_presence_lists_subscribed_clients(client):
    a, b = await client(), await client()
    await a.result("subscribe", {"channel": "news"})
    await b.result("subscribe", {"channel": "news"})
    presence = (await a.result("presence", {"channel": "news"}))["presence"]
    assert set(presence) == {a.client_id, b.client_id}
    assert presence[a.client_id] == {"client": a.client_id, "user": ""}


@pytest.mark.settings(channels=WITH_PRESENCE)
@pytest.mark.gen_test
async def test_presence_stats_counts_clients_and_users(client):
    a, b = await client(), await client()
    await a.result("subscribe", {"channel": "news"})
    await b.result("subscribe", {"channel": "news"})
    stats = await a.result("presence_stats", {"channel": "news"})
    assert stats == {"num_clients": 2, "num_users": 1}


@pytest.mark.settings(channels=WITH_PRESENCE)
@pytest.mark.gen_test
async def test_presence_forgets_client_that_unsubscribed(client):
    a, b = await client(), await client()
    await a.result("subscribe", {"channel": "news"})
    await b.result("subscribe", {"channel": "news"})
    await b.result("unsubscribe", {"channel": "news"})
    assert set((await a.result("presence", {"channel": "news"}))["presence"]) == {a.client_id}


@pytest.mark.settings(channels=WITH_PRESENCE)
@pytest.mark.gen_test
async def test_join_and_leave_are_pushed_to_subscribers(client):
    a, b = await client(), await client()
    await a.result("subscribe", {"channel": "news"})
    await b.result("subscribe", {"channel": "news"})
    join = await a.push("join", "news")
    while join["join"]["info"]["client"] != b.client_id:
        join = await a.push("join", "news")
    b.close()
    leave = await a.push("leave", "news")
    assert leave["leave"]["info"]["client"] == b.client_id


@pytest.mark.settings(auth={"hmac_secret": ""})
@pytest.mark.gen_test
async def test_refresh_is_not_available_without_a_token_key(client):
    c = await client()
    reply = await c.call("refresh", {"token": "t"})
    assert reply["error"]["code"] == 108


@pytest.mark.settings(auth={"hmac_secret": ""})
@pytest.mark.gen_test
async def test_sub_refresh_is_not_available_without_a_token_key(client):
    c = await client()
    await c.result("subscribe", {"channel": "news"})
    reply = await c.call("sub_refresh", {"channel": "news", "token": "t"})
    assert reply["error"]["code"] == 108


@pytest.mark.gen_test
async def test_rpc_without_handler_is_not_available(client):
    c = await client()
    assert (await c.call("rpc", {"method": "sum", "data": [1, 2]}))["error"]["code"] == 108


@pytest.mark.gen_test
async def test_rpc_is_answered_by_the_rpc_hook(client, node: Node):
    class App:
        async def rpc(self, ctx: RPCContext) -> RPCResult:
            return RPCResult({"sum": sum(ctx.data), "client": ctx.client.client_id})

    install(node, App())
    c = await client()
    result = await c.result("rpc", {"method": "sum", "data": [1, 2]})
    assert result == {"data": {"sum": 3, "client": c.client_id}}


@pytest.mark.gen_test
async def test_send_with_id_and_without_handler_is_not_available(client):
    c = await client()
    assert (await c.call("send", {"data": "x"}))["error"]["code"] == 108


@pytest.mark.settings(channels=WITH_PRESENCE)
@pytest.mark.gen_test
async def test_send_reaches_configured_handler(client, node: Node):
    received = []

    async def handler(session, data):
        received.append((session.client_id, data))

    node.send_handler = handler
    c = await client()
    await c.send({"send": {"data": "no reply expected"}})
    await c.result("presence_stats", {"channel": "news"})  # a later command: send was handled
    assert received == [(c.client_id, "no reply expected")]


async def reply_ids(c, count: int) -> list[int]:
    ids: list[int] = []
    while len(ids) < count:
        message = await c.recv()
        if "id" in message:
            ids.append(message["id"])
    return ids


@pytest.mark.gen_test
async def test_commands_in_one_frame_are_answered_in_order(client):
    c = await client()
    await c.send(
        {"id": 10, "subscribe": {"channel": "a"}},
        {"id": 11, "subscribe": {"channel": "b"}},
        {"id": 12, "presence_stats": {"channel": "a"}},
    )
    assert await reply_ids(c, 3) == [10, 11, 12]


@pytest.mark.gen_test
async def test_replies_ready_in_the_same_turn_share_one_frame(client):
    c = await client()
    frames_before = c.frames
    await c.send(
        {"id": 20, "teleport": {}},
        {"id": 21, "unsubscribe": {"channel": "not-subscribed"}},
        {"id": 22, "subscribe": {"channel": 5}},
    )
    assert await reply_ids(c, 3) == [20, 21, 22]
    assert c.frames - frames_before == 1


# Delivery timing through Redis depends on how its replies are split into reads, so
# the frame count is asserted where it is deterministic: the in-process broker.
@pytest.mark.brokers("memory")
@pytest.mark.gen_test
async def test_publications_queued_together_arrive_batched_in_one_frame(client, node: Node):
    c = await client()
    await c.result("subscribe", {"channel": "news"})
    frames_before = c.frames
    for i in range(10):
        await node.publish("news", i)
    assert [p["data"] for p in await c.publications("news", 10)] == list(range(10))
    assert c.frames - frames_before == 1


@pytest.mark.gen_test
async def test_binary_data_stays_binary_for_msgpack_and_is_base64_for_json(open_client, node: Node):
    mp = await open_client(Encoding.MSGPACK)
    js = await open_client(Encoding.JSON)
    for c in (mp, js):
        await c.connect()
        await c.result("subscribe", {"channel": "news"})
    await mp.result("publish", {"channel": "news", "data": b"\x00\xffbin"})
    assert (await mp.push("pub", "news"))["pub"]["data"] == b"\x00\xffbin"
    assert (await js.push("pub", "news"))["pub"]["data"] == "AP9iaW4="


@pytest.mark.gen_test
async def test_json_and_msgpack_subscribers_receive_the_same_publication(open_client, node: Node):
    clients = [await open_client(e) for e in (Encoding.JSON, Encoding.MSGPACK)]
    for c in clients:
        await c.connect()
        await c.result("subscribe", {"channel": "news"})
    await node.publish("news", {"n": 1, "s": "é"})
    for c in clients:
        assert (await c.push("pub", "news"))["pub"] == {"data": {"n": 1, "s": "é"}, "offset": 1}


HUGE = 2**70  # past 64 bits: JSON carries it, Redis and msgpack do not


@pytest.mark.parametrize(
    "command",
    [
        {"history": {"channel": "news", "limit": HUGE}},
        {"history": {"channel": "news", "limit": 5, "since": {"offset": HUGE, "epoch": ""}}},
        {"history": {"channel": "news", "limit": 5, "since": {"offset": 2**63, "epoch": ""}}},
        {"history": {"channel": "news", "limit": 5, "reverse": True, "since": {"offset": HUGE}}},
        {"subscribe": {"channel": "news", "recover": True, "offset": HUGE, "epoch": ""}},
        {"subscribe": {"channel": "news", "recover": True, "offset": 2**63, "flag": HUGE}},
        {"publish": {"channel": "news", "data": {"n": HUGE, "s": "\ud800"}}},
        {"publish": {"channel": "{" * 200, "data": 1}},
        {"presence": {"channel": "news:" + "x" * 300}},
        {"rpc": {"method": {"not": "a string"}}},
        {"sub_refresh": {"channel": "news", "token": "x" * 5000}},
        {"refresh": {"token": 5}},
    ],
    ids=lambda c: next(iter(c)),
)
@pytest.mark.gen_test
async def test_client_caused_problems_never_answer_temporary(
    open_client, node: Node, command, caplog
):
    """Bad input gets its own code (or a result), never 100 and never a traceback.

    JSON only: msgpack cannot carry the 70-bit integers."""
    c = await open_client(Encoding.JSON)
    await c.connect()
    await node.publish("news", "one")
    epoch = (await node.reads.position("news")).epoch
    for params in command.values():
        for key in ("since", None):
            target = params.get(key) if key else params
            if isinstance(target, dict) and target.get("epoch") == "":
                target["epoch"] = epoch
    answer = await c.call(*next(iter(command.items())))
    assert answer.get("error", {}).get("code") != 100, answer
    bad = [r for r in caplog.records if r.levelno >= 40 or r.exc_info]
    assert not bad, [r.getMessage() for r in bad]
