"""The channel occupancy state machine (server/broker/occupancy.py), once per store:
in memory (injected clock), and in Redis on the session's Valkey (its own clock: the
clock fixture really waits, so the timings here are short)."""

from __future__ import annotations

import pytest
from wsfan.broker.base import Broker
from wsfan.broker.occupancy import (
    NOTHING,
    OCCUPIED,
    VACATED,
    MemoryOccupancy,
    OccupancyStore,
    Op,
    Timing,
)

from tests.broker_fixtures import Clock

TIMING = Timing(member_ttl=0.4, vacate_delay=0.2, claim_ttl=0.8)
PAST = 1.3  # a deadline, times this, has passed


@pytest.fixture
def store(implementation: str, clock: Clock, broker: Broker) -> OccupancyStore:
    """Each broker's own occupancy store (the memory one on the test's clock)."""
    if implementation == "memory":
        return MemoryOccupancy(clock)
    return broker.channel_stores()[0]


async def joined(store: OccupancyStore, member: str, channel: str = "news") -> int:
    """`member` joins; the event it then claimed is acknowledged."""
    event = await store.step(channel, member, Op.JOIN, TIMING)
    if event != NOTHING:
        assert await store.step(channel, member, Op.ACK, TIMING, event) == NOTHING
    return event


@pytest.mark.gen_test
async def test_the_first_member_claims_occupied_and_the_next_claims_nothing(store):
    assert await store.step("news", "a", Op.JOIN, TIMING) == OCCUPIED
    assert await store.step("news", "a", Op.ACK, TIMING, OCCUPIED) == NOTHING
    assert await store.step("news", "b", Op.JOIN, TIMING) == NOTHING


@pytest.mark.gen_test
async def test_vacated_is_due_only_once_the_last_member_left_vacate_delay_ago(store, clock):
    await joined(store, "a")
    await joined(store, "b")
    assert await store.step("news", "a", Op.LEAVE, TIMING) == NOTHING
    assert await store.step("news", "b", Op.LEAVE, TIMING) == NOTHING
    assert await store.step("news", "b", Op.CHECK, TIMING) == NOTHING  # within the delay
    await clock.advance(TIMING.vacate_delay * PAST)
    assert await store.step("news", "b", Op.CHECK, TIMING) == VACATED


@pytest.mark.gen_test
async def test_a_member_back_within_the_delay_cancels_the_vacate(store, clock):
    await joined(store, "a")
    await store.step("news", "a", Op.LEAVE, TIMING)
    assert await store.step("news", "b", Op.JOIN, TIMING) == NOTHING
    await clock.advance(TIMING.vacate_delay * PAST)
    assert await store.step("news", "b", Op.CHECK, TIMING) == NOTHING


@pytest.mark.gen_test
async def test_an_unacknowledged_claim_is_claimed_again_once_it_runs_out(store, clock):
    assert await store.step("news", "a", Op.JOIN, TIMING) == OCCUPIED  # a dies calling it
    assert await store.step("news", "b", Op.JOIN, TIMING) == NOTHING
    await clock.advance(TIMING.claim_ttl * PAST)
    assert await store.step("news", "b", Op.JOIN, TIMING) == OCCUPIED
    assert await store.step("news", "a", Op.ACK, TIMING, OCCUPIED) == NOTHING  # too late
    assert await store.step("news", "b", Op.ACK, TIMING, OCCUPIED) == NOTHING


@pytest.mark.gen_test
async def test_vacated_waits_for_occupied_to_be_acknowledged(store, clock):
    assert await store.step("news", "a", Op.JOIN, TIMING) == OCCUPIED
    await store.step("news", "a", Op.LEAVE, TIMING)
    await clock.advance(TIMING.vacate_delay * PAST)
    assert await store.step("news", "b", Op.CHECK, TIMING) == NOTHING  # a still delivers
    assert await store.step("news", "a", Op.ACK, TIMING, OCCUPIED) == VACATED


@pytest.mark.gen_test
async def test_a_dead_members_channel_becomes_due_and_is_vacated(store, clock):
    await joined(store, "a")
    assert await store.due(10) == []
    await clock.advance(TIMING.member_ttl * PAST)  # a stopped renewing
    assert await store.due(10) == ["news"]
    assert await store.step("news", "b", Op.CHECK, TIMING) == NOTHING  # the delay starts
    await clock.advance(TIMING.vacate_delay * PAST)
    assert await store.due(10) == ["news"]
    assert await store.step("news", "b", Op.CHECK, TIMING) == VACATED


@pytest.mark.gen_test
async def test_a_vacated_and_acknowledged_channel_leaves_the_index(store, clock):
    await joined(store, "a")
    await store.step("news", "a", Op.LEAVE, TIMING)
    await clock.advance(TIMING.vacate_delay * PAST)
    assert await store.step("news", "a", Op.CHECK, TIMING) == VACATED
    assert await store.step("news", "a", Op.ACK, TIMING, VACATED) == NOTHING
    await clock.advance(TIMING.member_ttl * PAST)
    assert await store.due(10) == []
    assert await joined(store, "b") == OCCUPIED  # and starts over


@pytest.mark.gen_test
async def test_due_returns_at_most_limit_channels(store, clock):
    for channel in ("a", "b", "c"):
        await joined(store, "m", channel)
    await clock.advance(TIMING.member_ttl * PAST)
    assert len(await store.due(2)) == 2
