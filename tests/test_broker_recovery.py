"""BrokerRecovery (server/broker_recovery.py): after a broker reconnect, persisted
publishes wait for the log's check, and subscribers that fell behind are told."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from wsfan.broker.memory import MemoryBroker
from wsfan.broker_recovery import BrokerRecovery
from wsfan.config import load_settings
from wsfan.errors import ErrorCode, ReplyError
from wsfan.protocol import StreamPosition

from tests.conftest import TIMEOUT_SCALE


class GatedLogCheck:
    """Stands in for the channel log's check: it finishes when `gate` is set."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.checks = 0

    async def check_broker_lost_nothing(self) -> int:
        self.checks += 1
        await self.gate.wait()
        return 0


class CheckedBroker(MemoryBroker):
    def __init__(self) -> None:
        super().__init__()
        self.released = 0

    def reconnect_checked(self) -> None:
        self.released += 1


class Subscriber:
    def __init__(self) -> None:
        self.told: list[tuple[str, StreamPosition]] = []

    def check_position(self, channel: str, position: StreamPosition) -> None:
        self.told.append((channel, position))


def spawn(coro: Any) -> asyncio.Task[Any]:
    return asyncio.get_running_loop().create_task(coro)


def recovery(
    durable: Any = None, subscriber: Subscriber | None = None, command_timeout: float = 5.0
) -> tuple[BrokerRecovery, CheckedBroker]:
    settings = load_settings(env={}).with_overrides(
        redis={"command_timeout": command_timeout}, channels={"history_size": 10}
    )
    broker = CheckedBroker()

    async def position(channel: str) -> StreamPosition:
        return StreamPosition(7, "e")

    subscribers = [subscriber] if subscriber is not None else []
    return (
        BrokerRecovery(
            settings,
            broker,
            durable,
            lambda: ["news"],
            lambda channel: subscribers,
            position,
            spawn,
        ),
        broker,
    )


@pytest.mark.gen_test(timeout=5 * TIMEOUT_SCALE)
async def test_publishes_do_not_wait_when_no_check_is_under_way():
    checks, _ = recovery(GatedLogCheck())
    await asyncio.wait_for(checks.wait_checked(), 1 * TIMEOUT_SCALE)


@pytest.mark.gen_test(timeout=5 * TIMEOUT_SCALE)
async def test_without_a_log_the_broker_takes_commands_again_at_once():
    checks, broker = recovery(None)
    checks.reconnected()
    assert broker.released == 1
    await asyncio.wait_for(checks.wait_checked(), 1 * TIMEOUT_SCALE)


@pytest.mark.gen_test(timeout=5 * TIMEOUT_SCALE)
async def test_publishes_wait_for_the_log_check_and_the_broker_is_released_after_it():
    log = GatedLogCheck()
    checks, broker = recovery(log)
    checks.reconnected()
    waiting = asyncio.ensure_future(checks.wait_checked())
    await asyncio.sleep(0)
    assert not waiting.done() and broker.released == 0
    log.gate.set()
    await asyncio.wait_for(waiting, 1 * TIMEOUT_SCALE)
    assert broker.released == 1 and log.checks == 1


@pytest.mark.gen_test(timeout=5 * TIMEOUT_SCALE)
async def test_a_check_outlasting_the_command_timeout_answers_100():
    log = GatedLogCheck()
    checks, broker = recovery(log, command_timeout=0.05)
    checks.reconnected()
    with pytest.raises(ReplyError) as exc:
        await checks.wait_checked()
    assert exc.value.code == ErrorCode.INTERNAL
    await finish(log, broker)


async def finish(log: GatedLogCheck, broker: CheckedBroker) -> None:
    """Let the check under way end (no task is left pending past the test)."""
    log.gate.set()
    deadline = asyncio.get_running_loop().time() + 2 * TIMEOUT_SCALE
    while not broker.released and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)


@pytest.mark.gen_test(timeout=5 * TIMEOUT_SCALE)
async def test_a_second_reconnect_during_a_check_starts_no_second_check():
    log = GatedLogCheck()
    checks, broker = recovery(log)
    checks.reconnected()
    checks.reconnected()
    await asyncio.sleep(0.01)
    assert log.checks == 1
    await finish(log, broker)


@pytest.mark.gen_test(timeout=5 * TIMEOUT_SCALE)
async def test_subscribers_of_recoverable_channels_are_given_the_position():
    subscriber = Subscriber()
    checks, _ = recovery(None, subscriber)
    checks.reconnected()
    deadline = asyncio.get_running_loop().time() + 2 * TIMEOUT_SCALE
    while not subscriber.told and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
    assert subscriber.told == [("news", StreamPosition(7, "e"))]
