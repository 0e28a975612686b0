"""What only the Redis Cluster broker promises (server/broker/redis_cluster.py), on
real Valkey clusters (tests/valkey_cluster.py): sharded subscriptions per primary,
every shard delivering, control traffic, start-up checks, and a shard that is down.
Slot migration and failover under load: tests/test_broker_cluster_faults.py."""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.crc import key_slot
from tornado.ioloop import IOLoop
from wsfan.broker.base import HistoryOptions
from wsfan.broker.redis_cluster import RedisClusterBroker, SlotNotServed, cluster_client
from wsfan.broker.redis_cluster_check import ClusterConfigError
from wsfan.broker.redis_keys import pubsub_channel
from wsfan.broker.redis_pubsub import RedisUnavailable

from tests.broker_fixtures import RecordingHandler
from tests.conftest import TIMEOUT_SCALE
from tests.processes import clean_env, run_to_exit, running
from tests.valkey_cluster import (  # noqa: F401 - fixtures
    SLOTS,
    ValkeyCluster,
    cluster_url,
    valkey_cluster,
)

KEEP = HistoryOptions(size=100, ttl=60.0, meta_ttl=3600.0)
FAST = 1.0 * TIMEOUT_SCALE  # "at once": well under the command timeout below
TIMEOUT = 3.0  # the brokers' command timeout here


def new_broker(url: str, prefix: str) -> RedisClusterBroker:
    return RedisClusterBroker(
        cluster_client(url, command_timeout=TIMEOUT),
        prefix,
        timeout=TIMEOUT,
        reconnect_max=0.5,
        url=url,
    )


@pytest.fixture
def handler() -> RecordingHandler:
    return RecordingHandler()


@pytest.fixture
def broker(
    cluster_url: str,  # noqa: F811 - the fixture
    redis_prefix: str,
    handler: RecordingHandler,
    io_loop: IOLoop,
) -> Iterator[RedisClusterBroker]:
    """A started broker on the session's cluster, delivering to `handler`."""
    instance = new_broker(cluster_url, redis_prefix)
    io_loop.run_sync(lambda: instance.start(handler))
    yield instance
    io_loop.run_sync(instance.close)


@pytest.fixture
def own_broker(
    valkey_cluster: ValkeyCluster,  # noqa: F811 - the fixture
    handler: RecordingHandler,
    io_loop: IOLoop,
) -> Iterator[RedisClusterBroker]:
    """A started broker on this test's own cluster."""
    instance = new_broker(valkey_cluster.url, "own")
    io_loop.run_sync(lambda: instance.start(handler))
    yield instance
    io_loop.run_sync(instance.close)


def channels_by_shard(broker: RedisClusterBroker, per_shard: int = 1) -> dict[str, list[str]]:
    """Channel names whose slot each primary ("host:port") owns, `per_shard` each."""
    manager = broker.cluster.nodes_manager
    found: dict[str, list[str]] = {n.name: [] for n in broker.cluster.get_primaries()}
    index = 0
    while any(len(names) < per_shard for names in found.values()):
        name = f"ch{index}"
        index += 1
        owner = manager.get_node_from_slot(key_slot(pubsub_channel(broker.prefix, name))).name
        if len(found[owner]) < per_shard:
            found[owner].append(name)
    return found


async def within(seconds: float, awaitable: object) -> float:
    """How long `awaitable` took; fails past `seconds`."""
    started = time.monotonic()
    async with asyncio.timeout(seconds):
        await awaitable  # type: ignore[misc]
    return time.monotonic() - started


# Subscriptions ---------------------------------------------------------------------


@pytest.mark.gen_test
async def test_subscribes_made_together_go_out_as_one_write_per_shard(
    broker: RedisClusterBroker,
):
    by_shard = channels_by_shard(broker, per_shard=10)
    connections = broker.subscriber.connections
    before = {name: c.writes for name, c in connections.items()}
    await asyncio.gather(*(broker.subscribe([c]) for names in by_shard.values() for c in names))
    assert set(connections) == set(by_shard)  # one connection per primary
    assert {name: c.writes - before.get(name, 0) for name, c in connections.items()} == {
        name: 1 for name in by_shard
    }


@pytest.mark.gen_test
async def test_a_channel_on_each_shard_is_delivered(
    broker: RedisClusterBroker, handler: RecordingHandler
):
    channels = [names[0] for names in channels_by_shard(broker).values()]
    assert len(channels) == 3
    await broker.subscribe(channels)
    for channel in channels:
        await broker.publish(channel, {"on": channel}, KEEP)
    await handler.wait_for(lambda: len(handler.publications) == 3)
    assert sorted(c for c, _ in handler.publications) == sorted(channels)
    assert all(p.data == {"on": c} and p.offset == 1 for c, p in handler.publications)


@pytest.mark.gen_test
async def test_unsubscribed_channels_are_no_longer_delivered(
    broker: RedisClusterBroker, handler: RecordingHandler
):
    gone, kept = channels_by_shard(broker, per_shard=2)[broker.cluster.get_primaries()[0].name]
    await broker.subscribe([gone, kept])
    await broker.unsubscribe([gone])
    await broker.publish(gone, "not delivered", KEEP)
    await broker.publish(kept, "marker", KEEP)  # same shard, same connection, later
    await handler.wait_for(lambda: handler.data(kept) == ["marker"])
    assert handler.data(gone) == []


@pytest.mark.gen_test
async def test_control_messages_reach_both_brokers_on_the_cluster(
    broker: RedisClusterBroker,
    handler: RecordingHandler,
    cluster_url: str,  # noqa: F811 - the fixture
    redis_prefix: str,
):
    other_handler = RecordingHandler()
    other = new_broker(cluster_url, redis_prefix)
    await other.start(other_handler)
    try:
        await other.publish_control(b"from other")
        await broker.publish_control(b"from first")
        for h in (handler, other_handler):
            await h.wait_for(lambda h=h: h.controls == [b"from other", b"from first"])
    finally:
        await other.close()


@pytest.mark.gen_test
async def test_presence_leases_and_occupancy_answer_on_the_cluster(
    broker: RedisClusterBroker,
):
    from wsfan.broker.occupancy import OCCUPIED, Op, Timing
    from wsfan.broker.redis_presence import RedisPresence
    from wsfan.protocol import ClientInfo

    presence = RedisPresence(broker.client, broker.prefix)
    occupancy, leases = broker.channel_stores()
    for channel in [names[0] for names in channels_by_shard(broker).values()]:
        await presence.add_presence(channel, "c1", ClientInfo("u1", "c1"))
        assert list(await presence.presence(channel)) == ["c1"]
        assert await leases.acquire(channel, "source", "token", 5.0)
        timing = Timing(member_ttl=5.0, vacate_delay=1.0, claim_ttl=5.0)
        assert await occupancy.step(channel, "node", Op.JOIN, timing) == OCCUPIED


# Start-up --------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_a_url_that_is_not_a_cluster_is_a_start_up_error(redis_url: str):
    broker = new_broker(redis_url, "x")
    try:
        with pytest.raises(ClusterConfigError, match="not a Redis Cluster node"):
            await broker.start(RecordingHandler())
    finally:
        await broker.close()


def test_run_py_with_a_url_that_is_not_a_cluster_exits_2(redis_url: str):
    env = clean_env(
        WSFAN_EMBEDDED__ENABLED="false",
        WSFAN_BROKER__TYPE="redis",
        WSFAN_REDIS__CLUSTER="true",
        REDIS_URL=redis_url,
    )
    result = run_to_exit([], env)
    assert result.returncode == 2, result.stderr
    assert "configuration error" in result.stderr
    assert "not a Redis Cluster node" in result.stderr


@pytest.mark.gen_test
async def test_a_cluster_that_serves_no_slot_is_a_start_up_error(tmp_path: Path):
    with ValkeyCluster(tmp_path, primaries=1, replicas=0) as cluster:
        with cluster.nodes[0].client() as c:
            c.execute_command("CLUSTER", "DELSLOTSRANGE", 0, SLOTS - 1)
        broker = new_broker(cluster.url, "x")
        try:
            with pytest.raises(ClusterConfigError, match="serves no slot"):
                await broker.start(RecordingHandler())
        finally:
            await broker.close()


@pytest.mark.gen_test
async def test_partial_coverage_warns_and_serves_the_covered_slots(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    with ValkeyCluster(tmp_path, primaries=1, replicas=0) as cluster:
        with cluster.nodes[0].client() as c:
            c.execute_command("CLUSTER", "DELSLOTSRANGE", 0, SLOTS // 2 - 1)
        broker = new_broker(cluster.url, "x")
        handler = RecordingHandler()
        try:
            with caplog.at_level(logging.WARNING):
                await broker.start(handler)
            assert "serves 8192 of 16384 slots" in caplog.text
            served, unserved = _split_by_slot(broker.prefix, SLOTS // 2)
            await broker.subscribe([served])
            await broker.publish(served, "hello", KEEP)
            await handler.wait_for(lambda: handler.data(served) == ["hello"])
            with pytest.raises(SlotNotServed):
                await within(FAST, broker.publish(unserved, "lost", KEEP))
            with pytest.raises(RedisUnavailable, match="not served"):
                await within(FAST, broker.subscribe([unserved]))
        finally:
            await broker.close()


def _split_by_slot(prefix: str, first_served: int) -> tuple[str, str]:
    """A channel whose slot is at or above `first_served`, and one below."""
    served = unserved = ""
    index = 0
    while not (served and unserved):
        name = f"ch{index}"
        index += 1
        if key_slot(pubsub_channel(prefix, name)) >= first_served:
            served = served or name
        else:
            unserved = unserved or name
    return served, unserved


# A shard that is down ----------------------------------------------------------------


def _shard_down(cluster: ValkeyCluster, port: int) -> None:
    """Kill the primary on `port` and its replicas: its slots stay unserved."""
    primary = next(n for n in cluster.nodes if n.port == port)
    for replica in cluster.kill_primary(primary):
        replica.kill()


@pytest.mark.gen_test(timeout=30 * TIMEOUT_SCALE)
async def test_a_shard_that_is_down_fails_its_channels_at_once_and_the_others_serve(
    own_broker: RedisClusterBroker,
    valkey_cluster: ValkeyCluster,  # noqa: F811 - the fixture
    handler: RecordingHandler,
):
    by_shard = channels_by_shard(own_broker)
    url_node = f":{valkey_cluster.nodes[0].port}"  # stays up: not that it must
    down_name, (down,) = next((n, c) for n, c in by_shard.items() if not n.endswith(url_node))
    alive = [names[0] for name, names in by_shard.items() if name != down_name]
    await own_broker.subscribe(alive)
    await asyncio.to_thread(_shard_down, valkey_cluster, int(down_name.rsplit(":", 1)[1]))
    with pytest.raises(Exception):  # noqa: B017 - whichever the driver raises: the node answers 100
        await within(FAST, own_broker.publish(down, "lost", KEEP))
    for channel in alive:
        await within(FAST, own_broker.publish(channel, "served", KEEP))
    await handler.wait_for(lambda: all(handler.data(c) == ["served"] for c in alive))
    states = await own_broker.shard_states()
    assert states[down_name].startswith("unavailable: ")
    assert [s for n, s in states.items() if n != down_name] == ["ok", "ok"]
    await own_broker.ping()  # two shards answer


@pytest.mark.gen_test(timeout=30 * TIMEOUT_SCALE)
async def test_ping_fails_once_no_shard_answers(
    own_broker: RedisClusterBroker,
    valkey_cluster: ValkeyCluster,  # noqa: F811 - the fixture
):
    await own_broker.ping()
    await asyncio.to_thread(valkey_cluster.stop)
    with pytest.raises(Exception):  # noqa: B017 - no shard answers
        await within(2 * TIMEOUT * TIMEOUT_SCALE, own_broker.ping())


# Two server processes on the cluster ------------------------------------------------


def _api(port: int, method: str, params: dict[str, object]) -> dict[str, object]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5 * TIMEOUT_SCALE)
    try:
        body = json.dumps(params)
        conn.request("POST", f"/api/{method}", body, {"X-API-Key": "cluster-key"})
        answer: dict[str, object] = json.loads(conn.getresponse().read())
        return answer
    finally:
        conn.close()


def test_two_instances_on_a_cluster_see_each_other_and_share_history(
    tmp_path: Path,
    cluster_url: str,  # noqa: F811 - the fixture
    mongo_url: str,
    redis_prefix: str,
):
    env = clean_env(
        REDIS_URL=cluster_url,
        MONGO_URL=mongo_url,
        WSFAN_REDIS__CLUSTER="true",
        WSFAN_REDIS__PREFIX=redis_prefix,
        WSFAN_SERVER__WORKERS="1",
        WSFAN_API__KEYS='["cluster-key"]',
        WSFAN_EMBEDDED__ENABLED="false",
    )
    with running(tmp_path, env, name="a") as a, running(tmp_path, env, name="b") as b:
        for server in (a, b):
            assert server.wait_ready()["checks"] == {"cluster": "ok", "redis": "ok", "mongo": "ok"}
        deadline = time.monotonic() + 10 * TIMEOUT_SCALE
        while len(_api(a.port, "info", {})["result"]["nodes"]) < 2:  # type: ignore[index]
            assert time.monotonic() < deadline, "the instances did not hear each other"
            time.sleep(0.05)
        channels = ["news", "ticker", "weather"]  # on more than one shard
        for channel in channels:
            assert "result" in _api(a.port, "publish", {"channel": channel, "data": channel})
        for channel in channels:
            answer = _api(b.port, "history", {"channel": channel, "limit": -1})
            publications = answer["result"]["publications"]  # type: ignore[index]
            assert [p["data"] for p in publications] == [channel]


@pytest.mark.gen_test
async def test_a_burst_past_max_connections_waits_for_a_connection_instead_of_failing(
    cluster_url: str,  # noqa: F811 - the fixture
    redis_prefix: str,
):
    from wsfan.broker.redis_presence import RedisPresence
    from wsfan.protocol import ClientInfo

    client = cluster_client(cluster_url, max_connections=4)
    broker = RedisClusterBroker(client, redis_prefix, url=cluster_url)
    presence = RedisPresence(broker.client, redis_prefix)  # pipelines (MULTI) too
    await broker.start(RecordingHandler())
    try:
        positions = await asyncio.gather(*(broker.publish("burst", i, KEEP) for i in range(100)))
        await asyncio.gather(
            *(presence.add_presence("burst", f"c{i}", ClientInfo("u", f"c{i}")) for i in range(100))
        )
    finally:
        await broker.close()
    assert sorted(p.offset for p in positions) == list(range(1, 101))
