"""MongoDB going away while publications flow: delivery goes on, nothing is lost."""

from __future__ import annotations

import asyncio
import time

import pytest
from wsfan.channel_log import ChannelLog
from wsfan.compose import build_node
from wsfan.store.mongo import MongoStore

from tests.conftest import TIMEOUT_SCALE

LOG = {"history_size": 1000, "persist": True, "allow_anonymous": True}
# The production set-up: MongoDB is independent of the broker, and restarts are slow.
pytestmark = pytest.mark.brokers("redis")


@pytest.mark.gen_test(timeout=60 * TIMEOUT_SCALE)
@pytest.mark.settings(
    namespaces={"log": LOG},
    persist={"queue_max": 100, "batch_size": 20, "write_timeout": 0.3, "retry_delay_max": 0.2},
)
async def test_every_acknowledged_publication_is_stored_once_across_a_mongodb_restart(
    settings, restartable_mongo, mongo_db_name, tmp_path
):
    store = MongoStore(restartable_mongo.url, mongo_db_name, timeout=0.3)
    node = build_node(settings, durable=ChannelLog(store, settings.persist, tmp_path / "spill"))
    await node.start()
    acked: list[int] = []

    async def publish_for(seconds: float) -> float:
        """Publishes in a steady stream; returns the slowest publish, in seconds."""
        slowest, deadline = 0.0, time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.monotonic()
            acked.append((await node.publish("log:a", {"n": len(acked)})).offset)
            slowest = max(slowest, time.monotonic() - started)
            await asyncio.sleep(0.002)
        return slowest

    await publish_for(0.5)
    await asyncio.to_thread(restartable_mongo.stop)
    slowest_while_down = await publish_for(1.0)
    assert node.durable.stats.spilled > 0
    await asyncio.to_thread(restartable_mongo.start)
    await publish_for(0.5)
    await node.durable.writer.flush()
    stored = [
        doc["offset"] async for doc in store.publications.find({"channel": "log:a"}).sort("offset")
    ]
    assert stored == acked == list(range(1, len(acked) + 1))
    assert slowest_while_down < 0.25  # publishing never waited on the dead MongoDB
    await node.close()
    await store.close()


@pytest.mark.gen_test(timeout=30 * TIMEOUT_SCALE)
@pytest.mark.settings(namespaces={"log": LOG}, persist={"write_timeout": 0.3})
async def test_a_clean_shutdown_with_mongodb_down_spills_and_the_next_start_stores_it(
    settings, restartable_mongo, mongo_db_name, tmp_path
):
    store = MongoStore(restartable_mongo.url, mongo_db_name, timeout=0.3)
    await store.ensure_indexes()
    await asyncio.to_thread(restartable_mongo.stop)
    first = build_node(settings, durable=ChannelLog(store, settings.persist, tmp_path / "spill"))
    await first.start()
    epoch = ""
    for n in range(50):
        epoch = (await first.publish("log:a", {"n": n})).epoch
    await first.close()  # flush fails: the queue goes to a spill file
    assert list((tmp_path / "spill").iterdir())
    await asyncio.to_thread(restartable_mongo.start)
    second = build_node(settings, durable=ChannelLog(store, settings.persist, tmp_path / "spill"))
    await second.start()
    await second.durable.writer.flush()
    stored = [doc["offset"] async for doc in store.publications.find({"epoch": epoch})]
    assert sorted(stored) == list(range(1, 51))
    assert not list((tmp_path / "spill").iterdir())
    await second.close()
    await store.close()
