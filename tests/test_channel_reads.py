"""The node's reads of channels: positions shared per loop turn, history queries
bounded by the settings, and the answers where a namespace keeps nothing."""

from __future__ import annotations

import asyncio

import pytest
from wsfan.broker.memory import MemoryBroker
from wsfan.compose import build_node
from wsfan.errors import ErrorCode, ReplyError
from wsfan.protocol import HistoryRequest

NO_HISTORY = {"namespaces": {"bare": {"history_size": 0, "recovery": False}}}


class CountingBroker(MemoryBroker):
    def __init__(self) -> None:
        super().__init__()
        self.history_calls = 0

    async def history(self, channel, query, options):
        self.history_calls += 1
        return await super().history(channel, query, options)


@pytest.mark.gen_test
async def test_position_reads_in_one_loop_turn_share_one_broker_call(settings):
    broker = CountingBroker()
    node = build_node(settings, broker=broker)
    await node.start()
    await node.publish("news", "x")
    positions = await asyncio.gather(*(node.reads.position("news") for _ in range(50)))
    assert broker.history_calls == 1
    assert {(p.offset, p.epoch) for p in positions} == {(1, positions[0].epoch)}
    assert (await node.reads.position("news")).offset == 1 and broker.history_calls == 2
    await node.close()


@pytest.mark.settings(client={"history_max_limit": 5})
def test_a_history_query_asks_at_most_history_max_limit(settings):
    reads = build_node(settings, broker=MemoryBroker()).reads
    assert reads.history_query(HistoryRequest("news", limit=50)).limit == 5
    assert reads.history_query(HistoryRequest("news", limit=3)).limit == 3
    assert reads.history_query(HistoryRequest("news", limit=-1)).limit == 5


@pytest.mark.settings(**NO_HISTORY)
def test_a_history_query_where_no_history_is_kept_is_answered_108(settings):
    reads = build_node(settings, broker=MemoryBroker()).reads
    with pytest.raises(ReplyError) as raised:
        reads.history_query(HistoryRequest("bare:a", limit=1))
    assert raised.value.code == ErrorCode.NOT_AVAILABLE


@pytest.mark.gen_test
async def test_a_namespace_without_retained_state_has_none_to_give(settings):
    node = build_node(settings, broker=MemoryBroker())
    await node.start()
    await node.publish("news", {"a": 1})
    assert await node.reads.retained_state("news") is None
    await node.close()
