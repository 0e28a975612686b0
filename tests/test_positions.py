"""SharedPositions (server/positions.py): one read per channel per event-loop turn."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from wsfan.positions import SharedPositions
from wsfan.protocol import StreamPosition

from tests.conftest import TIMEOUT_SCALE


class CountingReads:
    """A position source that counts its reads (and can fail them)."""

    def __init__(self, fail: bool = False) -> None:
        self.reads: list[str] = []
        self.fail = fail

    async def __call__(self, channel: str) -> StreamPosition:
        self.reads.append(channel)
        await asyncio.sleep(0)
        if self.fail:
            raise RuntimeError("broker away")
        return StreamPosition(len(self.reads), "e")


def spawn(coro: Any) -> asyncio.Task[Any]:
    return asyncio.get_running_loop().create_task(coro)


@pytest.mark.gen_test(timeout=5 * TIMEOUT_SCALE)
async def test_callers_in_one_turn_share_one_read():

    reads = CountingReads()
    positions = SharedPositions(reads, spawn)
    got = await asyncio.gather(*(positions.get("a") for _ in range(50)))
    assert reads.reads == ["a"]
    assert set(got) == {StreamPosition(1, "e")}


@pytest.mark.gen_test(timeout=5 * TIMEOUT_SCALE)
async def test_each_channel_gets_its_own_read():

    reads = CountingReads()
    positions = SharedPositions(reads, spawn)
    await asyncio.gather(positions.get("a"), positions.get("b"), positions.get("a"))
    assert sorted(reads.reads) == ["a", "b"]


@pytest.mark.gen_test(timeout=5 * TIMEOUT_SCALE)
async def test_a_later_turn_reads_again():

    reads = CountingReads()
    positions = SharedPositions(reads, spawn)
    first = await positions.get("a")
    second = await positions.get("a")
    assert (first.offset, second.offset) == (1, 2)


@pytest.mark.gen_test(timeout=5 * TIMEOUT_SCALE)
async def test_a_failed_read_fails_every_caller_of_its_turn():

    positions = SharedPositions(CountingReads(fail=True), spawn)
    results = await asyncio.gather(*(positions.get("a") for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
