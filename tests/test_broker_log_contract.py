"""The broker's side of the durable log (server/broker/base.py, `log_lag`, `log_stored`,
`log_lagging`, `restart_epoch`): a logged channel's stream keeps what the log has
not stored, whatever its size and TTL say, and refuses publishes past the lag limit.

Each test runs on every broker of tests/broker_fixtures.py: memory, one Valkey,
client-side shards and a Redis Cluster.
"""

from __future__ import annotations

import pytest
from wsfan.broker.base import Broker, HistoryOptions, HistoryQuery, LogState
from wsfan.errors import ErrorCode, ReplyError
from wsfan.protocol import StreamPosition

from tests.broker_fixtures import Clock
from tests.test_broker_contract import offsets, publish_n

LOGGED = HistoryOptions(size=3, ttl=1.0, meta_ttl=3600.0, log_lag=100)
ALL = HistoryQuery(limit=-1)


async def epoch_of(broker: Broker, channel: str) -> str:
    return (await broker.history(channel, HistoryQuery(), LOGGED)).position.epoch


@pytest.mark.gen_test
async def test_a_logged_stream_keeps_what_the_log_has_not_stored_past_its_size(
    broker: Broker,
) -> None:
    await publish_n(broker, "log:a", 10, LOGGED)
    assert await offsets(broker, "log:a", ALL, LOGGED) == list(range(1, 11))


@pytest.mark.gen_test
async def test_a_stored_run_moves_the_checkpoint_and_the_window_shrinks_to_its_size(
    broker: Broker,
) -> None:
    await publish_n(broker, "log:a", 10, LOGGED)
    epoch = await epoch_of(broker, "log:a")
    assert await broker.log_stored("log:a", epoch, [(1, 8)], LOGGED) == 8
    assert await offsets(broker, "log:a", ALL, LOGGED) == [8, 9, 10]
    assert await broker.log_stored("log:a", epoch, [(9, 10)], LOGGED) == 10
    assert await offsets(broker, "log:a", ALL, LOGGED) == [8, 9, 10]


@pytest.mark.gen_test
async def test_runs_stored_out_of_order_count_once_the_checkpoint_reaches_them(
    broker: Broker,
) -> None:
    await publish_n(broker, "log:a", 9, LOGGED)
    epoch = await epoch_of(broker, "log:a")
    assert await broker.log_stored("log:a", epoch, [(4, 6), (8, 9)], LOGGED) == 0
    assert await offsets(broker, "log:a", ALL, LOGGED) == list(range(1, 10))
    assert await broker.log_stored("log:a", epoch, [(1, 3)], LOGGED) == 6
    assert await broker.log_stored("log:a", epoch, [(7, 7)], LOGGED) == 9


@pytest.mark.gen_test
async def test_the_checkpoint_never_moves_back(broker: Broker) -> None:
    await publish_n(broker, "log:a", 5, LOGGED)
    epoch = await epoch_of(broker, "log:a")
    assert await broker.log_stored("log:a", epoch, [(1, 5)], LOGGED) == 5
    assert await broker.log_stored("log:a", epoch, [(1, 2)], LOGGED) == 5


@pytest.mark.gen_test
async def test_runs_of_another_epoch_are_ignored(broker: Broker) -> None:
    await publish_n(broker, "log:a", 5, LOGGED)
    assert await broker.log_stored("log:a", "not-the-epoch", [(1, 5)], LOGGED) == -1
    assert await offsets(broker, "log:a", ALL, LOGGED) == [1, 2, 3, 4, 5]


@pytest.mark.gen_test
async def test_the_history_ttl_spares_publications_the_log_has_not_stored(
    broker: Broker, clock: Clock
) -> None:
    await publish_n(broker, "log:a", 4, LOGGED)
    await clock.advance(1.5)
    assert await offsets(broker, "log:a", ALL, LOGGED) == [1, 2, 3, 4]


@pytest.mark.gen_test
async def test_the_history_ttl_applies_again_once_the_log_caught_up(
    broker: Broker, clock: Clock
) -> None:
    await publish_n(broker, "log:a", 4, LOGGED)
    epoch = await epoch_of(broker, "log:a")
    await broker.log_stored("log:a", epoch, [(1, 4)], LOGGED)
    await clock.advance(1.5)
    assert await offsets(broker, "log:a", ALL, LOGGED) == []


@pytest.mark.gen_test
async def test_a_publish_at_the_lag_limit_is_refused_as_temporary(broker: Broker) -> None:
    options = HistoryOptions(size=3, ttl=60.0, meta_ttl=3600.0, log_lag=5)
    await publish_n(broker, "log:a", 5, options)
    with pytest.raises(ReplyError) as refused:
        await broker.publish("log:a", "sixth", options)
    assert refused.value.code is ErrorCode.INTERNAL and refused.value.temporary
    assert (await broker.history("log:a", HistoryQuery(), options)).position.offset == 5


@pytest.mark.gen_test
async def test_publishing_resumes_once_the_log_catches_up(broker: Broker) -> None:
    options = HistoryOptions(size=3, ttl=60.0, meta_ttl=3600.0, log_lag=5)
    await publish_n(broker, "log:a", 5, options)
    epoch = await epoch_of(broker, "log:a")
    await broker.log_stored("log:a", epoch, [(1, 1)], options)
    position = await broker.publish("log:a", "sixth", options)
    assert position == StreamPosition(6, epoch)


@pytest.mark.gen_test
async def test_channels_that_are_not_logged_are_never_refused(broker: Broker) -> None:
    options = HistoryOptions(size=3, ttl=60.0, meta_ttl=3600.0)
    await publish_n(broker, "news", 50, options)
    assert await offsets(broker, "news", ALL, options) == [48, 49, 50]


@pytest.mark.gen_test
async def test_lagging_lists_logged_channels_behind_their_top_by_prefix(broker: Broker) -> None:
    await publish_n(broker, "log:a", 3, LOGGED)
    await publish_n(broker, "log:b", 2, LOGGED)
    await publish_n(broker, "other:c", 2, LOGGED)
    await broker.log_stored("log:b", await epoch_of(broker, "log:b"), [(1, 2)], LOGGED)
    found = await broker.log_lagging(["log:"])
    epoch = await epoch_of(broker, "log:a")
    assert found == [LogState("log:a", epoch, 3, 0)]


@pytest.mark.gen_test
async def test_restart_epoch_starts_over_when_the_top_is_below_what_was_acknowledged(
    broker: Broker,
) -> None:
    await publish_n(broker, "log:a", 3, LOGGED)
    epoch = await epoch_of(broker, "log:a")
    new = await broker.restart_epoch("log:a", epoch, 5, LOGGED)
    assert new != epoch
    assert await broker.publish("log:a", "again", LOGGED) == StreamPosition(1, new)
    assert await offsets(broker, "log:a", ALL, LOGGED) == [1]


@pytest.mark.gen_test
async def test_restart_epoch_leaves_a_stream_that_kept_everything(broker: Broker) -> None:
    await publish_n(broker, "log:a", 3, LOGGED)
    epoch = await epoch_of(broker, "log:a")
    assert await broker.restart_epoch("log:a", epoch, 3, LOGGED) == epoch
    assert await broker.restart_epoch("log:a", "older", 9, LOGGED) == epoch
    assert await offsets(broker, "log:a", ALL, LOGGED) == [1, 2, 3]
