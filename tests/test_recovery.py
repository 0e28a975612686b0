"""Subscribe with recovery: exactly the missed publications, then live ones with no gap
and no duplicate; an unrecoverable position is reported, never papered over."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from centrifuge import StreamPosition, SubscriptionState
from tornado.ioloop import IOLoop
from wsfan.broker import create_broker
from wsfan.broker.base import (
    Broker,
    BrokerEventHandler,
    HistoryOptions,
    HistoryQuery,
    HistoryResult,
)
from wsfan.compose import build_node
from wsfan.config import Settings
from wsfan.errors import Disconnect, DisconnectCode
from wsfan.node import Node
from wsfan.protocol import ClientInfo

from tests.test_sdk_python import CHANNEL, TEST_TIMEOUT, sdk_client, subscribed, until


async def missed_while_away(c, node: Node, channel: str, count: int) -> dict[str, Any]:
    """Subscribes, then publishes `count` publications the client will have to recover."""
    position = await c.result("subscribe", {"channel": channel})
    await c.result("unsubscribe", {"channel": channel})
    for i in range(count):
        await node.publish(channel, i)
    return position


def recover(channel: str, position: dict[str, Any], **extra: Any) -> dict[str, Any]:
    params = {"channel": channel, "recover": True, "offset": position["offset"]}
    return params | {"epoch": position["epoch"]} | extra


@pytest.mark.gen_test
async def test_recovery_returns_exactly_the_missed_publications_in_order(client, node: Node):
    c = await client()
    await node.publish("news", "before")
    position = await missed_while_away(c, node, "news", 3)
    result = await c.result("subscribe", recover("news", position))
    assert result["was_recovering"] is True and result["recovered"] is True
    assert [p["offset"] for p in result["publications"]] == [2, 3, 4]
    assert [p["data"] for p in result["publications"]] == [0, 1, 2]
    assert result["offset"] == 4 and result["epoch"] == position["epoch"]


@pytest.mark.gen_test
async def test_recovery_with_nothing_missed_is_recovered_with_no_publications(client):
    c = await client()
    position = await c.result("subscribe", {"channel": "news"})
    await c.result("unsubscribe", {"channel": "news"})
    result = await c.result("subscribe", recover("news", position))
    assert result["recovered"] is True and "publications" not in result


@pytest.mark.gen_test
async def test_live_publications_continue_the_recovered_offsets(client, node: Node):
    c = await client()
    position = await missed_while_away(c, node, "news", 2)
    await c.result("subscribe", recover("news", position))
    await node.publish("news", "live")
    assert (await c.push("pub", "news"))["pub"]["offset"] == 3


@pytest.mark.gen_test
async def test_wrong_epoch_is_not_recovered_and_reports_current_position(client, node: Node):
    c = await client()
    position = await missed_while_away(c, node, "news", 2)
    result = await c.result("subscribe", recover("news", position | {"epoch": "other"}))
    assert result["was_recovering"] is True and result["recovered"] is False
    assert "publications" not in result
    assert result["offset"] == 2 and result["epoch"] == position["epoch"]


@pytest.mark.settings(channels={"history_size": 3})
@pytest.mark.gen_test
async def test_history_shorter_than_the_gap_is_not_recovered(client, node: Node):
    c = await client()
    position = await missed_while_away(c, node, "news", 5)
    result = await c.result("subscribe", recover("news", position))
    assert result["recovered"] is False and "publications" not in result


@pytest.mark.gen_test
async def test_position_ahead_of_the_stream_is_not_recovered(client, node: Node):
    c = await client()
    position = await c.result("subscribe", {"channel": "news"})
    await c.result("unsubscribe", {"channel": "news"})
    result = await c.result("subscribe", recover("news", position | {"offset": 10}))
    assert result["recovered"] is False


@pytest.mark.gen_test
async def test_unrecoverable_position_answers_112_when_client_asks_for_it(client, node: Node):
    c = await client()
    position = await missed_while_away(c, node, "news", 1)
    params = recover("news", position | {"epoch": "other"}, flag=2)
    assert (await c.call("subscribe", params))["error"]["code"] == 112


@pytest.mark.settings(client={"recovery_max_limit": 3})
@pytest.mark.gen_test
async def test_gap_of_exactly_recovery_max_limit_is_recovered(client, node: Node):
    c = await client()
    position = await missed_while_away(c, node, "news", 3)
    result = await c.result("subscribe", recover("news", position))
    assert result["recovered"] is True and len(result["publications"]) == 3


@pytest.mark.settings(client={"recovery_max_limit": 3})
@pytest.mark.gen_test
async def test_gap_over_recovery_max_limit_is_not_recovered(client, node: Node):
    c = await client()
    position = await missed_while_away(c, node, "news", 4)
    result = await c.result("subscribe", recover("news", position))
    assert result["recovered"] is False and "publications" not in result


class SlowHistory(Broker):
    """The test's real broker with a history read that takes longer, as under load:
    publications land both before the read sees the stream and after it returns."""

    def __init__(self, inner: Broker) -> None:
        self.inner = inner

    async def history(
        self, channel: str, query: HistoryQuery, options: HistoryOptions
    ) -> HistoryResult:
        await asyncio.sleep(0.02)
        result = await self.inner.history(channel, query, options)
        await asyncio.sleep(0.02)
        return result

    async def start(self, handler: BrokerEventHandler) -> None:
        await self.inner.start(handler)

    async def close(self) -> None:
        await self.inner.close()

    async def ping(self) -> None:
        await self.inner.ping()

    async def subscribe(self, channels: Sequence[str]) -> None:
        await self.inner.subscribe(channels)

    async def unsubscribe(self, channels: Sequence[str]) -> None:
        await self.inner.unsubscribe(channels)

    async def publish(
        self, channel: str, data: Any, options: HistoryOptions, info=None, tags=None, **kw
    ):
        return await self.inner.publish(channel, data, options, info, tags, **kw)

    async def publish_join(self, channel: str, info: ClientInfo) -> None:
        await self.inner.publish_join(channel, info)

    async def publish_leave(self, channel: str, info: ClientInfo) -> None:
        await self.inner.publish_leave(channel, info)

    async def remove_history(self, channel: str) -> None:
        await self.inner.remove_history(channel)

    async def publish_control(self, data: bytes) -> None:
        await self.inner.publish_control(data)

    async def log_stored(self, channel, epoch, runs, options) -> int:
        return await self.inner.log_stored(channel, epoch, runs, options)

    async def log_lagging(self, prefixes):
        return await self.inner.log_lagging(prefixes)

    async def restart_epoch(self, channel, epoch, acknowledged, options) -> str:
        return await self.inner.restart_epoch(channel, epoch, acknowledged, options)


@pytest.fixture
def node(settings: Settings, io_loop: IOLoop):
    broker, presence = create_broker(settings)
    node = build_node(settings, broker=SlowHistory(broker), presence=presence)
    io_loop.run_sync(node.start)
    yield node
    io_loop.run_sync(node.close)


@pytest.mark.parametrize("recovering", [True, False], ids=["recover", "fresh"])
@pytest.mark.gen_test(timeout=20)
async def test_publications_during_subscribe_arrive_once_each_with_no_gap(
    client, node: Node, recovering: bool
):
    c = await client()
    position = await missed_while_away(c, node, "news", 3)
    stop = asyncio.Event()

    async def publisher() -> None:
        while not stop.is_set():
            await node.publish("news", "live")
            await asyncio.sleep(0.001)

    task = asyncio.ensure_future(publisher())
    await asyncio.sleep(0.01)
    params = recover("news", position) if recovering else {"channel": "news"}
    result = await c.result("subscribe", params)
    await asyncio.sleep(0.05)
    stop.set()
    await task
    top = (await node.reads.history("news", HistoryQuery())).position.offset
    first = result["offset"] + 1
    live = [p["offset"] for p in await c.publications("news", top - result["offset"])]
    recovered = [p["offset"] for p in result.get("publications", [])]
    if recovering:
        assert recovered == list(range(position["offset"] + 1, first))
    assert live == list(range(first, top + 1))
    assert not c.pushes or all("pub" not in p for p in c.pushes)


# Answers bounded in size, with the official SDK (centrifuge-python) --------------------

BOUND = {"max_reply_bytes": 4096}


@pytest.mark.settings(client=BOUND)
@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_the_sdk_told_a_recovery_does_not_fit_reports_it_and_goes_on_live(
    ws_url: str, node: Node
):
    async with sdk_client(ws_url, node) as client:
        sub, events = await subscribed(client)
        session = node.hub.session(client.client_id)
        assert session is not None
        session.disconnect(Disconnect(DisconnectCode.FORCE_RECONNECT))
        for n in range(10):  # ~10 KB missed: more than one reply may carry
            await node.publish(CHANNEL, {"n": n, "pad": "x" * 1000})
        await until(lambda: len(events.subscribed) == 2)
        again = events.subscribed[1]
        assert (again.was_recovering, again.recovered) == (True, False)
        assert events.publications == []  # none recovered, none made up
        await node.publish(CHANNEL, "live")
        await until(lambda: [p.data for p in events.publications] == ["live"])
        assert sub.state is SubscriptionState.SUBSCRIBED


@pytest.mark.settings(client=BOUND)
@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_the_sdk_pages_a_history_cut_by_size_with_since(ws_url: str, node: Node):
    for n in range(20):  # ~10 KB: at least three replies of 4 KB
        await node.publish(CHANNEL, {"n": n, "pad": "x" * 500})
    async with sdk_client(ws_url, node) as client:
        sub, _ = await subscribed(client)
        got: list[int] = []
        since = None
        for _ in range(20):  # bounded: each page holds at least one publication
            page = await sub.history(limit=20, since=since)
            got += [p.data["n"] for p in page.publications]
            if not page.publications or page.publications[-1].offset == page.offset:
                break
            since = StreamPosition(page.publications[-1].offset, page.epoch)
    assert got == list(range(20))
