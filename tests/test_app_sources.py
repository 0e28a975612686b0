"""Channel sources (server/app/sources.py): on the memory broker and on the session's
Valkey, with one node and two; in-process subscribers (tests/app_channels.py). The
SIGKILL takeover is in tests/test_app_processes.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from tornado.ioloop import IOLoop
from wsfan.app.channel_services import ChannelServices, attach
from wsfan.app.sources import LEASE_NAME
from wsfan.broker.base import HistoryQuery
from wsfan.broker.memory import MemoryBroker
from wsfan.broker.redis import RedisBroker
from wsfan.broker.redis_leases import lease_key
from wsfan.compose import build_node
from wsfan.config import Settings
from wsfan.node import Node
from wsfan.protocol import Publication

from tests.app_channels import Subscriber, wait_until
from tests.conftest import ACROSS_REDIS, TIMEOUT_SCALE

TAKEOVER = 0.6
NAMESPACES = {"ticker": {"history_size": 100}, "live": {"history_size": 0}}
pytestmark = pytest.mark.settings(app={"source_takeover": TAKEOVER}, namespaces=NAMESPACES)


class Feed:
    """A source the test drives: yields what the test puts in `items` (raises an
    exception put there); records each start's last publication, and stops."""

    def __init__(self) -> None:
        self.items: asyncio.Queue[Any] = asyncio.Queue()
        self.starts: list[tuple[str, Any]] = []
        self.running = 0
        self.stops = 0

    async def __call__(self, channel: str, last: Publication | None) -> AsyncIterator[Any]:
        self.starts.append((channel, None if last is None else last.data))
        self.running += 1
        try:
            while True:
                item = await self.items.get()
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            self.running -= 1
            self.stops += 1


@pytest.fixture
def feed() -> Feed:
    return Feed()


@pytest.fixture
def services(node: Node, feed: Feed, io_loop: IOLoop) -> Iterator[ChannelServices]:
    attached = attach(node, sources={"ticker:*": feed})
    assert attached is not None
    yield attached
    io_loop.run_sync(attached.close)


async def occupy(node: Node, channel: str = "ticker:eur") -> Subscriber:
    subscriber = Subscriber()
    await node.add_subscriber(channel, subscriber)  # type: ignore[arg-type]
    return subscriber


async def top(node: Node, channel: str = "ticker:eur") -> int:
    return (await node.reads.history(channel, HistoryQuery())).position.offset


@pytest.mark.gen_test(timeout=30)
async def test_a_source_runs_while_its_channel_has_subscribers_publishing_what_it_yields(
    node, services, feed
):
    sub = await occupy(node)
    await occupy(node)
    await wait_until(lambda: feed.running == 1)
    feed.items.put_nowait({"price": 1})
    feed.items.put_nowait({"price": 2})
    await wait_until(lambda: sub.data() == [{"price": 1}, {"price": 2}])
    assert [p.offset for p in sub.publications] == [1, 2]  # history applies
    assert feed.starts == [("ticker:eur", None)]


@pytest.mark.gen_test(timeout=30)
async def test_a_source_stops_when_its_channels_last_subscriber_leaves(node, services, feed):
    a, b = await occupy(node), await occupy(node)
    await wait_until(lambda: feed.running == 1)
    await node.remove_subscriber("ticker:eur", a)
    assert feed.running == 1
    await node.remove_subscriber("ticker:eur", b)
    await wait_until(lambda: feed.running == 0 and feed.stops == 1)


@pytest.mark.gen_test(timeout=30)
async def test_a_starting_source_is_given_the_channels_last_publication(node, services, feed):
    await node.publish("ticker:eur", {"price": 7})
    await node.publish("ticker:eur", {"price": 8})
    await occupy(node)
    await wait_until(lambda: feed.starts == [("ticker:eur", {"price": 8})])


@pytest.mark.gen_test(timeout=30)
async def test_a_source_of_a_channel_without_history_is_given_none(node, feed):
    services = attach(node, sources={"live:*": feed})
    assert services is not None
    try:
        await node.publish("live:eur", {"price": 7})
        await occupy(node, "live:eur")
        await wait_until(lambda: feed.starts == [("live:eur", None)])
    finally:
        await services.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_source_that_raises_is_logged_and_started_again_from_its_last_publication(
    node, services, feed, caplog
):
    await occupy(node)
    feed.items.put_nowait({"price": 1})
    feed.items.put_nowait(RuntimeError("feed broke"))
    await wait_until(lambda: len(feed.starts) == 2)
    assert feed.starts[1] == ("ticker:eur", {"price": 1})
    lines = [r.getMessage() for r in caplog.records if "feed broke" in r.getMessage()]
    assert len(lines) == 1 and "ticker:eur" in lines[0]


@pytest.mark.gen_test(timeout=30)
async def test_an_item_that_cannot_be_published_restarts_the_source(node, services, feed):
    await occupy(node)
    feed.items.put_nowait({1, 2})  # a set: neither JSON nor msgpack
    await wait_until(lambda: len(feed.starts) == 2)
    assert await top(node) == 0


@pytest.mark.gen_test(timeout=30)
async def test_a_channel_no_pattern_matches_runs_no_source(node, services, feed):
    await occupy(node, "quotes")
    await occupy(node, "ticker:usd")
    await wait_until(lambda: feed.running == 1)
    assert [channel for channel, _ in feed.starts] == ["ticker:usd"]


@pytest.mark.gen_test(timeout=30)
async def test_a_malformed_pattern_is_refused_when_attaching(node, feed):
    with pytest.raises(ValueError, match=r"'ticker:\['"):
        attach(node, sources={"ticker:[": feed})


async def steal(node: Node, channel: str) -> None:
    """Another owner takes the channel's source lease (as after this one's pause)."""
    if isinstance(node.broker, MemoryBroker):
        node.broker.leases._held[(channel, LEASE_NAME)] = ("thief", time.monotonic() + 60)
    else:
        assert isinstance(node.broker, RedisBroker)
        key = lease_key(node.broker.prefix, channel, LEASE_NAME)
        await node.broker.client.set(key, "thief", px=60_000)


@pytest.mark.gen_test(timeout=30)
async def test_a_source_whose_lease_was_taken_publishes_nothing_more_and_stops(
    node, services, feed
):
    await occupy(node)
    feed.items.put_nowait(1)
    await wait_until(lambda: feed.running == 1)
    await wait_until(lambda: feed.items.empty())
    await steal(node, "ticker:eur")
    feed.items.put_nowait(2)  # published at once, or the renewal notices first
    await wait_until(lambda: feed.running == 0)
    assert await top(node) == 1
    assert len(feed.starts) == 1  # not started again while another holds it


@pytest.mark.settings(app={"source_takeover": 60}, namespaces=NAMESPACES)
@pytest.mark.gen_test(timeout=30)
async def test_a_stale_owners_next_publish_is_refused_by_the_fence_and_it_stops(
    node, services, feed, caplog
):
    await occupy(node)
    await wait_until(lambda: feed.running == 1)
    await steal(node, "ticker:eur")  # its next renewal is 13 s away: only the fence stops it
    feed.items.put_nowait(1)
    await wait_until(lambda: feed.running == 0)
    assert await top(node) == 0
    assert any("another node holds it" in r.getMessage() for r in caplog.records)


# Two nodes on one Valkey -------------------------------------------------------


@pytest.fixture
def pair(settings: Settings, io_loop: IOLoop) -> Iterator[list[tuple[Node, Feed]]]:
    """Two started nodes sharing the test's Valkey prefix, each running `ticker:*`
    sources with a Feed of its own."""
    made: list[tuple[Node, Feed, ChannelServices]] = []
    for _ in range(2):
        node, feed = build_node(settings), Feed()
        io_loop.run_sync(node.start)
        services = attach(node, sources={"ticker:*": feed})
        assert services is not None
        made.append((node, feed, services))
    yield [(node, feed) for node, feed, _ in made]
    for node, _, services in made:
        io_loop.run_sync(services.close)
        io_loop.run_sync(node.close)


@pytest.mark.brokers(*ACROSS_REDIS)
@pytest.mark.gen_test(timeout=30)
async def test_a_source_runs_on_one_of_two_nodes_and_moves_when_its_subscribers_leave(pair):
    (a, a_feed), (b, b_feed) = pair
    a_sub = await occupy(a)
    await wait_until(lambda: a_feed.running == 1)
    b_sub = await occupy(b)
    a_feed.items.put_nowait({"n": 1})
    await wait_until(lambda: b_sub.data() == [{"n": 1}])
    assert b_feed.starts == []  # b has subscribers too, but a holds the source
    await a.remove_subscriber("ticker:eur", a_sub)
    took = await wait_until(lambda: b_feed.running == 1)
    assert took <= TAKEOVER * TIMEOUT_SCALE
    assert a_feed.running == 0
    assert b_feed.starts == [("ticker:eur", {"n": 1})]
    b_feed.items.put_nowait({"n": 2})
    await wait_until(lambda: [p.offset for p in b_sub.publications] == [1, 2])


@pytest.mark.gen_test(timeout=30)
async def test_a_source_that_never_awaits_does_not_hold_the_event_loop(node: Node):
    stopped = asyncio.Event()

    async def flood(channel: str, last: Publication | None) -> AsyncIterator[int]:
        n = 0
        try:
            while True:  # no await of its own
                n += 1
                yield n
        finally:
            stopped.set()

    turns = 0

    async def count_turns() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    services = attach(node, sources={"ticker:*": flood})
    assert services is not None
    counting = asyncio.get_running_loop().create_task(count_turns())
    try:
        sub = await occupy(node)
        await wait_until(lambda: len(sub.publications) >= 50)
        assert turns >= len(sub.publications) // 2  # the loop turns between items
        await node.remove_subscriber("ticker:eur", sub)  # type: ignore[arg-type]
        await wait_until(stopped.is_set)
    finally:
        counting.cancel()
        await services.close()
