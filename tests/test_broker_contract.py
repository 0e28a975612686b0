"""The broker contract (server/broker/base.py): what every Broker and PresenceManager promises.

Each test runs once per implementation (tests/broker_fixtures.py): memory, Redis
against the session's real Valkey, client-side shards over its two Valkeys, and a
Redis Cluster (a key prefix per test). Time: the memory broker reads the injected
`Clock`; for Redis, `await clock.advance(s)` really waits, so TTLs here stay short.
Delivery may be asynchronous, so tests wait for events with `handler.wait_for`
and prove an absence by waiting for a later marker event on a subscribed channel.
"""

from __future__ import annotations

import asyncio

import pytest
from wsfan.broker.base import (
    Broker,
    HistoryOptions,
    HistoryQuery,
    PresenceManager,
    PresenceStats,
)
from wsfan.broker.memory import MemoryPresence
from wsfan.errors import ErrorCode, ReplyError
from wsfan.protocol import ClientInfo, Publication, StreamPosition

from tests.broker_fixtures import Clock, RecordingHandler

KEEP = HistoryOptions(size=10, ttl=60.0, meta_ttl=3600.0)
NO_HISTORY = HistoryOptions(size=0)


async def publish_n(broker: Broker, channel: str, n: int, options: HistoryOptions = KEEP) -> None:
    for i in range(1, n + 1):
        await broker.publish(channel, {"n": i}, options)


async def offsets(
    broker: Broker, channel: str, query: HistoryQuery, options: HistoryOptions = KEEP
) -> list[int]:
    result = await broker.history(channel, query, options)
    return [p.offset for p in result.publications]


ALICE = ClientInfo("alice", "c1", {"name": "Alice"})
BOB = ClientInfo("bob", "c2")


# ---------------------------------------------------------------------------
# Readiness


@pytest.mark.gen_test
async def test_ping_returns_while_the_backend_answers(broker: Broker) -> None:
    await broker.ping()
    await broker.ping()


# ---------------------------------------------------------------------------
# Publishing and offsets


@pytest.mark.gen_test
async def test_offsets_rise_by_exactly_one_per_publication(broker: Broker) -> None:
    positions = [await broker.publish("a", i, KEEP) for i in range(5)]
    assert [p.offset for p in positions] == [1, 2, 3, 4, 5]


@pytest.mark.gen_test
async def test_epoch_is_stable_across_publications(broker: Broker) -> None:
    positions = [await broker.publish("a", i, KEEP) for i in range(5)]
    assert len({p.epoch for p in positions}) == 1
    assert positions[0].epoch


@pytest.mark.gen_test
async def test_publish_returns_the_position_history_then_reports(broker: Broker) -> None:
    position = await broker.publish("a", "x", KEEP)
    result = await broker.history("a", HistoryQuery(), KEEP)
    assert result.position == position
    assert position.offset == 1


@pytest.mark.gen_test
async def test_channels_count_offsets_independently(broker: Broker) -> None:
    await publish_n(broker, "a", 3)
    assert (await broker.publish("b", "x", KEEP)).offset == 1
    assert (await broker.publish("a", "x", KEEP)).offset == 4


@pytest.mark.gen_test
async def test_published_data_info_and_tags_come_back_in_history(broker: Broker) -> None:
    at = await broker.publish("a", {"text": "hi"}, KEEP, info=ALICE, tags={"k": "v"})
    result = await broker.history("a", HistoryQuery(limit=-1), KEEP)
    assert result.publications == [Publication({"text": "hi"}, 1, ALICE, {"k": "v"}, at.epoch)]


# ---------------------------------------------------------------------------
# Delivery


@pytest.mark.gen_test
async def test_publications_reach_the_handler_in_order(
    broker: Broker, handler: RecordingHandler
) -> None:
    await broker.subscribe(["a"])
    await publish_n(broker, "a", 5)
    await handler.wait_for(lambda: len(handler.publications) == 5)
    assert handler.data("a") == [{"n": i} for i in range(1, 6)]
    assert [p.offset for _, p in handler.publications] == [1, 2, 3, 4, 5]


@pytest.mark.gen_test
async def test_delivered_publication_carries_info_and_tags(
    broker: Broker, handler: RecordingHandler
) -> None:
    await broker.subscribe(["a"])
    at = await broker.publish("a", "x", KEEP, info=ALICE, tags={"k": "v"})
    await handler.wait_for(lambda: len(handler.publications) == 1)
    assert handler.publications == [("a", Publication("x", 1, ALICE, {"k": "v"}, at.epoch))]


@pytest.mark.gen_test
async def test_publications_of_unsubscribed_channels_are_not_delivered(
    broker: Broker, handler: RecordingHandler
) -> None:
    await broker.subscribe(["marker"])
    await broker.publish("other", "x", KEEP)
    at = await broker.publish("marker", "end", KEEP)
    await handler.wait_for(lambda: len(handler.publications) >= 1)
    assert handler.publications == [("marker", Publication("end", 1, epoch=at.epoch))]


@pytest.mark.gen_test
async def test_subscribe_takes_several_channels_at_once(
    broker: Broker, handler: RecordingHandler
) -> None:
    await broker.subscribe(["a", "b"])
    await broker.publish("a", 1, KEEP)
    await broker.publish("b", 2, KEEP)
    await handler.wait_for(lambda: len(handler.publications) == 2)
    assert [(c, p.data) for c, p in handler.publications] == [("a", 1), ("b", 2)]


@pytest.mark.gen_test
async def test_unsubscribe_stops_delivery(broker: Broker, handler: RecordingHandler) -> None:
    await broker.subscribe(["a", "marker"])
    await broker.publish("a", "before", KEEP)
    await handler.wait_for(lambda: len(handler.publications) == 1)
    await broker.unsubscribe(["a"])
    await broker.publish("a", "after", KEEP)
    await broker.publish("marker", "end", KEEP)
    await handler.wait_for(lambda: len(handler.publications) == 2)
    assert handler.data("a") == ["before"]


@pytest.mark.gen_test
async def test_publication_without_history_is_delivered_with_offset_zero(
    broker: Broker, handler: RecordingHandler
) -> None:
    await broker.subscribe(["a"])
    await broker.publish("a", "x", NO_HISTORY)
    await handler.wait_for(lambda: len(handler.publications) == 1)
    assert handler.publications == [("a", Publication("x", 0))]


@pytest.mark.gen_test
async def test_join_and_leave_reach_the_handler(broker: Broker, handler: RecordingHandler) -> None:
    await broker.subscribe(["a"])
    await broker.publish_join("a", ALICE)
    await broker.publish_leave("a", BOB)
    await handler.wait_for(lambda: bool(handler.joins and handler.leaves))
    assert handler.joins == [("a", ALICE)]
    assert handler.leaves == [("a", BOB)]


@pytest.mark.gen_test
async def test_join_and_leave_of_unsubscribed_channels_are_not_delivered(
    broker: Broker, handler: RecordingHandler
) -> None:
    await broker.subscribe(["marker"])
    await broker.publish_join("other", ALICE)
    await broker.publish_leave("other", ALICE)
    await broker.publish_join("marker", BOB)
    await broker.publish_leave("marker", BOB)
    await handler.wait_for(lambda: bool(handler.joins and handler.leaves))
    assert handler.joins == [("marker", BOB)]
    assert handler.leaves == [("marker", BOB)]


@pytest.mark.gen_test
async def test_join_and_leave_do_not_touch_history(broker: Broker) -> None:
    await broker.publish("a", "x", KEEP)
    await broker.publish_join("a", ALICE)
    await broker.publish_leave("a", ALICE)
    result = await broker.history("a", HistoryQuery(limit=-1), KEEP)
    assert [p.data for p in result.publications] == ["x"]
    assert result.position.offset == 1


# ---------------------------------------------------------------------------
# History queries


@pytest.mark.gen_test
async def test_history_limit_zero_returns_only_the_position(broker: Broker) -> None:
    await publish_n(broker, "a", 3)
    result = await broker.history("a", HistoryQuery(limit=0), KEEP)
    assert result.publications == []
    assert result.position.offset == 3


@pytest.mark.gen_test
async def test_history_limit_minus_one_returns_everything_kept_oldest_first(
    broker: Broker,
) -> None:
    await publish_n(broker, "a", 4)
    assert await offsets(broker, "a", HistoryQuery(limit=-1)) == [1, 2, 3, 4]


@pytest.mark.gen_test
async def test_history_limit_n_returns_the_n_oldest(broker: Broker) -> None:
    await publish_n(broker, "a", 5)
    assert await offsets(broker, "a", HistoryQuery(limit=2)) == [1, 2]


@pytest.mark.gen_test
async def test_history_limit_above_what_is_kept_returns_everything(broker: Broker) -> None:
    await publish_n(broker, "a", 3)
    assert await offsets(broker, "a", HistoryQuery(limit=100)) == [1, 2, 3]


@pytest.mark.gen_test
async def test_history_reverse_returns_newest_first(broker: Broker) -> None:
    await publish_n(broker, "a", 4)
    assert await offsets(broker, "a", HistoryQuery(limit=-1, reverse=True)) == [4, 3, 2, 1]


@pytest.mark.gen_test
async def test_history_reverse_with_limit_returns_the_n_newest(broker: Broker) -> None:
    await publish_n(broker, "a", 5)
    assert await offsets(broker, "a", HistoryQuery(limit=2, reverse=True)) == [5, 4]


@pytest.mark.gen_test
async def test_history_of_a_channel_never_published_to_is_empty_at_offset_zero(
    broker: Broker,
) -> None:
    result = await broker.history("fresh", HistoryQuery(limit=-1), KEEP)
    assert result.publications == []
    assert result.position.offset == 0


@pytest.mark.gen_test
async def test_history_of_a_fresh_channel_keeps_its_epoch_for_the_first_publication(
    broker: Broker,
) -> None:
    before = (await broker.history("fresh", HistoryQuery(), KEEP)).position
    after = await broker.publish("fresh", "x", KEEP)
    assert after == StreamPosition(1, before.epoch)


# ---------------------------------------------------------------------------
# History since a position (recovery)


@pytest.mark.gen_test
async def test_since_returns_exactly_the_publications_after_the_offset(broker: Broker) -> None:
    await publish_n(broker, "a", 5)
    epoch = (await broker.history("a", HistoryQuery(), KEEP)).position.epoch
    since = StreamPosition(2, epoch)
    assert await offsets(broker, "a", HistoryQuery(since=since, limit=-1)) == [3, 4, 5]


@pytest.mark.gen_test
async def test_since_with_limit_returns_the_first_n_after_the_offset(broker: Broker) -> None:
    await publish_n(broker, "a", 6)
    epoch = (await broker.history("a", HistoryQuery(), KEEP)).position.epoch
    since = StreamPosition(1, epoch)
    assert await offsets(broker, "a", HistoryQuery(since=since, limit=2)) == [2, 3]


@pytest.mark.gen_test
async def test_since_offset_zero_returns_everything_while_nothing_was_dropped(
    broker: Broker,
) -> None:
    await publish_n(broker, "a", 3)
    epoch = (await broker.history("a", HistoryQuery(), KEEP)).position.epoch
    since = StreamPosition(0, epoch)
    assert await offsets(broker, "a", HistoryQuery(since=since, limit=-1)) == [1, 2, 3]


@pytest.mark.gen_test
async def test_since_the_top_offset_returns_nothing(broker: Broker) -> None:
    await publish_n(broker, "a", 3)
    top = (await broker.history("a", HistoryQuery(), KEEP)).position
    result = await broker.history("a", HistoryQuery(since=top, limit=-1), KEEP)
    assert result.publications == []
    assert result.position == top


@pytest.mark.gen_test
async def test_since_with_another_epoch_raises_unrecoverable_position(broker: Broker) -> None:
    await publish_n(broker, "a", 3)
    with pytest.raises(ReplyError) as info:
        await broker.history("a", HistoryQuery(since=StreamPosition(1, "not-it"), limit=-1), KEEP)
    assert info.value.code == ErrorCode.UNRECOVERABLE_POSITION


@pytest.mark.gen_test
async def test_since_beyond_the_top_raises_unrecoverable_position(broker: Broker) -> None:
    await publish_n(broker, "a", 3)
    epoch = (await broker.history("a", HistoryQuery(), KEEP)).position.epoch
    with pytest.raises(ReplyError) as info:
        await broker.history("a", HistoryQuery(since=StreamPosition(9, epoch), limit=-1), KEEP)
    assert info.value.code == ErrorCode.UNRECOVERABLE_POSITION


@pytest.mark.gen_test
async def test_since_older_than_what_is_kept_raises_unrecoverable_position(
    broker: Broker,
) -> None:
    small = HistoryOptions(size=3, ttl=60.0, meta_ttl=3600.0)
    await publish_n(broker, "a", 6, small)  # keeps 4, 5, 6
    epoch = (await broker.history("a", HistoryQuery(), small)).position.epoch
    with pytest.raises(ReplyError) as info:
        await broker.history("a", HistoryQuery(since=StreamPosition(2, epoch), limit=-1), small)
    assert info.value.code == ErrorCode.UNRECOVERABLE_POSITION


@pytest.mark.gen_test
async def test_since_just_before_the_oldest_kept_is_still_recoverable(broker: Broker) -> None:
    small = HistoryOptions(size=3, ttl=60.0, meta_ttl=3600.0)
    await publish_n(broker, "a", 6, small)  # keeps 4, 5, 6
    epoch = (await broker.history("a", HistoryQuery(), small)).position.epoch
    since = StreamPosition(3, epoch)
    assert await offsets(broker, "a", HistoryQuery(since=since, limit=-1), small) == [4, 5, 6]


# ---------------------------------------------------------------------------
# Retention


@pytest.mark.gen_test
async def test_channel_without_history_gives_offset_zero_and_keeps_nothing(
    broker: Broker,
) -> None:
    position = await broker.publish("a", "x", NO_HISTORY)
    assert position.offset == 0
    result = await broker.history("a", HistoryQuery(limit=-1), NO_HISTORY)
    assert result.publications == []
    assert result.position.offset == 0


@pytest.mark.gen_test
async def test_history_size_drops_the_oldest_publications(broker: Broker) -> None:
    small = HistoryOptions(size=3, ttl=60.0, meta_ttl=3600.0)
    await publish_n(broker, "a", 5, small)
    result = await broker.history("a", HistoryQuery(limit=-1), small)
    assert [p.offset for p in result.publications] == [3, 4, 5]
    assert result.position.offset == 5


@pytest.mark.gen_test
async def test_history_ttl_drops_publications_but_keeps_offset_and_epoch(
    broker: Broker, clock: Clock
) -> None:
    options = HistoryOptions(size=10, ttl=1.0, meta_ttl=3600.0)
    await publish_n(broker, "a", 3, options)
    before = (await broker.history("a", HistoryQuery(), options)).position
    await clock.advance(1.5)
    result = await broker.history("a", HistoryQuery(limit=-1), options)
    assert result.publications == []
    assert result.position == before


@pytest.mark.gen_test
async def test_offsets_continue_after_the_history_ttl_expired(broker: Broker, clock: Clock) -> None:
    options = HistoryOptions(size=10, ttl=1.0, meta_ttl=3600.0)
    first = await broker.publish("a", "x", options)
    await clock.advance(1.5)
    second = await broker.publish("a", "y", options)
    assert second == StreamPosition(first.offset + 1, first.epoch)
    assert await offsets(broker, "a", HistoryQuery(limit=-1), options) == [2]


@pytest.mark.gen_test
async def test_since_into_expired_history_raises_unrecoverable_position(
    broker: Broker, clock: Clock
) -> None:
    options = HistoryOptions(size=10, ttl=1.0, meta_ttl=3600.0)
    await publish_n(broker, "a", 3, options)
    epoch = (await broker.history("a", HistoryQuery(), options)).position.epoch
    await clock.advance(1.5)
    with pytest.raises(ReplyError) as info:
        await broker.history("a", HistoryQuery(since=StreamPosition(1, epoch), limit=-1), options)
    assert info.value.code == ErrorCode.UNRECOVERABLE_POSITION


@pytest.mark.gen_test
async def test_history_ttl_is_counted_from_the_latest_publication(
    broker: Broker, clock: Clock
) -> None:
    options = HistoryOptions(size=10, ttl=1.0, meta_ttl=3600.0)
    await broker.publish("a", "x", options)
    await clock.advance(0.75)
    await broker.publish("a", "y", options)
    await clock.advance(0.75)
    assert await offsets(broker, "a", HistoryQuery(limit=-1), options) == [1, 2]


@pytest.mark.gen_test
async def test_meta_ttl_expiry_starts_a_new_epoch_with_offsets_from_one(
    broker: Broker, clock: Clock
) -> None:
    options = HistoryOptions(size=10, ttl=1.0, meta_ttl=2.0)
    old = await broker.publish("a", "x", options)
    await broker.publish("a", "y", options)
    await clock.advance(3.0)
    new = await broker.publish("a", "z", options)
    assert new.offset == 1
    assert new.epoch != old.epoch


@pytest.mark.gen_test
async def test_since_in_an_expired_epoch_raises_unrecoverable_position(
    broker: Broker, clock: Clock
) -> None:
    options = HistoryOptions(size=10, ttl=1.0, meta_ttl=2.0)
    old = await broker.publish("a", "x", options)
    await clock.advance(3.0)
    await broker.publish("a", "y", options)
    with pytest.raises(ReplyError) as info:
        await broker.history("a", HistoryQuery(since=old, limit=-1), options)
    assert info.value.code == ErrorCode.UNRECOVERABLE_POSITION


@pytest.mark.gen_test
async def test_remove_history_drops_publications_but_keeps_the_position(broker: Broker) -> None:
    await publish_n(broker, "a", 3)
    before = (await broker.history("a", HistoryQuery(), KEEP)).position
    await broker.remove_history("a")
    result = await broker.history("a", HistoryQuery(limit=-1), KEEP)
    assert result.publications == []
    assert result.position == before


@pytest.mark.gen_test
async def test_offsets_continue_after_remove_history(broker: Broker) -> None:
    await publish_n(broker, "a", 3)
    before = (await broker.history("a", HistoryQuery(), KEEP)).position
    await broker.remove_history("a")
    assert await broker.publish("a", "x", KEEP) == StreamPosition(4, before.epoch)


@pytest.mark.gen_test
async def test_remove_history_of_an_unknown_channel_is_harmless(broker: Broker) -> None:
    await broker.remove_history("never")
    result = await broker.history("never", HistoryQuery(limit=-1), KEEP)
    assert result.publications == []


# ---------------------------------------------------------------------------
# Presence


@pytest.mark.gen_test
async def test_presence_of_an_empty_channel_is_empty(presence: PresenceManager) -> None:
    assert await presence.presence("a") == {}
    assert await presence.presence_stats("a") == PresenceStats(0, 0)


@pytest.mark.gen_test
async def test_added_client_appears_in_presence_with_its_info(presence: PresenceManager) -> None:
    await presence.add_presence("a", "c1", ALICE)
    assert await presence.presence("a") == {"c1": ALICE}


@pytest.mark.gen_test
async def test_removed_client_disappears_from_presence(presence: PresenceManager) -> None:
    await presence.add_presence("a", "c1", ALICE)
    await presence.add_presence("a", "c2", BOB)
    await presence.remove_presence("a", "c1")
    assert await presence.presence("a") == {"c2": BOB}


@pytest.mark.gen_test
async def test_presence_is_per_channel(presence: PresenceManager) -> None:
    await presence.add_presence("a", "c1", ALICE)
    await presence.add_presence("b", "c2", BOB)
    assert await presence.presence("a") == {"c1": ALICE}
    assert await presence.presence("b") == {"c2": BOB}


@pytest.mark.gen_test
async def test_adding_a_client_again_replaces_its_info(presence: PresenceManager) -> None:
    await presence.add_presence("a", "c1", ALICE)
    updated = ClientInfo("alice", "c1", {"name": "Alice"}, {"role": "mod"})
    await presence.add_presence("a", "c1", updated)
    assert await presence.presence("a") == {"c1": updated}


@pytest.mark.gen_test
async def test_removing_an_absent_client_is_harmless(presence: PresenceManager) -> None:
    await presence.remove_presence("a", "nobody")
    await presence.add_presence("a", "c1", ALICE)
    await presence.remove_presence("a", "nobody")
    assert await presence.presence("a") == {"c1": ALICE}


@pytest.mark.gen_test
async def test_presence_stats_count_clients_and_distinct_users(
    presence: PresenceManager,
) -> None:
    await presence.add_presence("a", "c1", ClientInfo("alice", "c1"))
    await presence.add_presence("a", "c2", ClientInfo("alice", "c2"))
    await presence.add_presence("a", "c3", ClientInfo("bob", "c3"))
    assert await presence.presence_stats("a") == PresenceStats(num_clients=3, num_users=2)


@pytest.mark.gen_test
async def test_presence_stats_follow_removals(presence: PresenceManager) -> None:
    await presence.add_presence("a", "c1", ClientInfo("alice", "c1"))
    await presence.add_presence("a", "c2", ClientInfo("bob", "c2"))
    await presence.remove_presence("a", "c2")
    assert await presence.presence_stats("a") == PresenceStats(num_clients=1, num_users=1)


@pytest.mark.gen_test
async def test_presence_returns_a_copy_the_caller_may_change(presence: PresenceManager) -> None:
    await presence.add_presence("a", "c1", ALICE)
    snapshot = await presence.presence("a")
    snapshot.clear()
    assert await presence.presence("a") == {"c1": ALICE}


# ---------------------------------------------------------------------------
# Idempotent publishing


@pytest.mark.gen_test
async def test_a_repeated_idempotency_key_returns_the_first_position(broker: Broker) -> None:
    first = await broker.publish("a", "x", KEEP, idempotency_key="k")
    again = await broker.publish("a", "y", KEEP, idempotency_key="k")
    assert again == first


@pytest.mark.gen_test
async def test_a_repeated_idempotency_key_is_neither_delivered_nor_kept(
    broker: Broker, handler: RecordingHandler
) -> None:
    await broker.subscribe(["a"])
    await broker.publish("a", "x", KEEP, idempotency_key="k")
    await broker.publish("a", "y", KEEP, idempotency_key="k")
    await broker.publish("a", "end", KEEP)
    await handler.wait_for(lambda: len(handler.publications) >= 2)
    assert handler.data("a") == ["x", "end"]
    assert await offsets(broker, "a", HistoryQuery(limit=-1)) == [1, 2]


@pytest.mark.gen_test
async def test_idempotency_keys_are_per_channel(broker: Broker) -> None:
    await broker.publish("a", "x", KEEP, idempotency_key="k")
    assert (await broker.publish("b", "x", KEEP, idempotency_key="k")).offset == 1
    assert (await broker.publish("a", "x", KEEP, idempotency_key="other")).offset == 2


@pytest.mark.gen_test
async def test_a_repeated_idempotency_key_without_history_is_not_delivered(
    broker: Broker, handler: RecordingHandler
) -> None:
    await broker.subscribe(["a"])
    assert await broker.publish("a", "x", NO_HISTORY, idempotency_key="k") == StreamPosition(0, "")
    assert await broker.publish("a", "y", NO_HISTORY, idempotency_key="k") == StreamPosition(0, "")
    await broker.publish("a", "end", NO_HISTORY)
    await handler.wait_for(lambda: len(handler.publications) >= 2)
    assert handler.data("a") == ["x", "end"]


@pytest.mark.gen_test
async def test_an_idempotency_key_publishes_again_after_its_window(
    broker: Broker, clock: Clock
) -> None:
    await broker.publish("a", "x", KEEP, idempotency_key="k", idempotency_window=0.3)
    await clock.advance(0.5)
    again = await broker.publish("a", "x", KEEP, idempotency_key="k", idempotency_window=0.3)
    assert again.offset == 2


@pytest.mark.gen_test
async def test_concurrent_publishes_with_one_idempotency_key_publish_once(broker: Broker) -> None:
    positions = await asyncio.gather(
        *(broker.publish("a", i, KEEP, idempotency_key="k") for i in range(20))
    )
    assert {p.offset for p in positions} == {1}
    assert await offsets(broker, "a", HistoryQuery(limit=-1)) == [1]


# ---------------------------------------------------------------------------
# Control stream


@pytest.mark.gen_test
async def test_control_messages_reach_the_sender_in_order(
    broker: Broker, handler: RecordingHandler
) -> None:
    for i in range(5):
        await broker.publish_control(b"m%d" % i)
    await handler.wait_for(lambda: len(handler.controls) == 5)
    assert handler.controls == [b"m0", b"m1", b"m2", b"m3", b"m4"]


@pytest.mark.gen_test
async def test_control_messages_need_no_channel_subscription(
    broker: Broker, handler: RecordingHandler
) -> None:
    await broker.subscribe(["a"])
    await broker.unsubscribe(["a"])
    await broker.publish_control(b"\x00binary\xff")
    await handler.wait_for(lambda: len(handler.controls) == 1)
    assert handler.controls == [b"\x00binary\xff"]
    assert handler.publications == []


@pytest.mark.gen_test
async def test_a_batch_refresh_adds_every_entry_to_its_channel(presence: PresenceManager) -> None:
    channels = [f"room:{n}" for n in range(20)]  # spread over the shards, where sharded
    await presence.add_presence_many(
        [(channel, f"c{n}", ClientInfo(f"u{n}", f"c{n}")) for n, channel in enumerate(channels)]
    )
    for n, channel in enumerate(channels):
        assert set(await presence.presence(channel)) == {f"c{n}"}


@pytest.mark.gen_test
async def test_a_users_leases_hold_its_cap_wherever_the_backend_keeps_them(
    presence: PresenceManager,
) -> None:
    leases = presence.user_leases()
    if leases is None:  # the memory presence: this process is the whole cluster
        assert isinstance(presence, MemoryPresence)
        return
    users = [f"user{n}" for n in range(10)]
    for user in users:
        assert await leases.acquire(user, f"{user}-1", 1, 30.0)
        assert not await leases.acquire(user, f"{user}-2", 1, 30.0)
    await leases.renew([(user, f"{user}-1") for user in users], 30.0)
    assert [await leases.count(user) for user in users] == [1] * 10
