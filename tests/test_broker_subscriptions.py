"""One broker subscription per channel, shared by the node's concurrent first users
(server/broker_subscriptions.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest
from wsfan.broker.memory import MemoryBroker
from wsfan.broker_subscriptions import BrokerSubscriptions
from wsfan.errors import ErrorCode, ReplyError
from wsfan.logs import Repeated


class CountingBroker(MemoryBroker):
    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.calls: list[tuple[str, list[str]]] = []
        self.fail = fail

    async def subscribe(self, channels: Sequence[str]) -> None:
        self.calls.append(("subscribe", list(channels)))
        await asyncio.sleep(0.01)
        if self.fail:
            raise ConnectionError("broker away")
        await super().subscribe(channels)

    async def unsubscribe(self, channels: Sequence[str]) -> None:
        self.calls.append(("unsubscribe", list(channels)))
        await super().unsubscribe(channels)


def subscriptions(broker: MemoryBroker) -> BrokerSubscriptions:
    return BrokerSubscriptions(broker, Repeated(logging.getLogger("test")))


@pytest.mark.gen_test
async def test_concurrent_first_users_share_one_broker_subscribe():
    broker = CountingBroker()
    subs = subscriptions(broker)
    await asyncio.gather(*(subs.acquire("news") for _ in range(5)))
    await subs.acquire("news")
    assert broker.calls == [("subscribe", ["news"])]


@pytest.mark.gen_test
async def test_a_refused_subscribe_fails_every_waiter_with_100_and_holds_nothing():
    broker = CountingBroker(fail=True)
    subs = subscriptions(broker)
    results = await asyncio.gather(
        *(subs.acquire("news") for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, ReplyError) and r.code == ErrorCode.INTERNAL for r in results)
    broker.fail = False
    await subs.acquire("news")
    assert broker.calls == [("subscribe", ["news"])] * 2


@pytest.mark.gen_test
async def test_release_unsubscribes_and_the_next_acquire_subscribes_again():
    broker = CountingBroker()
    subs = subscriptions(broker)
    await subs.acquire("news")
    await subs.release("news")
    await subs.acquire("news")
    assert [kind for kind, _ in broker.calls] == ["subscribe", "unsubscribe", "subscribe"]
