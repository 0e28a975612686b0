"""Channel leases (server/broker/leases.py, redis_leases.py) and the fence every broker
checks on publish: once per implementation of tests/broker_fixtures.py (memory, one
Valkey, client-side shards, a Redis Cluster)."""

from __future__ import annotations

import pytest
from wsfan.broker.base import FENCED, Broker, Fence, HistoryOptions, HistoryQuery
from wsfan.broker.leases import Leases
from wsfan.errors import ErrorCode, ReplyError

from tests.broker_fixtures import Clock, RecordingHandler

KEEP = HistoryOptions(size=10, ttl=60.0, meta_ttl=3600.0)
TTL = 0.3  # seconds; Redis really waits it out


def leases_of(broker: Broker) -> Leases:
    """The leases fenced publishes on `broker` check (each implementation's own)."""
    return broker.channel_stores()[1]


@pytest.mark.gen_test
async def test_a_free_lease_is_acquired_and_a_held_one_refused(broker: Broker):
    leases = leases_of(broker)
    assert await leases.acquire("ticker", "source", "a", TTL)
    assert not await leases.acquire("ticker", "source", "b", TTL)
    assert await leases.acquire("ticker", "other", "b", TTL)  # another name
    assert await leases.acquire("quotes", "source", "b", TTL)  # another channel


@pytest.mark.gen_test
async def test_the_holder_extends_its_lease_past_the_first_ttl(broker: Broker, clock: Clock):
    leases = leases_of(broker)
    assert await leases.acquire("ticker", "source", "a", TTL)
    await clock.advance(TTL * 0.6)
    assert await leases.acquire("ticker", "source", "a", TTL)
    await clock.advance(TTL * 0.6)
    assert not await leases.acquire("ticker", "source", "b", TTL)


@pytest.mark.gen_test
async def test_an_expired_lease_goes_to_the_next_asker(broker: Broker, clock: Clock):
    leases = leases_of(broker)
    assert await leases.acquire("ticker", "source", "a", TTL)
    await clock.advance(TTL * 1.5)
    assert await leases.acquire("ticker", "source", "b", TTL)
    assert not await leases.acquire("ticker", "source", "a", TTL)


@pytest.mark.gen_test
async def test_release_frees_the_lease_only_for_its_holder(broker: Broker):
    leases = leases_of(broker)
    assert await leases.acquire("ticker", "source", "a", TTL)
    await leases.release("ticker", "source", "b")
    assert not await leases.acquire("ticker", "source", "b", TTL)
    await leases.release("ticker", "source", "a")
    assert await leases.acquire("ticker", "source", "b", TTL)


@pytest.mark.gen_test
async def test_a_fenced_publish_by_the_holder_is_published(
    broker: Broker, handler: RecordingHandler
):
    await broker.subscribe(["ticker"])
    assert await leases_of(broker).acquire("ticker", "source", "a", TTL)
    position = await broker.publish("ticker", 1, KEEP, fence=Fence("source", "a"))
    assert position.offset == 1
    await handler.wait_for(lambda: handler.data("ticker") == [1])


@pytest.mark.parametrize("options", [KEEP, HistoryOptions(0)], ids=["history", "no history"])
@pytest.mark.gen_test
async def test_a_stale_holders_fenced_publish_is_refused_and_neither_kept_nor_delivered(
    broker: Broker, handler: RecordingHandler, clock: Clock, options: HistoryOptions
):
    leases = leases_of(broker)
    await broker.subscribe(["ticker"])
    assert await leases.acquire("ticker", "source", "stale", TTL)
    await clock.advance(TTL * 1.5)  # paused past its lease...
    assert await leases.acquire("ticker", "source", "new", TTL)  # ...and taken over
    with pytest.raises(ReplyError) as refused:
        await broker.publish("ticker", "stale", options, fence=Fence("source", "stale"))
    assert (refused.value.code, refused.value.message) == (ErrorCode.INTERNAL, FENCED)
    await broker.publish("ticker", "new", options, fence=Fence("source", "new"))
    await handler.wait_for(lambda: handler.data("ticker") == ["new"])
    kept = await broker.history("ticker", HistoryQuery(limit=-1), KEEP)
    assert [p.data for p in kept.publications] == (["new"] if options.size else [])


@pytest.mark.gen_test
async def test_a_fenced_publish_with_no_holder_at_all_is_refused(broker: Broker):
    with pytest.raises(ReplyError) as refused:
        await broker.publish("ticker", 1, KEEP, fence=Fence("source", "a"))
    assert refused.value.message == FENCED
    assert (await broker.history("ticker", HistoryQuery(), KEEP)).position.offset == 0


@pytest.mark.gen_test
async def test_an_unfenced_publish_ignores_the_lease(broker: Broker):
    assert await leases_of(broker).acquire("ticker", "source", "a", TTL)
    assert (await broker.publish("ticker", 1, KEEP)).offset == 1
