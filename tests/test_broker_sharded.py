"""Client-side sharding (server/broker/sharded.py): the stable channel-to-shard map, and
what it means against real, independent Valkeys: each channel on its shard alone,
control traffic through the first, and a shard outage that spares the others."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError
from tornado.ioloop import IOLoop
from wsfan.broker.base import HistoryOptions, HistoryQuery
from wsfan.broker.redis import RedisBroker
from wsfan.broker.redis_connection import redis_client
from wsfan.broker.sharded import ShardedBroker, jump_hash, shard_label, shard_of
from wsfan.embedded import EmbeddedValkey
from wsfan.errors import ErrorCode, ReplyError

from tests.broker_fixtures import RecordingHandler
from tests.conftest import TIMEOUT_SCALE

KEEP = HistoryOptions(size=10, ttl=60.0, meta_ttl=3600.0)
CHANNELS = [f"room:{n}" for n in range(2000)]


# The map ------------------------------------------------------------------------


def test_the_channel_map_is_pinned_so_every_version_agrees() -> None:
    assert [shard_of(c, 3) for c in ("news", "chat:lobby", "a", "", "é")] == [2, 0, 0, 2, 2]


def test_jump_hash_matches_the_papers_reference_values() -> None:
    # The reference implementation's (Lamping and Veach, 2014) values, as its ports test them.
    cases = [(256, 1024, 520), (1, 60, 55), (2, 60, 46), (42, 57, 43), (0xDEAD10CC, 666, 361)]
    assert [jump_hash(key, buckets) for key, buckets, _ in cases] == [b for *_, b in cases]


def test_growing_the_shard_list_moves_channels_only_to_the_new_shard() -> None:
    for shards in range(1, 8):
        before = {c: shard_of(c, shards) for c in CHANNELS}
        moved = [c for c in CHANNELS if shard_of(c, shards + 1) != before[c]]
        assert all(shard_of(c, shards + 1) == shards for c in moved)
        assert abs(len(moved) / len(CHANNELS) - 1 / (shards + 1)) < 0.05


def test_channels_spread_evenly_over_the_shards() -> None:
    counts = Counter(shard_of(c, 4) for c in CHANNELS)
    assert sorted(counts) == [0, 1, 2, 3]
    assert max(counts.values()) - min(counts.values()) < len(CHANNELS) * 0.08


def test_a_shards_label_never_shows_its_password() -> None:
    assert shard_label("redis://:secret@db.example:6380/2") == "db.example:6380/2"


# Against two real Valkeys --------------------------------------------------------


@pytest.fixture
def valkeys(tmp_path: Path) -> Iterator[list[EmbeddedValkey]]:
    """Two Valkeys of this test's own (a test stops one)."""
    with (
        EmbeddedValkey(tmp_path / "a", persist=False) as a,
        EmbeddedValkey(tmp_path / "b", persist=False) as b,
    ):
        yield [a, b]


def sharded(urls: list[str]) -> ShardedBroker:
    shards = [RedisBroker(redis_client(url, 0.2, 1.0 * TIMEOUT_SCALE), "sh") for url in urls]
    return ShardedBroker(shards, urls)


@pytest.fixture
def broker(valkeys: list[EmbeddedValkey], io_loop: IOLoop) -> Iterator[ShardedBroker]:
    instance = sharded([v.url for v in valkeys])
    io_loop.run_sync(lambda: instance.start(RecordingHandler()))
    yield instance
    io_loop.run_sync(instance.close)


def on_shard(index: int, shards: int = 2) -> str:
    return next(c for c in CHANNELS if shard_of(c, shards) == index)


async def keys_of(url: str) -> list[str]:
    client = Redis.from_url(url)
    try:
        return sorted([k.decode() async for k in client.scan_iter(match="sh.*")])
    finally:
        await client.aclose()


@pytest.mark.gen_test
async def test_a_channels_keys_live_on_its_shard_alone(
    broker: ShardedBroker, valkeys: list[EmbeddedValkey]
):
    first, second = on_shard(0), on_shard(1)
    await broker.publish(first, "x", KEEP)
    await broker.publish(second, "y", KEEP)
    assert [k for k in await keys_of(valkeys[0].url) if "room" in k] == [
        f"sh.meta.{{{first}}}",
        f"sh.stream.{{{first}}}",
    ]
    assert [k for k in await keys_of(valkeys[1].url) if "room" in k] == [
        f"sh.meta.{{{second}}}",
        f"sh.stream.{{{second}}}",
    ]


@pytest.mark.gen_test
async def test_subscribers_get_publications_from_every_shard(valkeys: list[EmbeddedValkey]):
    handler = RecordingHandler()
    broker = sharded([v.url for v in valkeys])
    await broker.start(handler)
    try:
        channels = [on_shard(0), on_shard(1)]
        await broker.subscribe(channels)
        for channel in channels:
            await broker.publish(channel, channel, KEEP)
        await handler.wait_for(lambda: all(handler.data(c) == [c] for c in channels))
    finally:
        await broker.close()


@pytest.mark.gen_test
async def test_control_messages_travel_once_through_the_first_shard(
    valkeys: list[EmbeddedValkey],
):
    handlers = [RecordingHandler(), RecordingHandler()]
    brokers = [sharded([v.url for v in valkeys]) for _ in handlers]
    try:
        for broker, handler in zip(brokers, handlers, strict=True):
            await broker.start(handler)
        await brokers[0].publish_control(b"hello")
        await brokers[0].subscribe([on_shard(1)])  # a later marker, to prove no duplicate
        await brokers[1].publish(on_shard(1), "marker", KEEP)
        await handlers[0].wait_for(lambda: handlers[0].data(on_shard(1)) == ["marker"])
        await handlers[1].wait_for(lambda: bool(handlers[1].controls))
        assert handlers[0].controls == handlers[1].controls == [b"hello"]
    finally:
        for broker in brokers:
            await broker.close()


@pytest.mark.gen_test(timeout=20 * TIMEOUT_SCALE)
async def test_a_stopped_shard_fails_its_channels_quickly_and_spares_the_others(
    broker: ShardedBroker, valkeys: list[EmbeddedValkey]
):
    down, up = on_shard(1), on_shard(0)
    valkeys[1].stop()
    started = time.monotonic()
    with pytest.raises(RedisError):
        await broker.publish(down, "lost", KEEP)
    assert time.monotonic() - started < 3 * TIMEOUT_SCALE
    assert (await broker.publish(up, "kept", KEEP)).offset == 1


@pytest.mark.gen_test(timeout=20 * TIMEOUT_SCALE)
async def test_ping_answers_while_any_shard_does_and_states_report_each(
    broker: ShardedBroker, valkeys: list[EmbeddedValkey]
):
    valkeys[1].stop()
    await broker.ping()
    states = await broker.shard_states()
    assert states[valkeys[0].url] == "ok"
    assert states[valkeys[1].url].startswith("unavailable")
    valkeys[0].stop()
    with pytest.raises(RedisError):
        await broker.ping()


@pytest.mark.gen_test
async def test_a_channel_moved_by_a_new_shard_cannot_be_recovered_there(
    valkeys: list[EmbeddedValkey],
):
    """Appending a shard moves some channels to it; their clients get
    `recovered: false` (the broker's UNRECOVERABLE_POSITION) and reload."""
    moved = next(c for c in CHANNELS if shard_of(c, 1) == 0 and shard_of(c, 2) == 1)
    one = sharded([valkeys[0].url])
    await one.start(RecordingHandler())
    try:
        position = await one.publish(moved, "before", KEEP)
    finally:
        await one.close()
    two = sharded([v.url for v in valkeys])
    await two.start(RecordingHandler())
    try:
        with pytest.raises(ReplyError) as caught:
            await two.history(moved, HistoryQuery(since=position), KEEP)
        assert caught.value.code == ErrorCode.UNRECOVERABLE_POSITION
        assert (await two.publish(moved, "after", KEEP)).epoch != position.epoch
    finally:
        await two.close()


@pytest.mark.gen_test
async def test_lagging_logs_are_found_on_every_shard(broker: ShardedBroker):
    options = HistoryOptions(size=3, ttl=60.0, meta_ttl=3600.0, log_lag=10)
    channels = sorted([on_shard(0), on_shard(1)])
    await asyncio.gather(*(broker.publish(c, 1, options) for c in channels))
    lagging = await broker.log_lagging(["room:"])
    assert sorted(state.channel for state in lagging) == channels
