"""Presence refresh at scale: a node's entries go to Redis in one pipeline per
interval (`PresenceManager.add_presence_many`), not one round trip per
subscription. Round trips are counted on a Valkey of the test's own by its
`total_reads_processed` (socket reads) and `cmdstat_*` counters."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from redis.asyncio import Redis
from tornado.ioloop import IOLoop
from wsfan.broker.memory import MemoryPresence
from wsfan.broker.redis import RedisPresence
from wsfan.broker.redis_connection import redis_client
from wsfan.embedded import EmbeddedServer
from wsfan.node import Node
from wsfan.protocol import ClientInfo, Encoding

from tests.conftest import TIMEOUT_SCALE

WITH_PRESENCE = {"presence": True}  # off by default outside namespaces
PRESENCE = {"presence_ttl": 0.5, "presence_update_interval": 0.1}


@pytest.fixture
def broker_type() -> str:
    return "redis"


@pytest.fixture
def redis_url(embedded_redis: EmbeddedServer) -> str:
    """This module's nodes use a Valkey of the test's own: its counters are theirs."""
    return embedded_redis.url


@pytest.fixture
def redis(redis_url: str, io_loop: IOLoop) -> Iterator[Redis]:
    client = redis_client(redis_url)
    yield client
    io_loop.run_sync(client.aclose)


async def counters(redis: Redis) -> tuple[int, int]:
    """(socket reads so far, HSET calls so far); the INFO calls count one read each."""
    stats = await redis.info("stats")
    commands: dict[str, Any] = await redis.info("commandstats")
    hset = commands.get("cmdstat_hset", {}).get("calls", 0)
    return int(stats["total_reads_processed"]), int(hset)


def entries(count: int) -> list[tuple[str, str, ClientInfo]]:
    return [(f"room{i % 10}", f"c{i}", ClientInfo(f"u{i}", f"c{i}")) for i in range(count)]


@pytest.mark.gen_test(timeout=10 * TIMEOUT_SCALE)
async def test_many_entries_are_refreshed_in_one_round_trip(redis: Redis, redis_prefix: str):
    presence = RedisPresence(redis, redis_prefix, ttl=30.0)
    reads, hsets = await counters(redis)
    await presence.add_presence_many(entries(200))
    reads_after, hsets_after = await counters(redis)
    assert hsets_after - hsets == 200
    assert reads_after - reads - 1 <= 10  # a few socket reads for the pipeline, not 200
    assert len(await presence.presence("room3")) == 20


@pytest.mark.gen_test(timeout=10 * TIMEOUT_SCALE)
async def test_entries_refreshed_together_expire_like_added_ones(redis: Redis, redis_prefix: str):
    presence = RedisPresence(redis, redis_prefix, ttl=0.2)
    await presence.add_presence_many(entries(10))
    assert len(await presence.presence("room1")) == 1
    deadline = asyncio.get_running_loop().time() + 3 * TIMEOUT_SCALE
    while await presence.presence("room1"):
        assert asyncio.get_running_loop().time() < deadline, "entries did not expire"
        await asyncio.sleep(0.05)


@pytest.mark.gen_test
async def test_the_default_batch_adds_every_entry_one_by_one():
    presence = MemoryPresence()
    await presence.add_presence_many(entries(20))
    assert set(await presence.presence("room0")) == {"c0", "c10"}


async def subscribed_clients(client, clients: int, channels: int) -> list[Any]:
    opened = []
    for _ in range(clients):
        c = await client()
        for i in range(channels):
            await c.result("subscribe", {"channel": f"room{i}"})
        opened.append(c)
    return opened


@pytest.mark.settings(
    stats={"interval": 0}, api={"node_info_interval": 60.0}, channels=WITH_PRESENCE
)
@pytest.mark.parametrize("encoding", [Encoding.JSON])
@pytest.mark.gen_test(timeout=20 * TIMEOUT_SCALE)
async def test_a_node_refreshes_all_its_subscriptions_in_one_round_trip(
    client, node: Node, redis: Redis
):
    await subscribed_clients(client, clients=4, channels=10)
    reads, hsets = await counters(redis)
    await node.refresh_presence()
    reads_after, hsets_after = await counters(redis)
    assert hsets_after - hsets == 40
    assert reads_after - reads - 1 <= 5  # 40 subscriptions, one pipeline (and little else)


@pytest.mark.settings(redis=PRESENCE, channels=WITH_PRESENCE)
@pytest.mark.parametrize("encoding", [Encoding.JSON])
@pytest.mark.gen_test(timeout=10 * TIMEOUT_SCALE)
async def test_the_refresh_loop_keeps_entries_alive_past_their_ttl(client, node: Node):
    [watcher] = await subscribed_clients(client, clients=1, channels=1)
    await asyncio.sleep(4 * PRESENCE["presence_ttl"])  # several TTLs, refreshed meanwhile
    presence = await watcher.result("presence", {"channel": "room0"})
    assert set(presence["presence"]) == {watcher.client_id}


@pytest.mark.settings(redis={"presence_update_interval": 60.0}, channels=WITH_PRESENCE)
@pytest.mark.parametrize("encoding", [Encoding.JSON])
@pytest.mark.gen_test(timeout=10 * TIMEOUT_SCALE)
async def test_a_subscriber_leaving_during_a_refresh_does_not_stay_in_presence(client, node: Node):
    leaver, watcher = await subscribed_clients(client, clients=2, channels=1)
    refresh = asyncio.ensure_future(node.refresh_presence())
    await asyncio.sleep(0)  # the refresh has taken its entries and is on its way
    session = node.hub.session(leaver.client_id)
    assert session is not None
    await session.server_unsubscribe("room0")
    await refresh
    presence = await watcher.result("presence", {"channel": "room0"})
    assert set(presence["presence"]) == {watcher.client_id}
