"""Join and leave pushes at scale: gathered into shared frames (nothing dropped,
order kept), and suppressed above a namespace's `join_leave_max_subscribers`
(counted on the delivering node) while presence still answers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from wsfan.node import Node
from wsfan.protocol import ClientInfo, Encoding

from tests.client import ProtoClient
from tests.conftest import TIMEOUT_SCALE

pytestmark = pytest.mark.parametrize("encoding", [Encoding.JSON, Encoding.MSGPACK])

WITH_PRESENCE = {"presence": True, "join_leave": True}  # off by default outside namespaces


def kind_of(push: dict[str, Any]) -> str:
    return next(k for k in push if k != "channel")


async def next_push(client: ProtoClient, channel: str) -> dict[str, Any]:
    """The next push of `channel`, whatever its kind (other messages are skipped)."""
    for i, push in enumerate(client.pushes):
        if push.get("channel") == channel:
            del client.pushes[i]
            return push
    while True:
        message = await client.recv()
        if message is None:
            raise ConnectionError("closed while waiting for a push")
        push = message.get("push")
        if push is not None and push.get("channel") == channel:
            return push


async def pushes_until_pub(client: ProtoClient, channel: str) -> list[dict[str, Any]]:
    """The pushes of `channel` before its next publication (which ends the list)."""
    seen: list[dict[str, Any]] = []
    while True:
        push = await next_push(client, channel)
        if "pub" in push:
            return seen
        seen.append(push)


async def marker(node: Node, channel: str) -> None:
    """A publication after everything sent to `channel` so far (same broker path)."""
    await node.publish(channel, {"marker": True})


@pytest.mark.settings(channels=WITH_PRESENCE)
@pytest.mark.gen_test(timeout=10 * TIMEOUT_SCALE)
async def test_a_burst_of_joins_reaches_a_subscriber_in_one_frame_in_order(client, node: Node):
    watcher = await client()
    await watcher.result("subscribe", {"channel": "room"})
    await marker(node, "room")
    await pushes_until_pub(watcher, "room")
    frames = watcher.frames
    for i in range(20):  # one burst, as a broker hands over what it read at once
        node.handle_join("room", ClientInfo(f"u{i}", f"c{i}"))
    joins = [(await watcher.push("join", "room"))["join"]["info"]["client"] for _ in range(20)]
    assert joins == [f"c{i}" for i in range(20)]
    assert watcher.frames - frames == 1


@pytest.mark.settings(channels=WITH_PRESENCE)
@pytest.mark.gen_test(timeout=15 * TIMEOUT_SCALE)
async def test_every_join_and_leave_of_concurrent_subscribers_arrives_in_order(client, node: Node):
    watcher = await client()
    await watcher.result("subscribe", {"channel": "room"})
    others = [await client() for _ in range(6)]
    await asyncio.gather(*(c.result("subscribe", {"channel": "room"}) for c in others))
    await asyncio.gather(*(c.result("unsubscribe", {"channel": "room"}) for c in others))
    expected = {c.client_id for c in others}
    events: list[tuple[str, str]] = []
    while len(events) < 2 * len(expected):
        push = await next_push(watcher, "room")
        kind = kind_of(push)
        if kind in ("join", "leave") and push[kind]["info"]["client"] in expected:
            events.append((kind, push[kind]["info"]["client"]))
    for client_id in expected:
        mine = [kind for kind, c in events if c == client_id]
        assert mine == ["join", "leave"]


async def subscribers(client, count: int) -> list[ProtoClient]:
    opened = [await client() for _ in range(count)]
    for c in opened:
        await c.result("subscribe", {"channel": "room"})
    return opened


async def joins_seen(node: Node, watcher: ProtoClient) -> list[str]:
    """Clients whose join `watcher` gets, after a join from elsewhere and a marker."""
    await node.broker.publish_join("room", ClientInfo("x", "from-elsewhere"))
    await node.broker.publish_leave("room", ClientInfo("x", "from-elsewhere"))
    await marker(node, "room")
    pushes = await pushes_until_pub(watcher, "room")
    return [p[kind_of(p)]["info"]["client"] for p in pushes if kind_of(p) in ("join", "leave")]


@pytest.mark.settings(channels={**WITH_PRESENCE, "join_leave_max_subscribers": 3})
@pytest.mark.gen_test(timeout=10 * TIMEOUT_SCALE)
async def test_a_channel_with_exactly_the_max_subscribers_gets_join_and_leave(client, node: Node):
    watcher, *_ = await subscribers(client, 3)
    seen = await joins_seen(node, watcher)
    assert seen.count("from-elsewhere") == 2  # its join and its leave


@pytest.mark.settings(channels={**WITH_PRESENCE, "join_leave_max_subscribers": 3})
@pytest.mark.gen_test(timeout=10 * TIMEOUT_SCALE)
async def test_a_channel_with_one_subscriber_past_the_max_gets_no_join_or_leave(client, node: Node):
    watcher, *_ = await subscribers(client, 4)
    assert "from-elsewhere" not in await joins_seen(node, watcher)


@pytest.mark.settings(channels={**WITH_PRESENCE, "join_leave_max_subscribers": 1})
@pytest.mark.gen_test(timeout=10 * TIMEOUT_SCALE)
async def test_presence_answers_past_the_join_leave_max(client, node: Node):
    opened = await subscribers(client, 3)
    presence = await opened[0].result("presence", {"channel": "room"})
    assert set(presence["presence"]) == {c.client_id for c in opened}
