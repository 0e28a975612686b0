"""History and recovery past the broker's window, from the MongoDB log; retained state.

Each test runs on the memory and the Redis broker, with the session's real
MongoDB server. The `log` namespace keeps 3 publications in the broker and
everything in MongoDB.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tornado.ioloop import IOLoop
from wsfan.broker.base import HistoryQuery
from wsfan.channel_log import ChannelLog
from wsfan.compose import build_node
from wsfan.config import Settings
from wsfan.embedded import free_port
from wsfan.node import Node
from wsfan.protocol import Encoding, StreamPosition
from wsfan.store.mongo import MongoStore

from tests.api_client import ApiCaller

LOG = {"history_size": 3, "persist": True, "allow_anonymous": True, "allow_publish": True}
pytestmark = pytest.mark.settings(
    namespaces={"log": LOG, "state": {**LOG, "retained": True}},
    persist={"flush_interval": 30.0},  # written when a test flushes, not before
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


async def publish(node: Node, channel: str, count: int) -> str:
    for n in range(count):
        position = await node.publish(channel, {"n": n + 1})
    return position.epoch


def offsets(pubs: list[dict]) -> list[int]:
    return [p["offset"] for p in pubs]


@pytest.mark.gen_test
async def test_history_older_than_the_broker_window_comes_from_the_log(client, node, durable):
    epoch = await publish(node, "log:a", 10)
    await durable.writer.flush()
    c = await client()
    result = await c.result(
        "history", {"channel": "log:a", "since": {"offset": 1, "epoch": epoch}, "limit": -1}
    )
    assert offsets(result["publications"]) == list(range(2, 11))
    assert [p["data"]["n"] for p in result["publications"]] == list(range(2, 11))
    assert result["offset"] == 10 and result["epoch"] == epoch


@pytest.mark.gen_test
async def test_publications_not_yet_written_to_the_log_come_from_the_broker(client, node, durable):
    epoch = await publish(node, "log:a", 6)
    await durable.writer.flush()
    await publish(node, "log:a", 2)  # queued, not written: offsets 7 and 8 only in the broker
    c = await client()
    since = {"offset": 2, "epoch": epoch}
    result = await c.result("history", {"channel": "log:a", "since": since, "limit": -1})
    assert offsets(result["publications"]) == [3, 4, 5, 6, 7, 8]


@pytest.mark.gen_test
async def test_history_limit_is_applied_across_the_log_and_the_broker(client, node, durable):
    epoch = await publish(node, "log:a", 10)
    await durable.writer.flush()
    c = await client()
    since = {"offset": 1, "epoch": epoch}
    result = await c.result("history", {"channel": "log:a", "since": since, "limit": 4})
    assert offsets(result["publications"]) == [2, 3, 4, 5]


@pytest.mark.gen_test
async def test_reverse_history_pages_back_past_the_broker_window(client, node, durable):
    epoch = await publish(node, "log:a", 10)
    await durable.writer.flush()
    c = await client()
    since = {"offset": 10, "epoch": epoch}
    params = {"channel": "log:a", "since": since, "limit": 5, "reverse": True}
    result = await c.result("history", params)
    assert offsets(result["publications"]) == [9, 8, 7, 6, 5]


@pytest.mark.gen_test
async def test_recovery_after_a_long_disconnect_uses_the_log(client, node, durable):
    epoch = await publish(node, "log:a", 2)
    await publish(node, "log:a", 8)
    await durable.writer.flush()
    c = await client()
    params = {"channel": "log:a", "recover": True, "offset": 2, "epoch": epoch}
    result = await c.result("subscribe", params)
    assert result["recovered"] is True
    assert offsets(result["publications"]) == list(range(3, 11))


@pytest.mark.gen_test
async def test_a_hole_in_the_log_makes_the_position_unrecoverable(
    client, node, durable, mongo_store
):
    epoch = await publish(node, "log:a", 10)
    await durable.writer.flush()
    await mongo_store.publications.delete_one({"channel": "log:a", "offset": 4})
    c = await client()
    params = {"channel": "log:a", "recover": True, "offset": 1, "epoch": epoch}
    result = await c.result("subscribe", params)
    assert result["recovered"] is False and "publications" not in result
    reply = await c.call(
        "history", {"channel": "log:a", "since": {"offset": 1, "epoch": epoch}, "limit": -1}
    )
    assert reply["error"]["code"] == 112


@pytest.mark.gen_test
async def test_another_epoch_is_not_served_from_the_log(client, node, durable):
    await publish(node, "log:a", 10)
    await durable.writer.flush()
    c = await client()
    params = {"channel": "log:a", "recover": True, "offset": 1, "epoch": "an-old-epoch"}
    assert (await c.result("subscribe", params))["recovered"] is False


@pytest.mark.gen_test
async def test_channels_without_persist_write_nothing_to_the_log(node, durable, mongo_store):
    await publish(node, "news", 3)
    await durable.writer.flush()
    assert await mongo_store.publications.count_documents({}) == 0


@pytest.mark.gen_test
async def test_a_new_subscriber_gets_the_retained_latest_publication(client, node):
    await publish(node, "state:a", 3)
    c = await client()
    result = await c.result("subscribe", {"channel": "state:a"})
    assert [p["data"] for p in result["publications"]] == [{"n": 3}]


@pytest.mark.gen_test
async def test_retained_state_outlives_the_broker_window(client, node, durable, settings):
    await publish(node, "state:a", 1)
    await durable.writer.flush()
    await node.broker.remove_history("state:a")
    c = await client()
    result = await c.result("subscribe", {"channel": "state:a"})
    assert [p["data"] for p in result["publications"]] == [{"n": 1}]


@pytest.mark.gen_test
async def test_an_explicit_state_is_retained_until_the_next_publication(client, node):
    await publish(node, "state:a", 2)
    await node.reads.set_retained_state("state:a", {"whole": "state"})
    first = await (await client()).result("subscribe", {"channel": "state:a"})
    assert [p["data"] for p in first["publications"]] == [{"whole": "state"}]
    assert "offset" not in first["publications"][0]
    await node.publish("state:a", {"n": 3})
    second = await (await client()).result("subscribe", {"channel": "state:a"})
    assert [p["data"] for p in second["publications"]] == [{"n": 3}]


@pytest.mark.gen_test
async def test_channels_without_retained_hand_new_subscribers_nothing(client, node):
    await publish(node, "log:a", 2)
    result = await (await client()).result("subscribe", {"channel": "log:a"})
    assert "publications" not in result


@pytest.mark.gen_test(timeout=20)
@pytest.mark.settings(namespaces={"log": LOG}, persist={"read_timeout": 0.3, "write_timeout": 0.3})
async def test_an_unreachable_mongodb_delays_neither_publishing_nor_history(
    client, settings, tmp_path
):
    dead = MongoStore(f"mongodb://127.0.0.1:{free_port()}/?directConnection=true", "x", 0.2)
    node = build_node(settings, durable=ChannelLog(dead, settings.persist, tmp_path / "spill"))
    await node.start()
    started = time.monotonic()
    epoch = await publish(node, "log:a", 10)
    assert time.monotonic() - started < 0.5
    # Nothing reached the log, so the broker still holds all of it, past its window.
    found = await node.reads.history("log:a", HistoryQuery(StreamPosition(1, epoch), -1))
    assert [p.offset for p in found.publications] == list(range(2, 11))
    assert time.monotonic() - started < 2
    await node.close()
    await dead.close()


@pytest.mark.gen_test
@pytest.mark.parametrize("encoding", [Encoding.JSON], ids=["json"])
async def test_the_server_api_sets_and_reads_the_retained_state(
    client, node, http_server, http_client, http_port
):
    api = ApiCaller(http_client, f"http://127.0.0.1:{http_port}/api")
    await publish(node, "state:a", 1)
    first = await api.result("state_get", {"channel": "state:a"})
    assert first["publication"]["data"] == {"n": 1}
    await api.result("state_set", {"channel": "state:a", "data": {"whole": "state"}})
    got = await api.result("state_get", {"channel": "state:a"})
    assert got["publication"] == {"data": {"whole": "state"}}
    result = await (await client()).result("subscribe", {"channel": "state:a"})
    assert result["publications"] == [{"data": {"whole": "state"}}]
    refused = await api.call("state_set", {"channel": "log:a", "data": 1})
    assert refused["error"]["code"] == 108
