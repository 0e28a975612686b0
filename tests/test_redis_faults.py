"""Redis stopped and restarted under a running server: it stays up, answers clearly
meanwhile, and afterwards serves every connection it had, losing nothing it acknowledged."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from wsfan.api.cluster_commands import ClusterCommands
from wsfan.config import Settings, load_settings
from wsfan.embedded import EmbeddedValkey
from wsfan.errors import ReplyError
from wsfan.node import Node

from tests.conftest import TIMEOUT_SCALE
from tests.test_sdk_python import CHANNEL, SubEvents, sdk_client, subscribed, until

TEST_TIMEOUT = 40 * TIMEOUT_SCALE


@pytest.fixture(params=[True, False], ids=["persistent", "volatile"])
def valkey(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EmbeddedValkey]:
    """This test's own Valkey, to stop and start; with or without an append-only file."""
    with EmbeddedValkey(tmp_path / "valkey", persist=request.param) as server:
        yield server


@pytest.fixture
def settings(valkey: EmbeddedValkey) -> Settings:
    return load_settings(env={}).with_overrides(
        broker={"type": "redis"},
        redis={
            "url": valkey.url,
            "prefix": "faults",
            "connect_timeout": 0.5,
            "command_timeout": 1.0,
            "reconnect_delay_max": 0.3,
        },
        # off outside namespaces in config/default.toml; every method is tried here
        channels={"presence": True, "join_leave": True},
    )


async def restarted(valkey: EmbeddedValkey, node: Node) -> None:
    """Stop Valkey, keep it down a moment, start it on the same port, wait for pub/sub."""
    reconnects = node.broker.pubsub.reconnects  # type: ignore[attr-defined]
    await asyncio.to_thread(valkey.stop)
    await asyncio.sleep(0.3)
    await asyncio.to_thread(valkey.start)
    await until(lambda: node.broker.pubsub.reconnects > reconnects, 10 * TIMEOUT_SCALE)  # type: ignore[attr-defined]


@pytest.mark.parametrize("valkey", [True], indirect=True, ids=["persistent"])
@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_pooled_connections_idle_across_a_restart_do_not_fail_commands_after_it(
    valkey: EmbeddedValkey, node: Node
):
    await asyncio.gather(*(node.publish(f"c{i}", i) for i in range(8)))  # several connections
    await restarted(valkey, node)
    await asyncio.gather(*(node.publish(f"c{i}", i) for i in range(8)))


@pytest.mark.parametrize("valkey", [True], indirect=True, ids=["persistent"])
@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_the_control_stream_works_again_after_a_restart(valkey: EmbeddedValkey, node: Node):
    await restarted(valkey, node)
    assert [n["uid"] for n in node.cluster.nodes()] == [node.cluster.uid]
    assert await ClusterCommands(node).channels() == {}  # the survey goes out and comes back


@pytest.mark.parametrize("valkey", [True], indirect=True, ids=["persistent"])
@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_commands_answer_error_100_while_redis_is_down_and_work_after(
    valkey: EmbeddedValkey, client, node: Node
):
    c = await client()
    await c.result("subscribe", {"channel": CHANNEL})
    await asyncio.to_thread(valkey.stop)
    for method, params in (
        ("publish", {"channel": CHANNEL, "data": "lost"}),
        ("subscribe", {"channel": "other"}),
        ("history", {"channel": CHANNEL}),
        ("presence", {"channel": CHANNEL}),
    ):
        error = (await c.call(method, params))["error"]
        assert error["code"] == 100 and error["temporary"] is True, method
    await asyncio.to_thread(valkey.start)
    await until(lambda: node.broker.pubsub.connected, 10 * TIMEOUT_SCALE)  # type: ignore[attr-defined]
    await c.result("publish", {"channel": "other", "data": "back"})
    await c.result("subscribe", {"channel": "other"})


@pytest.mark.parametrize("valkey", [True], indirect=True, ids=["persistent"])
@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_every_acknowledged_publication_reaches_every_client_across_a_restart(
    ws_url: str, valkey: EmbeddedValkey, node: Node
):
    acked: list[int] = []
    failed: set[int] = set()
    stop = asyncio.Event()

    async def publisher() -> None:
        for i in range(100_000):  # bounded; ends when told
            if stop.is_set():
                return
            try:
                await node.publish(CHANNEL, i)
                acked.append(i)
            except ReplyError:
                # Not acknowledged, so not owed to anyone. Its outcome is unknown:
                # Redis may have applied it and gone away before answering.
                failed.add(i)
            await asyncio.sleep(0.005)

    async with (
        sdk_client(ws_url, node) as c1,
        sdk_client(ws_url, node) as c2,
        sdk_client(ws_url, node) as c3,
    ):
        watchers = [await subscribed(c) for c in (c1, c2, c3)]
        ids = [c.client_id for c in (c1, c2, c3)]
        task = asyncio.ensure_future(publisher())
        await until(lambda: len(acked) >= 20)
        await restarted(valkey, node)
        after = len(acked)
        await until(lambda: len(acked) >= after + 20)
        stop.set()
        await task
        last = acked[-1]
        for _, events in watchers:
            await until(
                lambda ev=events: any(p.data == last for p in ev.publications), 10 * TIMEOUT_SCALE
            )
            received = [p.data for p in events.publications]
            assert set(acked) <= set(received)  # every acknowledged one arrived
            assert set(received) - set(acked) <= failed  # extras are unknown outcomes only
            assert received == sorted(set(received))  # in order, no duplicate
            offsets = [p.offset for p in events.publications]
            assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))
        assert [c.client_id for c in (c1, c2, c3)] == ids  # same connections throughout


@pytest.mark.parametrize("valkey", [False], indirect=True, ids=["volatile"])
@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_history_lost_with_redis_is_reported_as_not_recovered(
    ws_url: str, valkey: EmbeddedValkey, node: Node
):
    async with sdk_client(ws_url, node) as client:
        _, events = await subscribed(client)
        first_epoch = events.subscribed[0].stream_position.epoch
        await node.publish(CHANNEL, "before")
        await until(lambda: len(events.publications) == 1)
        await restarted(valkey, node)
        await until(lambda: len(events.subscribed) == 2)  # told to resubscribe (2500)
        again: SubEvents = events
        ctx = again.subscribed[1]
        assert ctx.was_recovering is True and ctx.recovered is False
        assert ctx.stream_position.epoch != first_epoch
        await node.publish(CHANNEL, "after")
        await until(lambda: [p.data for p in events.publications] == ["before", "after"])


@pytest.mark.parametrize("valkey", [False], indirect=True, ids=["volatile"])
@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_a_killed_redis_started_again_serves_the_same_connections(
    valkey: EmbeddedValkey, client, node: Node
):
    c = await client()
    await c.result("subscribe", {"channel": CHANNEL})
    reconnects = node.broker.pubsub.reconnects  # type: ignore[attr-defined]
    await asyncio.to_thread(valkey.kill)
    assert (await c.call("publish", {"channel": CHANNEL, "data": "lost"}))["error"]["code"] == 100
    await asyncio.to_thread(valkey.start)
    await until(lambda: node.broker.pubsub.reconnects > reconnects, 10 * TIMEOUT_SCALE)  # type: ignore[attr-defined]
    await c.push("unsubscribe", CHANNEL)  # a new epoch: the client is told to resubscribe
    await c.result("subscribe", {"channel": CHANNEL})
    await c.result("publish", {"channel": CHANNEL, "data": "back"})
    assert (await c.push("pub", CHANNEL))["pub"]["data"] == "back"
