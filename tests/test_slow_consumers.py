"""A client that stops reading is closed with 3008 and delays nobody else."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from wsfan.node import Node
from wsfan.protocol import Encoding

from tests.conftest import TIMEOUT_SCALE
from tests.raw_ws import RawWebSocket

PAD = "x" * 4000
READERS = 5
MAX_PUBLICATIONS = 20000  # ~80 MB: far more than any loopback socket buffers


async def stalled_subscriber(port: int, channel: str) -> RawWebSocket:
    """Connects, subscribes, reads the replies, then never reads again."""
    ws = await RawWebSocket.open(port, rcvbuf=4096)
    commands = [{"id": 1, "connect": {}}, {"id": 2, "subscribe": {"channel": channel}}]
    await ws.send("\n".join(json.dumps(c) for c in commands).encode())
    seen: set[int] = set()
    while 2 not in seen:
        frame = await asyncio.wait_for(ws.recv_frame(), 5 * TIMEOUT_SCALE)
        assert frame is not None
        seen.update(json.loads(line).get("id", 0) for line in frame[1].decode().split("\n"))
    return ws


@pytest.mark.settings(client={"max_unsent_bytes": 65536})
@pytest.mark.gen_test(timeout=60 * TIMEOUT_SCALE)
async def test_stalled_client_is_closed_with_3008_while_others_keep_receiving(
    open_client, node: Node, http_port: int
):
    readers = []
    for _ in range(READERS):
        c = await open_client(Encoding.JSON)
        await c.connect()
        await c.result("subscribe", {"channel": "news"})
        readers.append(c)
    stalled = await stalled_subscriber(http_port, "news")
    try:
        assert node.hub.num_subscriptions == READERS + 1
        latencies: list[float] = []

        async def read_all(c) -> list[int]:
            got: list[int] = []
            while True:
                pub = (await c.push("pub", "news"))["pub"]
                if pub["data"] == "end":
                    break
                got.append(pub["data"]["i"])
                latencies.append(time.monotonic() - pub["data"]["t"])
            return got

        reading = [asyncio.ensure_future(read_all(c)) for c in readers]
        # Publish until the kernel's buffers toward the stalled client are full and
        # the server closes it, then some more.
        published, after = 0, 0
        while published < MAX_PUBLICATIONS and after < 50:
            await node.publish("news", {"i": published, "t": time.monotonic(), "pad": PAD})
            published += 1
            if node.hub.num_subscriptions == READERS:
                after += 1
            if published % 10 == 0:
                await asyncio.sleep(0.005)
        await node.publish("news", "end")
        received = await asyncio.wait_for(asyncio.gather(*reading), 30 * TIMEOUT_SCALE)

        assert after == 50, f"the stalled client was still open after {published} publications"
        assert all(got == list(range(published)) for got in received)
        # Waiting on the stalled socket would hold deliveries for good; a generous
        # bound tells "never waited" from "waited" on a busy machine.
        assert max(latencies) < 2 * TIMEOUT_SCALE
        assert await asyncio.wait_for(stalled.close_code(), 10 * TIMEOUT_SCALE) == 3008
    finally:
        stalled.close()


@pytest.mark.settings(client={"max_unsent_bytes": 65536})
@pytest.mark.gen_test(timeout=30 * TIMEOUT_SCALE)
async def test_a_history_larger_than_the_budget_is_cut_and_paged_on_with_since(client, node: Node):
    c = await client()
    for i in range(30):  # ~120 KB: twice the budget
        top = await node.publish("news", {"i": i, "pad": PAD})
    got: list[int] = []
    pages = 0
    params: dict[str, object] = {"channel": "news", "limit": 30}
    while True:
        result = await c.result("history", params)
        assert (result["offset"], result["epoch"]) == (top.offset, top.epoch)
        if not result.get("publications"):
            break
        pages += 1
        got += [p["data"]["i"] for p in result["publications"]]
        last = result["publications"][-1]["offset"]
        params = {**params, "since": {"offset": last, "epoch": result["epoch"]}}
    assert got == list(range(30))
    assert pages >= 2
    assert node.hub.num_clients == 1  # never closed as slow


@pytest.mark.settings(client={"max_unsent_bytes": 64 << 20})
@pytest.mark.gen_test(timeout=30 * TIMEOUT_SCALE)
async def test_a_reader_that_pauses_gets_everything_held_meanwhile_in_fewer_frames(
    node: Node, ws_url: str, http_port: int
):
    reader = await stalled_subscriber(http_port, "news")
    try:
        # Enough to fill the kernel's buffers toward the paused reader, then more,
        # all within max_unsent_bytes: the rest waits in the session.
        count = 3000  # ~12 MB, past what loopback sockets buffer
        for i in range(count):
            await node.publish("news", {"i": i, "pad": PAD})
            if i % 20 == 0:
                await asyncio.sleep(0.001)
        assert node.hub.num_subscriptions == 1  # held back, not closed
        got: list[int] = []
        frames = 0
        while len(got) < count:
            frame = await asyncio.wait_for(reader.recv_frame(), 10 * TIMEOUT_SCALE)
            assert frame is not None
            frames += 1
            for line in frame[1].decode().split("\n"):
                pub = json.loads(line).get("push", {}).get("pub")
                if pub is not None:
                    got.append(pub["data"]["i"])
        assert got == list(range(count))
        assert frames < count  # what was held left together
    finally:
        reader.close()
