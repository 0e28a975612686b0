"""The durable log follows the broker (server/channel_log.py): nothing acknowledged is lost
between the broker's window and MongoDB, whoever published it and whatever they saw.

Tests run on the memory and the Redis broker with the session's real MongoDB; the
`log` namespace keeps 3 publications in the broker's window. The writer flushes
only when a test says so (flush_interval 30 s), and sweeps run when a test calls them.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from tornado.ioloop import IOLoop
from wsfan.broker.base import HistoryQuery
from wsfan.channel_log import ChannelLog
from wsfan.compose import build_node
from wsfan.config import Settings
from wsfan.embedded import EmbeddedServer
from wsfan.errors import ErrorCode, ReplyError
from wsfan.node import Node
from wsfan.protocol import StreamPosition
from wsfan.store.mongo import MongoStore
from wsfan.store.records import LogRecord
from wsfan.store.writer import LogWriter

from tests.conftest import TIMEOUT_SCALE

LOG = {"history_size": 3, "persist": True, "allow_anonymous": True, "allow_publish": True}
pytestmark = pytest.mark.settings(
    namespaces={"log": LOG},
    persist={"flush_interval": 30.0, "sweep_interval": 3600.0},
)


@pytest.fixture
def durable(settings: Settings, mongo_store: MongoStore, tmp_path: Path) -> ChannelLog:
    return ChannelLog(mongo_store, settings.persist, tmp_path / "spill")


@pytest.fixture
def node(settings: Settings, durable: ChannelLog, io_loop: IOLoop) -> Iterator[Node]:
    node = build_node(settings, durable=durable)
    io_loop.run_sync(node.start)
    yield node
    io_loop.run_sync(node.close)


async def publish_unrecorded(node: Node, channel: str, data: object) -> StreamPosition:
    """A publication the broker accepted but whose answer its publisher never saw."""
    options = node.history_options(node.channel_options(channel))
    return await node.broker.publish(channel, data, options)


async def logged_offsets(store: MongoStore, channel: str, epoch: str) -> list[int]:
    return [p.offset for p in await store.read_log(channel, epoch, 0, 10**9)]


@pytest.mark.gen_test
async def test_the_sweep_fills_the_log_with_a_publication_whose_answer_was_lost(
    node: Node, durable: ChannelLog, mongo_store: MongoStore
) -> None:
    first = await node.publish("log:a", {"n": 1})
    lost = await publish_unrecorded(node, "log:a", {"n": 2})
    await node.publish("log:a", {"n": 3})
    await durable.writer.flush()
    assert await logged_offsets(mongo_store, "log:a", first.epoch) == [1, 3]
    assert await durable.sweep() == 0  # maybe somebody is still writing it
    assert await durable.sweep() >= 1  # nobody is: taken from the broker
    await durable.writer.flush()
    assert await logged_offsets(mongo_store, "log:a", first.epoch) == [1, 2, 3]
    assert lost.offset == 2
    assert await node.broker.log_lagging(["log:"]) == []


@pytest.mark.gen_test
async def test_the_sweep_leaves_channels_alone_while_this_node_is_still_writing(
    node: Node, durable: ChannelLog
) -> None:
    await publish_unrecorded(node, "log:a", {"n": 1})
    await node.publish("log:a", {"n": 2})  # queued, not written yet
    assert await durable.sweep() == 0
    assert await durable.sweep() == 0


@pytest.mark.gen_test
async def test_recovery_across_the_window_gets_everything_while_the_log_trails(
    client, node: Node
) -> None:
    first = await node.publish("log:a", {"n": 1})
    for n in range(2, 21):
        await node.publish("log:a", {"n": n})
    c = await client()
    params = {"channel": "log:a", "recover": True, "offset": 1, "epoch": first.epoch}
    result = await c.result("subscribe", params)
    assert result["recovered"] is True
    assert [p["offset"] for p in result["publications"]] == list(range(2, 21))


@pytest.mark.gen_test
@pytest.mark.settings(
    namespaces={"log": LOG},
    persist={"flush_interval": 30.0, "sweep_interval": 3600.0, "max_lag": 5},
)
async def test_publishing_past_max_lag_answers_100_until_the_log_catches_up(
    node: Node, durable: ChannelLog
) -> None:
    for n in range(5):
        await node.publish("log:a", {"n": n})
    with pytest.raises(ReplyError) as refused:
        await node.publish("log:a", {"n": 6})
    assert refused.value.code is ErrorCode.INTERNAL and refused.value.temporary
    await node.publish("news", {"not": "persisted"})  # other channels never wait
    await durable.writer.flush()
    assert (await node.publish("log:a", {"n": 6})).offset == 6


@pytest.mark.gen_test
async def test_a_record_put_after_close_is_spilled_and_written_at_the_next_start(
    mongo_store: MongoStore, tmp_path: Path
) -> None:
    first = LogWriter(mongo_store.write_log, tmp_path / "spill", flush_interval=0.01)
    first.start()
    await first.close(1.0)
    record = LogRecord("log:late", "e1", 1, b"\x80", 1.0)
    first.put(record)
    assert list((tmp_path / "spill").iterdir())
    second = LogWriter(mongo_store.write_log, tmp_path / "spill", flush_interval=0.01)
    second.start()  # replays spill files nobody holds
    deadline = asyncio.get_running_loop().time() + 5 * TIMEOUT_SCALE
    while not await logged_offsets(mongo_store, "log:late", "e1"):
        assert asyncio.get_running_loop().time() < deadline, "the spilled record was not written"
        await asyncio.sleep(0.02)
    await second.close(1.0)
    assert await logged_offsets(mongo_store, "log:late", "e1") == [1]


@pytest.mark.gen_test(timeout=30)
@pytest.mark.brokers("redis")
@pytest.mark.settings(
    namespaces={"log": LOG},
    persist={"flush_interval": 0.01, "sweep_interval": 3600.0},
    redis={"command_timeout": 5.0},
)
async def test_shutdown_waits_for_a_publish_under_way_and_logs_it(
    settings: Settings, embedded_redis: EmbeddedServer, mongo_store: MongoStore, tmp_path: Path
) -> None:
    settings = settings.with_overrides(redis={"url": embedded_redis.url})
    durable = ChannelLog(mongo_store, settings.persist, tmp_path / "spill")
    node = build_node(settings, durable=durable)
    await node.start()
    epoch = (await node.publish("log:a", {"n": 1})).epoch
    assert embedded_redis.pid is not None
    os.kill(embedded_redis.pid, signal.SIGSTOP)  # the broker stalls mid-publish
    try:
        publishing = asyncio.ensure_future(node.publish("log:a", {"n": 2}))
        await asyncio.sleep(0.2)
        closing = asyncio.ensure_future(node.close())
        await asyncio.sleep(0.3)
        assert not closing.done()
    finally:
        os.kill(embedded_redis.pid, signal.SIGCONT)
    position = await asyncio.wait_for(publishing, 5 * TIMEOUT_SCALE)
    await asyncio.wait_for(closing, 10 * TIMEOUT_SCALE)
    assert position.offset == 2
    assert await logged_offsets(mongo_store, "log:a", epoch) == [1, 2]


@pytest.mark.gen_test(timeout=30)
@pytest.mark.brokers("redis")
async def test_a_broker_that_lost_acknowledged_publications_starts_a_new_epoch(
    node: Node, settings: Settings
) -> None:
    acknowledged = None
    for n in range(5):
        acknowledged = await node.publish("log:a", {"n": n})
    assert acknowledged is not None
    # What a crash between two fsyncs leaves: the offset counter and the list roll back.
    prefix = settings.redis.prefix
    client = node.broker.client  # type: ignore[attr-defined]
    await client.hset(f"{prefix}.meta.{{log:a}}", mapping={"s": 3, "l": 3})
    await client.ltrim(f"{prefix}.stream.{{log:a}}", 0, 2)
    node.handle_broker_reconnect()
    after = await node.publish("log:a", {"n": "after"})
    assert after.epoch != acknowledged.epoch
    assert after.offset == 1
    found = await node.reads.history("log:a", HistoryQuery(limit=-1))
    assert [p.data for p in found.publications] == [{"n": "after"}]


@pytest.mark.gen_test
async def test_data_json_allows_but_msgpack_does_not_reaches_the_log(
    node: Node, durable: ChannelLog, mongo_store: MongoStore
) -> None:
    position = await node.publish("log:a", {"big": 2**70, "text": "\ud800"})
    await durable.writer.flush()
    assert await logged_offsets(mongo_store, "log:a", position.epoch) == [1]


@pytest.mark.gen_test
async def test_a_history_read_goes_on_when_the_window_moved_while_the_log_was_read(
    node: Node, durable: ChannelLog
) -> None:
    first = await node.publish("log:a", {"n": 1})
    for n in range(2, 11):
        await node.publish("log:a", {"n": n})
    await durable.writer.flush()  # 1-10 in the log; the window keeps 8-10
    for n in range(11, 21):
        await node.publish("log:a", {"n": n})  # 11-20 only in the window
    history = node.history_options(node.channel_options("log:a"))
    trimmed_once = []

    async def read(query: HistoryQuery):
        # The first read of the window's part finds it moved on (another node's
        # writer moved the checkpoint meanwhile), as under load.
        if query.since is not None and query.since.offset == 10 and not trimmed_once:
            trimmed_once.append(True)
            raise ReplyError(ErrorCode.UNRECOVERABLE_POSITION)
        return await node.broker.history("log:a", query, history)

    found = await durable.history("log:a", HistoryQuery(StreamPosition(1, first.epoch), -1), read)
    assert [p.offset for p in found.publications] == list(range(2, 21))
    assert trimmed_once
