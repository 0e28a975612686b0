"""Occupancy and channel sources across two instances on one Valkey, one of them a
process of its own (tests/app_instance.py) that the test kills with SIGKILL: no
goodbye, no lease released. The other is a node in the test's process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from wsfan.app.channel_services import ChannelServices, attach
from wsfan.compose import build_node
from wsfan.node import Node

from tests.app_channels import Events, Subscriber, wait_until
from tests.app_instance import APP, PERIOD, counter, settings_for
from tests.conftest import TIMEOUT_SCALE
from tests.processes import ROOT

STARTUP = 20 * TIMEOUT_SCALE
SLACK = 0.5 * TIMEOUT_SCALE  # Redis round trips and a loaded machine, on top of a bound


@pytest.fixture
def instance(redis_url: str, redis_prefix: str) -> Iterator[Any]:
    """Starts tests/app_instance.py processes; each is killed (by PID) after the test."""
    started: list[subprocess.Popen[str]] = []

    def start(*channels: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.app_instance", redis_url, redis_prefix, *channels],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


async def line_from(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), STARTUP)
    assert line, f"the instance exited ({proc.poll()})"
    return line.strip()


@asynccontextmanager
async def local_node(
    redis_url: str, redis_prefix: str, events: Events
) -> AsyncIterator[tuple[Node, ChannelServices]]:
    """The test's own instance, with the same settings and source as the process."""
    node = build_node(settings_for(redis_url, redis_prefix))
    await node.start()
    services = attach(node, events.occupied, events.vacated, {"ticker:*": counter})
    assert services is not None
    await services.start()
    try:
        yield node, services
    finally:
        await services.close()
        await node.close()


@pytest.mark.gen_test(timeout=60)
async def test_a_killed_instances_source_moves_within_source_takeover_with_no_gap_in_offsets(
    instance, redis_url: str, redis_prefix: str
):
    proc = instance("ticker:eur")
    assert await line_from(proc) == "occupied ticker:eur"
    async with local_node(redis_url, redis_prefix, Events()) as (node, _):
        sub = Subscriber()
        await node.add_subscriber("ticker:eur", sub)  # type: ignore[arg-type]
        await wait_until(lambda: len(sub.publications) >= 5)
        assert {p.data["pid"] for p in sub.publications} == {proc.pid}
        proc.kill()
        killed = time.monotonic()
        here = os.getpid()
        await wait_until(lambda: any(p.data["pid"] == here for p in sub.publications), 10)
        took = time.monotonic() - killed
        assert took <= APP["source_takeover"] + PERIOD + SLACK, took
        await wait_until(lambda: sum(p.data["pid"] == here for p in sub.publications) >= 5)
    offsets = [p.offset for p in sub.publications]
    assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))
    assert all(p.data["n"] == p.offset for p in sub.publications)  # resumed, not restarted


async def delivered(node: Node, prefix: str, channel: str) -> None:
    """Until the channel's occupied event is acknowledged. (An instance killed between
    calling on_occupied and acknowledging it has it called again elsewhere once its
    claim runs out, and vacated after that: tests/test_broker_occupancy.py.)"""
    key = f"{prefix}.occ.s.{{{channel}}}"
    client = node.broker.client  # type: ignore[attr-defined]
    deadline = time.monotonic() + STARTUP
    while await client.hget(key, "a") != b"1":
        assert time.monotonic() < deadline, "occupied never acknowledged"
        await asyncio.sleep(0.01)


@pytest.mark.gen_test(timeout=60)
async def test_a_killed_instances_channel_is_vacated_within_the_stated_time(
    instance, redis_url: str, redis_prefix: str
):
    events = Events()
    async with local_node(redis_url, redis_prefix, events) as (node, _):
        proc = instance("room")
        assert await line_from(proc) == "occupied room"
        await delivered(node, redis_prefix, "room")  # not killed mid-delivery: see below
        proc.kill()
        killed = time.monotonic()
        await wait_until(lambda: events.of("room") == ["vacated"], 10)
        took = events.times[-1] - killed
    stated = APP["occupancy_lease"] + APP["vacate_delay"] + 2 * APP["occupancy_sweep_interval"]
    assert took <= stated + SLACK, took
    assert events.of("room") == ["vacated"]  # occupied was the killed instance's
