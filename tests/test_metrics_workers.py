"""/metrics with several workers: any worker's answer covers all of them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tornado.httpclient import AsyncHTTPClient
from wsfan.protocol import Encoding

from tests.client import ProtoClient
from tests.conftest import TIMEOUT_SCALE
from tests.processes import clean_env, running


async def connections(port: int) -> float:
    response = await AsyncHTTPClient().fetch(f"http://127.0.0.1:{port}/metrics")
    for family in text_string_to_metric_families(response.body.decode()):
        if family.name == "wsfan_connections":
            return sum(s.value for s in family.samples)
    raise AssertionError("no wsfan_connections")


async def every_scrape_shows(port: int, expected: float, timeout: float = 10.0) -> None:
    """Several scrapes in a row (answered by either worker) all show `expected`."""
    deadline = asyncio.get_running_loop().time() + timeout * TIMEOUT_SCALE
    while True:
        seen = [await connections(port) for _ in range(6)]
        if all(v == expected for v in seen):
            return
        assert asyncio.get_running_loop().time() < deadline, seen
        await asyncio.sleep(0.2)


def open_sockets(pid: int) -> int:
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):  # closed while we looked
            count += os.readlink(fd).startswith("socket:")
    return count


async def gone(client: ProtoClient) -> bool:
    """Whether the server side of `client` closed (within a second)."""
    try:
        return await client.recv(timeout=1 * TIMEOUT_SCALE) is None
    except TimeoutError:
        return False


@pytest.mark.gen_test(timeout=60 * TIMEOUT_SCALE)
async def test_metrics_sum_the_workers_and_forget_a_killed_one(
    tmp_path: Path, redis_url: str, mongo_url: str, redis_prefix: str
):
    env = clean_env(
        REDIS_URL=redis_url,
        MONGO_URL=mongo_url,
        WSFAN_REDIS__PREFIX=redis_prefix,
        WSFAN_LOG__LEVEL="warning",
    )
    with running(tmp_path, env, ("--workers", "2")) as server:
        server.wait_ready()
        url = f"ws://127.0.0.1:{server.port}/connection/websocket"
        clients = [await ProtoClient.open(url, Encoding.JSON) for _ in range(6)]
        try:
            for c in clients:
                await c.connect()
            await every_scrape_shows(server.port, 6)
            children = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children")
            # the worker holding the most sockets holds clients
            victim = max(map(int, children.read_text().split()), key=open_sockets)
            os.kill(victim, signal.SIGKILL)
            closed = [c for c in clients if await gone(c)]
            assert closed
            await every_scrape_shows(server.port, 6 - len(closed))
        finally:
            for c in clients:
                c.close()
