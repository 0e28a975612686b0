"""The loop-lag watchdog names the hook that held the event loop."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from wsfan.app import RPCContext, RPCResult
from wsfan.app.watchdog import LoopWatchdog
from wsfan.compose import build_node
from wsfan.config import load_settings

from tests.conftest import TIMEOUT_SCALE
from tests.transports import RecordingTransport, messages, new_session

THRESHOLD = 0.05
HOLD = 0.3  # well past the threshold, however loaded the machine


def stall_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "wsfan.app.watchdog"]


async def until_logged(caplog: pytest.LogCaptureFixture, ending: str) -> list[str]:
    """The watchdog's lines that end with `ending`, once there is one (or in 5 s)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5 * TIMEOUT_SCALE

    def named() -> list[str]:
        return [line for line in stall_lines(caplog) if line.endswith(ending)]

    while not named() and loop.time() < deadline:
        await asyncio.sleep(0.01)
    return named()


@pytest.mark.gen_test
async def test_a_held_loop_is_reported_once_with_what_held_it(caplog: pytest.LogCaptureFixture):
    watchdog = LoopWatchdog(THRESHOLD, lambda frame: "the culprit")
    watchdog.start()
    try:
        await asyncio.sleep(THRESHOLD)
        time.sleep(HOLD)  # holds the loop
        lines = await until_logged(caplog, "by the culprit")
    finally:
        watchdog.stop()
    assert len(lines) == 1 and "app.loop_lag_warning" in lines[0]


@pytest.mark.gen_test
async def test_a_loop_that_keeps_turning_is_not_reported(caplog: pytest.LogCaptureFixture):
    watchdog = LoopWatchdog(HOLD, lambda frame: "never")
    watchdog.start()
    try:
        for _ in range(20):
            await asyncio.sleep(0.01)
    finally:
        watchdog.stop()
    assert watchdog.stalls == 0 and stall_lines(caplog) == []


@pytest.mark.gen_test
async def test_a_hook_that_blocks_is_named(caplog: pytest.LogCaptureFixture):
    class Blocking:
        async def rpc(self, ctx: RPCContext) -> RPCResult:
            time.sleep(HOLD)  # the mistake the watchdog is for
            return RPCResult("done")

    settings = load_settings(env={}).with_overrides(
        broker={"type": "memory"}, app={"loop_lag_warning": THRESHOLD}
    )
    node = build_node(settings, app=Blocking())
    await node.start()
    try:
        transport = RecordingTransport()
        session = new_session(node, transport)
        await session.handle_frame(json.dumps({"id": 1, "connect": {}}))
        await session.handle_frame(json.dumps({"id": 2, "rpc": {"method": "m"}}))
        session.outbox.flush()
        lines = await until_logged(caplog, "by python rpc hook")
    finally:
        await node.close()
    assert len(lines) == 1
    assert {"id": 2, "rpc": {"data": "done"}} in messages(transport)


@pytest.mark.gen_test
async def test_a_node_without_python_hooks_runs_no_watchdog():
    node = build_node(load_settings(env={}).with_overrides(broker={"type": "memory"}))
    await node.start()
    try:
        assert node.app.watchdog is None
    finally:
        await node.close()
