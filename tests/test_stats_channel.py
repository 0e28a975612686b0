"""Node stats: each node publishes its numbers into sys:stats, and times the round trip."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest
from tornado.ioloop import IOLoop
from wsfan.compose import build_node
from wsfan.config import load_settings
from wsfan.node import Node
from wsfan.protocol import Encoding
from wsfan.stats_channel import NodeStats

from tests.api_client import ApiCaller
from tests.conftest import TIMEOUT_SCALE

# config/default.toml has presence and join/leave off outside namespaces; the tests
# below use them (or a presence call) on channels such as "news", so they say so.
WITH_PRESENCE = {"presence": True, "join_leave": True}

STATS_KEYS = {
    "id",
    "node",
    "version",
    "ts",
    "interval",
    "uptime",
    "connections",
    "users",
    "subscriptions",
    "channels",
    "messages_in_per_sec",
    "messages_out_per_sec",
    "fanout_latency_ms",
    "seq",
}


@pytest.fixture
def stats(node: Node, io_loop: IOLoop) -> Iterator[NodeStats]:
    stats = NodeStats(node)
    yield stats
    io_loop.run_sync(stats.close)


async def wait_for(check, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout * TIMEOUT_SCALE
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@pytest.mark.gen_test
@pytest.mark.settings(stats={"interval": 0.05})
async def test_stats_reach_a_client_subscribed_to_the_stats_channel(client, node, stats):
    viewer = await client()
    await viewer.result("subscribe", {"channel": "sys:stats"})
    await stats.start()
    data = (await viewer.push("pub", "sys:stats"))["pub"]["data"]
    assert set(data) == STATS_KEYS
    assert data["node"] == node.name
    assert data["connections"] == 1
    assert data["interval"] == 0.05


@pytest.mark.gen_test
async def test_clients_may_subscribe_to_sys_stats_but_not_publish(client):
    c = await client()
    await c.result("subscribe", {"channel": "sys:stats"})
    answer = await c.call("publish", {"channel": "sys:stats", "data": {"node": "fake"}})
    assert answer["error"]["code"] == 103


@pytest.mark.settings(channels=WITH_PRESENCE)
@pytest.mark.gen_test
@pytest.mark.parametrize("encoding", [Encoding.JSON], ids=["json"])
async def test_each_message_of_a_frame_is_counted_in_and_each_message_sent_out(client, node):
    c = await client()
    before_in, before_out = node.metrics.messages_in, node.metrics.messages_out
    await c.send(
        {"id": 10, "subscribe": {"channel": "news"}},
        {"id": 11, "publish": {"channel": "news", "data": 1}},
    )
    await c.reply(11)
    await c.push("pub", "news")
    assert node.metrics.messages_in - before_in == 2
    assert node.metrics.messages_out - before_out == 4  # two replies, its own join, the publication


@pytest.mark.gen_test
async def test_sample_reports_message_rates_since_the_previous_sample(client, node, stats):
    c = await client()
    stats.sample()
    for i in range(5):
        await c.result("publish", {"channel": "news", "data": i})
    data = stats.sample()
    assert data["messages_in_per_sec"] > 0
    assert data["messages_out_per_sec"] > 0
    assert stats.sample()["seq"] == data["seq"] + 1


@pytest.mark.gen_test
@pytest.mark.settings(stats={"interval": 0.05})
async def test_fanout_latency_is_timed_from_publish_to_the_nodes_own_hub(node, stats):
    await stats.start()
    await wait_for(lambda: stats.latency is not None)
    assert 0 < stats.latency < 5 * TIMEOUT_SCALE
    assert stats.sample()["fanout_latency_ms"] == round(stats.latency * 1e3, 3)


@pytest.mark.gen_test
@pytest.mark.settings(stats={"interval": 0.05})
async def test_the_nodes_own_stats_subscription_is_not_counted_as_a_client_one(node, stats):
    await stats.start()
    await wait_for(lambda: node.observes("sys:stats"))
    data = stats.sample()
    assert (data["connections"], data["subscriptions"], data["channels"]) == (0, 0, 0)


@pytest.mark.gen_test
@pytest.mark.settings(stats={"interval": 0.05})
async def test_the_api_counts_no_internal_subscription_in_info_or_channels(
    http_server, http_client, http_port, client, node, stats
):
    api = ApiCaller(http_client, f"http://127.0.0.1:{http_port}/api")
    await stats.start()
    await wait_for(lambda: node.observes("sys:stats"))
    (info,) = (await api.result("info", {}))["nodes"]
    assert (info["num_clients"], info["num_subs"], info["num_channels"]) == (0, 0, 0)
    assert (await api.result("channels", {})).get("channels", {}) == {}
    # A client's subscription to the same channel is counted, once.
    viewer = await client()
    await viewer.result("subscribe", {"channel": "sys:stats"})
    (info,) = (await api.result("info", {}))["nodes"]
    assert (info["num_clients"], info["num_subs"], info["num_channels"]) == (1, 1, 1)
    channels = (await api.result("channels", {}))["channels"]
    assert channels == {"sys:stats": {"num_clients": 1}}


@pytest.mark.gen_test
@pytest.mark.settings(stats={"interval": 0.05})
async def test_closing_stats_stops_the_node_observing_its_stats_channel(node, stats):
    await stats.start()
    await wait_for(lambda: node.observes("sys:stats"))
    await stats.close()
    assert not node.observes("sys:stats")


@pytest.mark.gen_test
@pytest.mark.settings(stats={"interval": 0})
async def test_interval_zero_publishes_nothing(node, stats):
    await stats.start()
    assert not stats.enabled
    await asyncio.sleep(0.05)
    assert not node.observes("sys:stats")


@pytest.mark.gen_test
@pytest.mark.settings(stats={"channel": "nowhere:stats"})
async def test_a_stats_channel_in_an_undeclared_namespace_publishes_nothing(node, stats):
    await stats.start()
    assert not stats.enabled
    await asyncio.sleep(0.05)
    assert not node.observes("nowhere:stats")


@pytest.mark.gen_test(timeout=40 * TIMEOUT_SCALE)
async def test_a_broker_outage_is_logged_once_and_stats_resume_after_it(embedded_redis, caplog):
    caplog.set_level(logging.INFO, logger="wsfan.stats_channel")
    settings = load_settings(env={}).with_overrides(
        broker={"type": "redis"},
        redis={
            "url": embedded_redis.url,
            "prefix": "stats-outage",
            "connect_timeout": 0.5,
            "command_timeout": 1.0,
            "reconnect_delay_max": 0.3,
        },
        stats={"interval": 0.05},
    )
    node = build_node(settings)
    await node.start()
    stats = NodeStats(node)
    await stats.start()
    try:
        await wait_for(lambda: stats.latency is not None)
        await asyncio.to_thread(embedded_redis.stop)
        await wait_for(lambda: "stats publish to" in caplog.text)
        await asyncio.sleep(0.5)  # ten more ticks fail, quietly
        assert caplog.text.count("stats publish to") == 1
        await asyncio.to_thread(embedded_redis.start)
        await wait_for(lambda: "works again" in caplog.text, timeout=20)
        await wait_for(lambda: stats.latency is not None, timeout=10)
    finally:
        await stats.close()
        await node.close()
