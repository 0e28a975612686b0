"""The Redis Cluster broker under publish load while the cluster changes: a slot
migrates to another primary, or a primary is killed and its replica promoted. A
subscriber that recovers the way a node does (history since its last offset, on a
gap or on `handle_broker_reconnect`) ends with every offset of the channel
exactly once, every acknowledged publication among them.

Each test has a cluster of its own (tests/valkey_cluster.py)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.crc import key_slot
from tornado.ioloop import IOLoop
from wsfan.broker.base import Broker, HistoryOptions, HistoryQuery
from wsfan.broker.redis_cluster import RedisClusterBroker, cluster_client
from wsfan.broker.redis_keys import pubsub_channel
from wsfan.protocol import Publication, StreamPosition

from tests.broker_fixtures import RecordingHandler
from tests.conftest import TIMEOUT_SCALE
from tests.faults import run_scenario
from tests.valkey_cluster import ValkeyCluster, valkey_cluster  # noqa: F401 - a fixture

KEEP = HistoryOptions(size=100000, ttl=300.0, meta_ttl=3600.0)
TIMEOUT = 2.0  # the brokers' command timeout
TEST_TIMEOUT = 60 * TIMEOUT_SCALE
PREFIX = "faults"


def new_broker(url: str) -> RedisClusterBroker:
    return RedisClusterBroker(
        cluster_client(url, command_timeout=TIMEOUT),
        PREFIX,
        timeout=TIMEOUT,
        reconnect_max=0.3,
        url=url,
    )


class Recovering(RecordingHandler):
    """Keeps each channel's publications in offset order, as a node does: live ones
    that follow the last it holds; on a gap, or when the broker says it was cut off,
    it reads history since that last offset (set `broker` before the first event)."""

    def __init__(self) -> None:
        super().__init__()
        self.broker: Broker | None = None
        self.held: dict[str, list[Publication]] = {}
        self.recoveries = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def handle_publication(self, channel: str, pub: Publication) -> None:
        super().handle_publication(channel, pub)
        if not self._take(channel, pub):
            self._recover(channel)

    def handle_broker_reconnect(self) -> None:
        super().handle_broker_reconnect()
        for channel in list(self.held):
            self._recover(channel)

    def _take(self, channel: str, pub: Publication) -> bool:
        """Hold `pub` if it is the next offset (or already held); False on a gap."""
        held = self.held.setdefault(channel, [])
        last = held[-1].offset if held else 0
        if pub.offset == last + 1:
            held.append(pub)
        return pub.offset <= last + 1

    def _recover(self, channel: str) -> None:
        task = asyncio.get_running_loop().create_task(self._read_history(channel))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read_history(self, channel: str) -> None:
        assert self.broker is not None
        held = self.held.setdefault(channel, [])
        since = StreamPosition(held[-1].offset, held[-1].epoch) if held else None
        with contextlib.suppress(Exception):  # retried on the next gap or reconnect
            result = await self.broker.history(channel, HistoryQuery(since, limit=-1), KEEP)
            self.recoveries += 1
            for pub in result.publications:
                self._take(channel, pub)

    def offsets(self, channel: str) -> list[int]:
        return [p.offset for p in self.held.get(channel, [])]


class Publishing:
    """Publishes `{"n": i}` to `channel` as fast as answers come, until stopped;
    records each acknowledged position (failed attempts are not acknowledged)."""

    def __init__(self, broker: Broker, channel: str) -> None:
        self.broker = broker
        self.channel = channel
        self.acked: list[tuple[StreamPosition, Any]] = []
        self.failures = 0
        self._stop = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        n = 0
        while not self._stop:
            n += 1
            try:
                position = await self.broker.publish(self.channel, {"n": n}, KEEP)
            except Exception:
                self.failures += 1
                await asyncio.sleep(0.01)
                continue
            self.acked.append((position, {"n": n}))

    async def until(self, count: int) -> None:
        deadline = time.monotonic() + 20 * TIMEOUT_SCALE
        while len(self.acked) < count:
            assert time.monotonic() < deadline, f"only {len(self.acked)} of {count} acknowledged"
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self._stop = True
        if self._task is not None:
            await self._task


@pytest.fixture
def brokers(
    valkey_cluster: ValkeyCluster,  # noqa: F811 - the fixture
    io_loop: IOLoop,
) -> Iterator[tuple[RedisClusterBroker, RedisClusterBroker, Recovering]]:
    """A publishing broker, and a subscribing one delivering to a `Recovering`."""
    publisher, subscriber = new_broker(valkey_cluster.url), new_broker(valkey_cluster.url)
    recovering = Recovering()
    recovering.broker = subscriber
    io_loop.run_sync(lambda: publisher.start(RecordingHandler()))
    io_loop.run_sync(lambda: subscriber.start(recovering))
    yield publisher, subscriber, recovering
    io_loop.run_sync(subscriber.close)
    io_loop.run_sync(publisher.close)


async def ends_with_every_offset_once(
    recovering: Recovering, publishing: Publishing, broker: Broker
) -> None:
    """Every offset up to the channel's top held exactly once, in order, each
    acknowledged publication among them with its data; all in one epoch."""
    channel = publishing.channel
    top = (await broker.history(channel, HistoryQuery(), KEEP)).position
    await recovering.wait_for(lambda: recovering.offsets(channel)[-1:] == [top.offset], 10.0)
    held = recovering.held[channel]
    assert [p.offset for p in held] == list(range(1, top.offset + 1))
    assert {p.epoch for p in held} == {top.epoch}
    by_offset = {p.offset: p.data for p in held}
    for position, data in publishing.acked:
        assert position.epoch == top.epoch
        assert by_offset[position.offset] == data


def channel_on(cluster: ValkeyCluster, avoid_port: int) -> str:
    """A channel whose slot a primary other than the one on `avoid_port` owns."""
    index = 0
    while True:
        name = f"ticker{index}"
        index += 1
        if cluster.owner(key_slot(pubsub_channel(PREFIX, name))).port != avoid_port:
            return name


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_a_slot_migration_while_publishing_loses_no_acknowledged_publication(
    brokers: tuple[RedisClusterBroker, RedisClusterBroker, Recovering],
    valkey_cluster: ValkeyCluster,  # noqa: F811 - the fixture
):
    publisher, subscriber, recovering = brokers
    channel = "ticker"
    slot = key_slot(pubsub_channel(PREFIX, channel))
    source = valkey_cluster.owner(slot)
    target = next(n for n in valkey_cluster.primary_nodes() if n is not source)
    await subscriber.subscribe([channel])
    publishing = Publishing(publisher, channel)
    publishing.start()
    try:
        await publishing.until(200)
        await asyncio.to_thread(valkey_cluster.migrate_slot, slot, target)
        acked = len(publishing.acked)
        await publishing.until(acked + 200)  # served by the new owner
    finally:
        await publishing.stop()
    assert valkey_cluster.owner(slot) is target
    await ends_with_every_offset_once(recovering, publishing, subscriber)
    assert recovering.reconnects >= 1  # the subscriber was told to check
    assert subscriber.subscriber.reroutes >= 1
    assert f"127.0.0.1:{target.port}" in subscriber.subscriber.connections


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_a_primary_killed_under_publish_load_loses_no_acknowledged_publication(
    brokers: tuple[RedisClusterBroker, RedisClusterBroker, Recovering],
    valkey_cluster: ValkeyCluster,  # noqa: F811 - the fixture
):
    publisher, subscriber, recovering = brokers
    channel = channel_on(valkey_cluster, avoid_port=valkey_cluster.nodes[0].port)
    primary = valkey_cluster.owner(key_slot(pubsub_channel(PREFIX, channel)))
    await subscriber.subscribe([channel])
    publishing = Publishing(publisher, channel)
    publishing.start()
    try:
        await publishing.until(300)
        replicas = await asyncio.to_thread(valkey_cluster.kill_primary, primary)
        promoted = await asyncio.to_thread(valkey_cluster.wait_promoted, replicas)
        acked = len(publishing.acked)
        await publishing.until(acked + 300)  # served by the promoted replica
    finally:
        await publishing.stop()
    assert valkey_cluster.owner(key_slot(pubsub_channel(PREFIX, channel))) is promoted
    await ends_with_every_offset_once(recovering, publishing, subscriber)
    assert recovering.reconnects >= 1
    assert f"127.0.0.1:{promoted.port}" in subscriber.subscriber.connections
    assert f"127.0.0.1:{primary.port}" not in subscriber.subscriber.connections


@pytest.mark.gen_test(timeout=90 * TIMEOUT_SCALE)
async def test_sdk_clients_lose_nothing_when_a_primary_is_killed_under_load(tmp_path: Path):
    # Two run.py instances on a cluster, HTTP API publishers and centrifuge-python
    # subscribers (tests/faults.py); the primary owning the channel's slot is killed.
    (await run_scenario("cluster_primary_kill", tmp_path)).assert_no_loss()
