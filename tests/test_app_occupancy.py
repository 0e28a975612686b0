"""Cluster-wide channel occupancy (server/app/occupancy.py): on the memory broker and
on the session's Valkey, with one node and with two nodes sharing it. Subscribers are
in-process (tests/app_channels.py); crashes are in tests/test_app_processes.py."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from tornado.ioloop import IOLoop
from wsfan.app.channel_services import ChannelServices, attach
from wsfan.broker.redis import RedisBroker
from wsfan.compose import build_node
from wsfan.config import ConfigError, Settings, load_settings
from wsfan.embedded import EmbeddedServer
from wsfan.node import Node

from tests.app_channels import Events, Subscriber, wait_until

FAST = {
    "vacate_delay": 0.2,
    "occupancy_lease": 0.6,
    "occupancy_sweep_interval": 0.05,
    "timeout": 0.3,
}
pytestmark = pytest.mark.settings(app=FAST)


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
def services(node: Node, events: Events, io_loop: IOLoop) -> Iterator[ChannelServices]:
    attached = attach(node, events.occupied, events.vacated)
    assert attached is not None
    io_loop.run_sync(attached.start)
    yield attached
    io_loop.run_sync(attached.close)


async def occupy(node: Node, channel: str = "news") -> Subscriber:
    subscriber = Subscriber()
    await node.add_subscriber(channel, subscriber)  # type: ignore[arg-type]
    return subscriber


@pytest.mark.gen_test(timeout=30)
async def test_the_first_subscriber_occupies_the_channel(node, services, events):
    await occupy(node)
    await occupy(node)
    await wait_until(lambda: events.of("news") == ["occupied"])


@pytest.mark.gen_test(timeout=30)
async def test_the_channel_is_vacated_vacate_delay_after_its_last_subscriber_left(
    node, services, events
):
    a, b = await occupy(node), await occupy(node)
    await wait_until(lambda: events.of("news") == ["occupied"])
    await node.remove_subscriber("news", a)  # type: ignore[arg-type]
    await node.remove_subscriber("news", b)  # type: ignore[arg-type]
    left = asyncio.get_running_loop().time()
    await wait_until(lambda: events.of("news") == ["occupied", "vacated"])
    assert asyncio.get_running_loop().time() - left >= FAST["vacate_delay"]


@pytest.mark.gen_test(timeout=30)
async def test_a_subscriber_back_within_the_delay_keeps_the_channel_occupied(
    node, services, events
):
    news, marker = await occupy(node, "news"), await occupy(node, "marker")
    await wait_until(lambda: len(events.seen) == 2)
    await node.remove_subscriber("news", news)  # type: ignore[arg-type]
    await node.remove_subscriber("marker", marker)  # type: ignore[arg-type]
    await occupy(node, "news")
    await wait_until(lambda: events.of("marker") == ["occupied", "vacated"])
    await marker_cycle(node, events.seen)  # one more vacate delay and sweep
    assert events.of("news") == ["occupied"]


@pytest.mark.gen_test(timeout=30)
async def test_a_handler_that_raises_is_logged_in_one_line_and_the_events_go_on(
    node: Node, events: Events, caplog: pytest.LogCaptureFixture
):
    async def broken(channel: str) -> None:
        raise RuntimeError("app bug")

    services = attach(node, broken, events.vacated)
    assert services is not None
    await services.start()
    try:
        sub = await occupy(node)
        await node.remove_subscriber("news", sub)  # type: ignore[arg-type]
        await wait_until(lambda: events.of("news") == ["vacated"])
    finally:
        await services.close()
    lines = [r for r in caplog.records if "app bug" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    assert "channel_occupied('news')" in lines[0].getMessage()
    assert lines[0].exc_info is None  # one line, no traceback


@pytest.mark.gen_test(timeout=30)
async def test_a_handler_that_hangs_is_cancelled_after_app_timeout(node: Node, events: Events):
    cancelled = asyncio.Event()

    async def hangs(channel: str) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    services = attach(node, hangs, events.vacated)
    assert services is not None
    await services.start()
    try:
        sub = await occupy(node)
        await node.remove_subscriber("news", sub)  # type: ignore[arg-type]
        await wait_until(cancelled.is_set)
        await wait_until(lambda: events.of("news") == ["vacated"])
    finally:
        await services.close()


@pytest.mark.gen_test(timeout=30)
async def test_nothing_registered_attaches_nothing(node: Node):
    assert attach(node) is None
    assert attach(node, sources={}) is None
    assert node.hub.channel_listener is None


# Two nodes on one Valkey -------------------------------------------------------

ON_VALKEY = pytest.mark.brokers("redis")


@pytest.fixture
def two(
    settings: Settings, io_loop: IOLoop
) -> Iterator[tuple[list[tuple[Node, ChannelServices]], list[tuple[str, ...]]]]:
    """Two started nodes sharing the test's Valkey prefix, each with its services,
    and the one event log both record into (events tagged "a" and "b")."""
    log: list[tuple[str, ...]] = []
    pairs = []
    for tag in ("a", "b"):
        node = build_node(settings)
        io_loop.run_sync(node.start)
        recorder = Events(tag, log)
        services = attach(node, recorder.occupied, recorder.vacated)
        assert services is not None
        io_loop.run_sync(services.start)
        pairs.append((node, services))
    yield pairs, log
    for node, services in pairs:
        io_loop.run_sync(services.close)
        io_loop.run_sync(node.close)


async def marker_cycle(node: Node, log: list[tuple[str, ...]]) -> None:
    """Occupy and leave channel "marker", and wait for its vacated: whatever was
    due a vacate delay and a sweep before has come by then."""

    def vacates() -> int:
        return [e[:2] for e in log].count(("vacated", "marker"))

    before = vacates()
    sub = await occupy(node, "marker")
    await node.remove_subscriber("marker", sub)  # type: ignore[arg-type]
    await wait_until(lambda: vacates() > before)


@ON_VALKEY
@pytest.mark.gen_test(timeout=30)
async def test_each_event_is_called_on_exactly_one_of_two_nodes_and_they_alternate(two):
    ((a, _), (b, _)), log = two
    for done in range(1, 4):
        subs = [(a, await occupy(a)), (b, await occupy(b))]
        await wait_until(lambda done=done: len(log) >= 2 * done - 1)
        for node, sub in subs:
            await node.remove_subscriber("news", sub)
        await wait_until(lambda done=done: len(log) >= 2 * done)
    await marker_cycle(a, log)
    assert [e[0] for e in log if e[1] == "news"] == ["occupied", "vacated"] * 3


@ON_VALKEY
@pytest.mark.gen_test(timeout=30)
async def test_a_node_that_closes_has_its_channels_vacated_by_the_other(two):
    ((a, a_services), _), log = two
    await occupy(a)
    await wait_until(lambda: [e[0] for e in log] == ["occupied"])
    await a_services.close()  # leaves its channels; b's sweep finishes the job
    await wait_until(lambda: [e[:2] for e in log] == [("occupied", "news"), ("vacated", "news")])
    assert log[1][2] == "b"


# The cost of nothing registered ---------------------------------------------------

CONNECTION_COMMANDS = ("info", "client", "hello", "ping", "select")
"""Commands a new pooled connection (or the count itself) may run: not the subscribe's."""


async def command_counts(node: Node) -> dict[str, int]:
    assert isinstance(node.broker, RedisBroker)
    stats: dict[str, Any] = await node.broker.client.info("commandstats")
    return {
        name: int(value["calls"])
        for key, value in stats.items()
        if not (name := key.removeprefix("cmdstat_")).startswith(CONNECTION_COMMANDS)
    }


async def subscribe_cost(node: Node, channel: str) -> dict[str, int]:
    """The Redis commands one local subscribe and unsubscribe run."""
    before = await command_counts(node)
    sub = await occupy(node, channel)
    await node.remove_subscriber(channel, sub)  # type: ignore[arg-type]
    after = await command_counts(node)
    return {n: after[n] - before.get(n, 0) for n in after if after[n] != before.get(n, 0)}


@ON_VALKEY
@pytest.mark.settings(app=FAST, api={"node_info_interval": 3600})
@pytest.mark.gen_test(timeout=30)
async def test_with_nothing_registered_a_subscribe_runs_no_extra_redis_command(node: Node):
    assert await subscribe_cost(node, "plain") == {"subscribe": 1, "unsubscribe": 1}
    services = attach(node, Events().occupied)
    assert services is not None
    await services.start()
    try:  # the same count sees occupancy's work once something is registered
        assert await subscribe_cost(node, "watched") != {"subscribe": 1, "unsubscribe": 1}
    finally:
        await services.close()


# Limits and failures ----------------------------------------------------------------


@pytest.mark.settings(app={**FAST, "vacate_delay": 0})
@pytest.mark.gen_test(timeout=30)
async def test_with_no_vacate_delay_the_channel_is_vacated_as_its_last_subscriber_leaves(
    node, services, events
):
    sub = await occupy(node)
    await wait_until(lambda: events.of("news") == ["occupied"])
    await node.remove_subscriber("news", sub)  # type: ignore[arg-type]
    took = await wait_until(lambda: events.of("news") == ["occupied", "vacated"])
    assert took < FAST["occupancy_sweep_interval"] * 4  # not left to a sweep or a lease


@pytest.mark.parametrize(
    ("key", "value"),
    [("occupancy_lease", 0.02), ("occupancy_sweep_interval", 0.005), ("vacate_delay", -1)],
)
def test_occupancy_settings_below_their_range_are_refused_naming_the_key(key: str, value: float):
    with pytest.raises(ConfigError, match=rf"app\.{key}"):
        load_settings(env={}).with_overrides(app={key: value})


@pytest.fixture
def own_valkey_node(
    embedded_redis: EmbeddedServer, redis_prefix: str, io_loop: IOLoop
) -> Iterator[Node]:
    """A started node on a Valkey of this test's own (to stop and start again)."""
    settings = load_settings(env={}).with_overrides(
        broker={"type": "redis"},
        redis={"url": embedded_redis.url, "prefix": redis_prefix, "command_timeout": 0.5},
        app=FAST,
    )
    node = build_node(settings)
    io_loop.run_sync(node.start)
    yield node
    io_loop.run_sync(node.close)


@pytest.mark.gen_test(timeout=60)
async def test_through_a_redis_outage_the_service_logs_and_repairs_its_leases(
    own_valkey_node: Node, embedded_redis: EmbeddedServer, caplog: pytest.LogCaptureFixture
):
    node, events = own_valkey_node, Events()
    services = attach(node, events.occupied, events.vacated)
    assert services is not None
    await services.start()
    try:
        sub = await occupy(node)
        await wait_until(lambda: events.of("news") == ["occupied"])
        await asyncio.to_thread(embedded_redis.stop)

        def failures() -> list[str]:
            return [r.getMessage() for r in caplog.records if "channel occupancy" in r.getMessage()]

        await wait_until(lambda: len(failures()) == 1, 10)  # renewals fail: one line
        await asyncio.to_thread(embedded_redis.start)  # empty: it kept nothing
        # A renewal joins again; the state was lost, so occupied comes again (README).
        await wait_until(lambda: events.of("news") == ["occupied", "occupied"], 20)
        await node.remove_subscriber("news", sub)  # type: ignore[arg-type]
        await wait_until(lambda: events.of("news") == ["occupied", "occupied", "vacated"], 20)
    finally:
        await services.close()
    assert len(failures()) == 1  # within log.repeat_interval
