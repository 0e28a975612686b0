"""The MongoDB mongo_store: indexes, the idempotent publication log, retained state."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from wsfan.protocol import ClientInfo, Publication
from wsfan.store.records import LogRecord


def record(
    offset: int, channel: str = "log:a", epoch: str = "e1", when: float | None = None, **kw: bool
) -> LogRecord:
    pub = Publication({"n": offset}, offset, ClientInfo("u", "c"), {"k": "v"}, epoch)
    return LogRecord.of(channel, pub, time.time() if when is None else when, 0.0, **kw)


@pytest.mark.gen_test
async def test_indexes_make_positions_unique_and_expire_rows_by_their_own_date(mongo_store):
    indexes = await mongo_store.publications.index_information()
    assert indexes["position"]["unique"] is True
    assert indexes["position"]["key"] == [("channel", 1), ("epoch", 1), ("offset", 1)]
    assert indexes["ttl"]["key"] == [("expire_at", 1)]
    assert indexes["ttl"]["expireAfterSeconds"] == 0


@pytest.mark.gen_test
async def test_writing_a_batch_twice_stores_each_publication_once(mongo_store):
    batch = [record(n) for n in range(1, 6)]
    await mongo_store.write_log(batch)
    await mongo_store.write_log([*batch, record(6)])
    assert await mongo_store.publications.count_documents({}) == 6


@pytest.mark.gen_test
async def test_log_reads_an_offset_range_in_order_either_way(mongo_store):
    await mongo_store.write_log([record(n) for n in range(1, 11)])
    forward = await mongo_store.read_log("log:a", "e1", 3, 7)
    assert [p.offset for p in forward] == [4, 5, 6, 7]
    backward = await mongo_store.read_log("log:a", "e1", 3, 7, reverse=True)
    assert [p.offset for p in backward] == [7, 6, 5, 4]
    assert await mongo_store.read_log("log:a", "other-epoch", 0, 10) == []


@pytest.mark.gen_test
async def test_log_gives_back_the_publication_as_published(mongo_store):
    pub = Publication(
        {1: b"\x00bin", "big": 2**64 - 1}, 7, ClientInfo("u", "c", {"a": 1}), None, "e"
    )
    await mongo_store.write_log([LogRecord.of("log:b", pub, time.time(), 0.0)])
    (back,) = await mongo_store.read_log("log:b", "e", 6, 7)
    assert back == pub


@pytest.mark.gen_test
async def test_rows_get_an_expiry_date_from_the_namespace_retention(mongo_store):
    when = time.time()
    pub = Publication("x", 1, None, None, "e")
    await mongo_store.write_log(
        [LogRecord.of("log:a", pub, when, 3600.0), LogRecord.of("log:keep", pub, when, 0.0)]
    )
    kept = await mongo_store.publications.find_one({"channel": "log:a"})
    expected = datetime.fromtimestamp(when, UTC) + timedelta(hours=1)
    assert abs((kept["expire_at"] - expected).total_seconds()) < 0.01
    forever = await mongo_store.publications.find_one({"channel": "log:keep"})
    assert "expire_at" not in forever


@pytest.mark.gen_test
async def test_retained_state_keeps_the_newest_publication(mongo_store):
    now = time.time()
    await mongo_store.write_log(
        [record(2, when=now, retain=True), record(1, when=now - 5, retain=True)]
    )
    await mongo_store.write_log([record(0, when=now - 10, retain=True)])  # an older, late batch
    state = await mongo_store.get_state("log:a")
    assert state is not None and state.publication.offset == 2 and not state.explicit


@pytest.mark.gen_test
async def test_publications_of_channels_without_retain_leave_no_state(mongo_store):
    await mongo_store.write_log([record(1)])
    assert await mongo_store.get_state("log:a") is None


@pytest.mark.gen_test
async def test_explicit_state_replaces_an_older_publication_state(mongo_store):
    await mongo_store.write_log([record(3, when=time.time() - 1, retain=True)])
    pub = Publication({"state": "set"}, 3, None, None, "e1")
    await mongo_store.set_state("log:a", pub, datetime.now(UTC))
    state = await mongo_store.get_state("log:a")
    assert state is not None and state.explicit and state.publication.data == {"state": "set"}
