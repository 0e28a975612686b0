"""A bounded soak: thousands of connect/subscribe/disconnect cycles leak neither
file descriptors nor (beyond a stated bound) memory."""

from __future__ import annotations

import asyncio
import gc
import os
from pathlib import Path

import pytest
from wsfan.node import Node
from wsfan.protocol import Encoding

from tests.client import ProtoClient
from tests.conftest import TIMEOUT_SCALE

CYCLES = 2000
FD_MARGIN = 5  # pooled connections to the broker may differ by a few
RSS_BOUND = 20 * 1024 * 1024  # bytes of growth allowed after warm-up


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.brokers("memory")
@pytest.mark.gen_test(timeout=180 * TIMEOUT_SCALE)
async def test_connect_subscribe_disconnect_cycles_return_fds_and_bound_memory(
    ws_url: str, node: Node
):
    async def cycle(i: int) -> None:
        encoding = Encoding.JSON if i % 2 else Encoding.MSGPACK
        c = await ProtoClient.open(ws_url, encoding, timeout=5 * TIMEOUT_SCALE)
        try:
            await c.connect()
            await c.result("subscribe", {"channel": f"soak{i % 50}"})
        finally:
            c.close()

    for i in range(100):  # warm-up: caches, pools, first allocations
        await cycle(i)
    while node.metrics.open_connections:
        await asyncio.sleep(0.01)
    gc.collect()
    fds, memory = open_fds(), rss()
    for i in range(CYCLES):
        await cycle(i)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10 * TIMEOUT_SCALE
    while node.metrics.open_connections or node.hub.num_subscriptions:
        assert loop.time() < deadline, "connections left open"
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)  # closed sockets leave the loop on its next turns
    gc.collect()
    assert abs(open_fds() - fds) <= FD_MARGIN
    assert rss() - memory < RSS_BOUND
