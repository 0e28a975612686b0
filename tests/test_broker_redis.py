"""What only the Redis broker promises, checked from Redis's side of the wire."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import msgpack
import pytest
from redis.asyncio import Redis
from redis.crc import key_slot
from tornado.ioloop import IOLoop
from wsfan.broker.base import HistoryOptions, HistoryQuery
from wsfan.broker.redis import RedisBroker
from wsfan.broker.redis_connection import RedisRestarted, RestartWatch, redis_client
from wsfan.broker.redis_pubsub import PubSubConnection
from wsfan.embedded import EmbeddedServer

from tests.broker_fixtures import RecordingHandler

KEEP = HistoryOptions(size=3, ttl=60.0, meta_ttl=3600.0)


@pytest.fixture
def broker(embedded_redis: EmbeddedServer, io_loop: IOLoop) -> Iterator[RedisBroker]:
    """A started broker on this test's own Valkey, whose command counts start at zero."""
    instance = RedisBroker(redis_client(embedded_redis.url), "rb")
    io_loop.run_sync(lambda: instance.start(RecordingHandler()))
    yield instance
    io_loop.run_sync(instance.close)


@pytest.fixture
def inspector(embedded_redis: EmbeddedServer, io_loop: IOLoop) -> Iterator[Redis]:
    client = Redis.from_url(embedded_redis.url)
    yield client
    io_loop.run_sync(client.aclose)


async def subscribe_calls(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_subscribe", {}).get("calls", 0))


@pytest.mark.gen_test
async def test_a_burst_of_subscribes_goes_out_as_one_subscribe_command(
    broker: RedisBroker, inspector: Redis
):
    before = await subscribe_calls(inspector)  # the control stream's, at start
    await asyncio.gather(*(broker.subscribe([f"ch{i}"]) for i in range(100)))
    assert await subscribe_calls(inspector) == before + 1
    assert len(await inspector.pubsub_channels("rb.pub.*")) == 100


@pytest.mark.gen_test
async def test_unsubscribed_channel_leaves_redis_pubsub(broker: RedisBroker, inspector: Redis):
    await broker.subscribe(["a", "b"])
    await broker.unsubscribe(["a"])
    for _ in range(100):  # UNSUBSCRIBE is not awaited for a reply: poll, bounded
        if await inspector.pubsub_channels("rb.pub.*") == [b"rb.pub.{b}"]:
            break
        await asyncio.sleep(0.01)
    assert await inspector.pubsub_channels("rb.pub.*") == [b"rb.pub.{b}"]


@pytest.mark.gen_test
async def test_publications_travel_on_redis_as_one_msgpack_array(
    broker: RedisBroker, inspector: Redis
):
    pubsub = inspector.pubsub()
    await pubsub.subscribe("rb.pub.{news}")
    await pubsub.get_message(timeout=1)  # the subscribe confirmation
    position = await broker.publish("news", {"text": "hi"}, KEEP, tags={"k": "v"})
    message = await pubsub.get_message(timeout=2)
    await pubsub.aclose()
    assert message is not None
    decoded = msgpack.unpackb(message["data"], raw=False)
    assert decoded == [0, 1, position.epoch, {"data": {"text": "hi"}, "tags": {"k": "v"}}]


@pytest.mark.gen_test
async def test_history_list_is_trimmed_to_the_history_size(broker: RedisBroker, inspector: Redis):
    for i in range(5):
        await broker.publish("news", i, KEEP)
    assert await inspector.llen("rb.stream.{news}") == 3
    assert await inspector.hget("rb.meta.{news}", "s") == b"5"


@pytest.mark.gen_test
async def test_an_idempotency_key_lives_in_the_channels_hash_slot_for_its_window(
    broker: RedisBroker, inspector: Redis
):
    await broker.publish("chat:1", "x", KEEP, idempotency_key="k", idempotency_window=60.0)
    key = b"rb.idempotency.{chat:1}.k"
    assert key_slot(key) == key_slot(b"rb.meta.{chat:1}")
    assert 59_000 < await inspector.pttl(key) <= 60_000


@pytest.mark.gen_test
async def test_control_messages_reach_every_broker_of_the_prefix_and_no_other(
    embedded_redis: EmbeddedServer, broker: RedisBroker
):
    others = [RedisBroker(redis_client(embedded_redis.url), p) for p in ("rb", "rb", "elsewhere")]
    handlers = [RecordingHandler() for _ in others]
    try:
        for other, handler in zip(others, handlers, strict=True):
            await other.start(handler)
        await others[0].publish_control(b"hello")
        await others[2].publish_control(b"marker")
        for handler in handlers:
            await handler.wait_for(lambda h=handler: bool(h.controls))
        assert handlers[0].controls == handlers[1].controls == [b"hello"]
        assert handlers[2].controls == [b"marker"]
    finally:
        for other in others:
            await other.close()


@pytest.mark.gen_test
async def test_the_control_stream_is_subscribed_once_start_returns(
    broker: RedisBroker, inspector: Redis
):
    assert await inspector.pubsub_channels("rb.control") == [b"rb.control"]


@pytest.mark.gen_test
async def test_channel_keys_share_one_cluster_hash_slot(broker: RedisBroker, inspector: Redis):
    await broker.publish("chat:1", "x", KEEP)
    keys = [k.decode() for k in await inspector.keys("rb.*")]
    assert sorted(keys) == ["rb.meta.{chat:1}", "rb.stream.{chat:1}"]
    assert len({key_slot(k.encode()) for k in keys}) == 1


@pytest.mark.gen_test(timeout=30)
async def test_closing_the_pubsub_connection_at_any_moment_of_its_connect_returns(
    embedded_redis: EmbeddedServer,
):
    # A cancellation landing inside the driver's connect handshake can be lost
    # (redis-py on Python 3.11); close() must still return, promptly.
    client = redis_client(embedded_redis.url)
    try:
        for i in range(120):
            pubsub = PubSubConnection(client, lambda channel, data: None, lambda: None)
            pubsub.start()
            await asyncio.sleep((i % 40) * 0.0005)
            await asyncio.wait_for(pubsub.close(), 1.0)
            assert not pubsub.connected
    finally:
        await client.aclose()


@pytest.mark.gen_test
async def test_starting_on_a_redis_that_may_evict_keys_warns_once(
    embedded_redis: EmbeddedServer, inspector: Redis, caplog: pytest.LogCaptureFixture
):
    await inspector.config_set("maxmemory-policy", "allkeys-lru")
    instance = RedisBroker(redis_client(embedded_redis.url), "rb")
    with caplog.at_level("WARNING", logger="wsfan.broker.redis"):
        await instance.start(RecordingHandler())
    await instance.close()
    warnings = [r for r in caplog.records if "maxmemory-policy" in r.getMessage()]
    assert len(warnings) == 1 and "allkeys-lru" in warnings[0].getMessage()


@pytest.mark.gen_test
async def test_starting_on_a_redis_that_never_evicts_says_nothing(
    embedded_redis: EmbeddedServer, caplog: pytest.LogCaptureFixture
):
    instance = RedisBroker(redis_client(embedded_redis.url), "rb")
    with caplog.at_level("WARNING", logger="wsfan.broker.redis"):
        await instance.start(RecordingHandler())
    await instance.close()
    assert not [r for r in caplog.records if "maxmemory-policy" in r.getMessage()]


@pytest.mark.gen_test
async def test_every_key_of_a_logged_channel_shares_its_slot(broker: RedisBroker, inspector: Redis):
    options = HistoryOptions(size=3, ttl=60.0, meta_ttl=3600.0, log_lag=10)
    for n in range(5):
        await broker.publish("log:a", n, options)
    epoch = (await inspector.hget("rb.meta.{log:a}", "e")).decode()
    await broker.log_stored("log:a", epoch, [(3, 4)], options)  # out of order: a set
    keys = [k.decode() async for k in inspector.scan_iter(match="rb.*{log:a}*")]
    assert {k.split(".")[1] for k in keys} == {"meta", "stream", "logged"}
    assert len({key_slot(k.encode()) for k in keys}) == 1


@pytest.mark.parametrize("channel", ["a}b", "{x}", "%7B", "chat:{room}:1"])
@pytest.mark.gen_test
async def test_a_channel_with_braces_keeps_every_key_in_one_slot_of_its_own(
    broker: RedisBroker, inspector: Redis, channel: str
):
    await broker.publish(channel, "x", KEEP, idempotency_key="k")
    keys = [k async for k in inspector.scan_iter(match="rb.*")]
    assert len({key_slot(k) for k in keys}) == 1
    assert key_slot(keys[0]) != key_slot(b"rb.meta.{a}")


@pytest.mark.parametrize("channel", ["a}b", "{x}", "%7B"])
@pytest.mark.gen_test
async def test_a_channel_with_braces_is_delivered_and_kept_under_its_own_name(
    embedded_redis: EmbeddedServer, channel: str
):
    handler = RecordingHandler()
    instance = RedisBroker(redis_client(embedded_redis.url), "rb")
    await instance.start(handler)
    try:
        await instance.subscribe([channel])
        position = await instance.publish(channel, "x", KEEP)
        await handler.wait_for(lambda: handler.data(channel) == ["x"])
        history = await instance.history(channel, HistoryQuery(limit=10), KEEP)
        assert [p.data for p in history.publications] == ["x"]
        assert history.position == position
    finally:
        await instance.close()


@pytest.mark.gen_test
async def test_a_lagging_log_is_found_under_a_channel_name_with_braces(broker: RedisBroker):
    options = HistoryOptions(size=3, ttl=60.0, meta_ttl=3600.0, log_lag=10)
    await broker.publish("log:{a}", 1, options)
    lagging = await broker.log_lagging(["log:{"])
    assert [state.channel for state in lagging] == ["log:{a}"]


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_first_redis_seen_is_trusted() -> None:
    watch = RestartWatch()
    watch.admit("a")
    watch.admit("a")
    assert watch.confirmed == "a"


def test_a_restarted_redis_is_refused_until_the_node_checked_it() -> None:
    restarts: list[int] = []
    watch = RestartWatch(limit=5.0, clock=Ticks())
    watch.on_restart = lambda: restarts.append(1)
    watch.admit("a")
    for _ in range(3):
        with pytest.raises(RedisRestarted):
            watch.admit("b")
    assert restarts == [1]  # told once
    watch.confirm()
    watch.admit("b")
    assert watch.confirmed == "b"


def test_a_restarted_redis_nobody_checks_is_used_after_the_limit() -> None:
    clock = Ticks()
    watch = RestartWatch(limit=5.0, clock=clock)
    watch.admit("a")
    with pytest.raises(RedisRestarted):
        watch.admit("b")
    clock.now = 5.1
    watch.admit("b")
    assert watch.confirmed == "b"


@pytest.mark.gen_test(timeout=30)
async def test_commands_on_a_restarted_redis_wait_for_the_check(embedded_redis: EmbeddedServer):
    handler = RecordingHandler()
    instance = RedisBroker(redis_client(embedded_redis.url), "rb")
    await instance.start(handler)
    await instance.publish("a", 1, KEEP)
    await asyncio.to_thread(embedded_redis.stop)
    await asyncio.to_thread(embedded_redis.start)
    with pytest.raises(RedisRestarted):
        for _ in range(3):  # the first may still meet the old connection's reset
            try:
                await instance.publish("a", 2, KEEP)
            except ConnectionError:
                continue
    instance.reconnect_checked()
    assert (await instance.publish("a", 3, KEEP)).offset >= 1
    await instance.close()
