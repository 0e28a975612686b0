"""The node: shutdown, and the broker subscription shared by a channel's local subscribers
(and observers)."""

from __future__ import annotations

import asyncio

import pytest
from wsfan.node import Node

from tests.conftest import TIMEOUT_SCALE

# config/default.toml has presence and join/leave off outside namespaces; the tests
# below use them (or a presence call) on channels such as "news", so they say so.
WITH_PRESENCE = {"presence": True, "join_leave": True}


@pytest.mark.gen_test
async def test_closing_the_node_tells_every_client_to_reconnect_with_3001(client, node: Node):
    a, b = await client(), await client()
    await node.close()
    for c in (a, b):
        assert (await c.push("disconnect"))["disconnect"]["code"] == 3001
        assert (await c.closed())[0] == 3001


@pytest.mark.gen_test
async def test_broker_is_subscribed_while_any_local_subscriber_remains(client, node: Node):
    a, b = await client(), await client()
    await a.result("subscribe", {"channel": "news"})
    await b.result("subscribe", {"channel": "news"})
    await a.result("unsubscribe", {"channel": "news"})
    await node.publish("news", "still delivered")
    assert (await b.push("pub", "news"))["pub"]["data"] == "still delivered"
    await b.result("unsubscribe", {"channel": "news"})
    assert not node.hub.has_subscribers("news")


@pytest.mark.settings(channels=WITH_PRESENCE)
@pytest.mark.gen_test
async def test_disconnected_client_leaves_its_channels_and_presence(client, node: Node):
    a, b = await client(), await client()
    await a.result("subscribe", {"channel": "news"})
    await b.result("subscribe", {"channel": "news"})
    b.close()
    await a.push("leave", "news")
    assert set(await node.presence.presence("news")) == {a.client_id}
    assert node.hub.num_clients == 1


@pytest.mark.gen_test
async def test_an_observer_sees_publications_while_no_client_subscribes(client, node: Node):
    seen: list[object] = []
    await node.observe("news", lambda pub: seen.append(pub.data))
    a = await client()
    await a.result("subscribe", {"channel": "news"})
    await a.result("unsubscribe", {"channel": "news"})  # the last subscriber leaves
    await node.publish("news", 1)
    deadline = asyncio.get_running_loop().time() + 5 * TIMEOUT_SCALE
    while seen != [1]:
        assert asyncio.get_running_loop().time() < deadline, seen
        await asyncio.sleep(0.01)
    await node.unobserve("news")
    assert not node.observes("news") and not node.hub.has_subscribers("news")


@pytest.mark.settings(redis={"max_connections": 2})
@pytest.mark.gen_test(timeout=30)
async def test_a_subscribe_burst_larger_than_the_redis_pool_all_succeeds(client):
    clients = [await client() for _ in range(60)]
    replies = await asyncio.gather(
        *(c.call("subscribe", {"channel": "storm", "recoverable": True}) for c in clients)
    )
    assert [r.get("error") for r in replies] == [None] * 60
    assert len({(r["subscribe"]["epoch"], r["subscribe"]["offset"]) for r in replies}) == 1
