"""The queue between fan-out and MongoDB: batches, a bounded memory, spill files."""

from __future__ import annotations

import asyncio
import time

import pytest
from wsfan.protocol import Publication
from wsfan.store.mongo import MongoStore
from wsfan.store.records import LogRecord
from wsfan.store.spill import SUFFIX, SpillFile
from wsfan.store.writer import LogWriter

from tests.conftest import TIMEOUT_SCALE

WAIT = 10 * TIMEOUT_SCALE


def record(offset: int, channel: str = "log:a") -> LogRecord:
    return LogRecord.of(channel, Publication({"n": offset}, offset, epoch="e"), time.time(), 0.0)


async def offsets(store: MongoStore, channel: str = "log:a") -> list[int]:
    cursor = store.publications.find({"channel": channel}).sort("offset", 1)
    return [doc["offset"] async for doc in cursor]


async def until(check, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@pytest.mark.gen_test(timeout=WAIT)
async def test_a_burst_is_written_in_batches_of_at_most_batch_size(mongo_store, tmp_path):
    writer = LogWriter(mongo_store.write_log, tmp_path, batch_size=100, flush_interval=0.05)
    writer.start()
    for n in range(1, 1001):
        writer.put(record(n))
    await writer.flush()
    assert await offsets(mongo_store) == list(range(1, 1001))
    assert writer.stats.max_batch == 100 and writer.stats.batches >= 10
    await writer.close()


@pytest.mark.gen_test(timeout=WAIT)
async def test_a_lone_record_is_written_after_the_flush_interval(mongo_store, tmp_path):
    writer = LogWriter(mongo_store.write_log, tmp_path, batch_size=500, flush_interval=0.05)
    writer.start()
    writer.put(record(1))
    await until(lambda: _has(mongo_store, 1))
    assert writer.stats.last_batch == 1
    await writer.close()


async def _has(store: MongoStore, count: int) -> bool:
    return await store.publications.count_documents({}) >= count


@pytest.mark.gen_test(timeout=WAIT)
async def test_put_never_waits_for_a_sink_that_hangs(tmp_path):
    async def hang(batch: list[LogRecord]) -> None:
        await asyncio.sleep(3600)

    writer = LogWriter(hang, tmp_path, write_timeout=0.05, queue_max=10, batch_size=5)
    writer.start()
    started = time.monotonic()
    for n in range(1, 101):
        writer.put(record(n))
    assert time.monotonic() - started < 0.5
    assert writer.stats.queued <= 10
    assert writer.stats.spilled >= 90
    await writer.close(timeout=0)


@pytest.mark.gen_test(timeout=WAIT)
async def test_memory_holds_at_most_queue_max_and_the_rest_goes_to_a_spill_file(tmp_path):
    async def down(batch: list[LogRecord]) -> None:
        raise ConnectionError("down")

    writer = LogWriter(down, tmp_path, queue_max=50)
    for n in range(1, 51):
        writer.put(record(n))
    assert writer.stats.queued == 50 and writer.stats.spill_bytes == 0
    writer.put(record(51))
    assert writer.stats.queued <= 50
    assert writer.stats.spilled + writer.stats.queued == 51
    assert writer.stats.spill_bytes > 0 and list(tmp_path.glob(f"*{SUFFIX}"))
    await writer.close(timeout=0)


@pytest.mark.gen_test(timeout=WAIT)
async def test_records_spilled_at_shutdown_are_written_by_the_next_writer(mongo_store, tmp_path):
    async def down(batch: list[LogRecord]) -> None:
        raise ConnectionError("down")

    first = LogWriter(down, tmp_path)
    first.start()
    for n in range(1, 21):
        first.put(record(n))
    await first.close(timeout=0.1)
    assert len(list(tmp_path.glob(f"*{SUFFIX}"))) == 1
    second = LogWriter(mongo_store.write_log, tmp_path)
    second.start()
    await until(lambda: _has(mongo_store, 20))
    await second.flush()
    assert await offsets(mongo_store) == list(range(1, 21))
    assert not list(tmp_path.glob(f"*{SUFFIX}"))
    await second.close()


@pytest.mark.gen_test(timeout=WAIT)
async def test_a_damaged_last_record_does_not_lose_the_ones_before_it(mongo_store, tmp_path):
    spill = SpillFile.create(tmp_path)
    spill.append([record(n) for n in range(1, 6)])
    spill.close()
    with spill.path.open("ab") as fh:
        fh.write(b"\x97\xa5log:a")  # a record cut short
    writer = LogWriter(mongo_store.write_log, tmp_path)
    writer.start()
    await until(lambda: _has(mongo_store, 5))
    await writer.flush()
    assert await offsets(mongo_store) == [1, 2, 3, 4, 5]
    await writer.close()


def test_a_spill_file_held_by_a_live_writer_is_not_claimed_by_another(tmp_path):
    held = SpillFile.create(tmp_path)
    assert SpillFile.claim(held.path) is None
    held.close()
    claimed = SpillFile.claim(held.path)
    assert claimed is not None
    claimed.remove()


@pytest.mark.gen_test(timeout=60 * TIMEOUT_SCALE)
async def test_mongodb_stopped_while_records_flow_stores_each_exactly_once(
    restartable_mongo, mongo_db_name, tmp_path
):
    own = MongoStore(restartable_mongo.url, mongo_db_name, timeout=0.5)
    await own.ensure_indexes()
    writer = LogWriter(
        own.write_log,
        tmp_path / "spill",
        batch_size=50,
        queue_max=200,
        write_timeout=0.5,
        retry_delay_max=0.2,
    )
    writer.start()
    offset = 0

    async def produce(seconds: float) -> None:
        nonlocal offset
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for _ in range(20):
                offset += 1
                writer.put(record(offset))
            await asyncio.sleep(0.01)

    await produce(0.5)
    await asyncio.to_thread(restartable_mongo.stop)
    await produce(1.0)  # MongoDB is down: memory fills, the rest spills
    assert writer.stats.spilled > 0 and writer.stats.queued <= 200
    await asyncio.to_thread(restartable_mongo.start)
    await produce(0.5)
    await writer.flush()
    assert await offsets(own) == list(range(1, offset + 1))
    assert writer.stats.replayed > 0
    await writer.close()
    await own.close()
