"""Persistence as the node sees it: the durable log of persisted channels, history
that reaches past the broker's window, and retained channel state.

The broker (Redis) holds a short window; the log (MongoDB) holds what namespaces
with `persist` keep. Reads combine the two into one gapless answer or none:
offsets are exact, so a range either comes back complete or the caller gets
`ReplyError(UNRECOVERABLE_POSITION)`, the same as when the broker alone cannot
serve it. Nothing here ever sits on the delivery path; while the log's writes
fail, reads skip MongoDB instead of waiting for it.

The log does not depend on the publisher seeing the broker's answer. The broker
keeps every publication of a persisted channel until the log's checkpoint (in
the broker, per channel) passes it, whatever the window's size and TTL say. The
publishing node queues what it published and moves the checkpoint once MongoDB
took it; a sweep on every node finds channels whose checkpoint stopped below
their top (a publisher that died, or lost the broker's answer) and fills the
log from the broker's stream. So the window and the log never leave a seam, and
an acknowledged publication reaches the log unless the broker itself loses it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .broker.base import Broker, HistoryOptions, HistoryQuery, HistoryResult, LogState
from .config import ChannelOptions, PersistSettings, Settings
from .errors import ErrorCode, ReplyError
from .logs import Repeated
from .protocol import ClientInfo, Publication, StreamPosition
from .store.mongo import MongoStore
from .store.records import LogRecord, RetainedState
from .store.writer import LogWriter, WriterStats

__all__ = ["BrokerRead", "ChannelLog", "LogOptions", "spill_dir"]

log = logging.getLogger(__name__)

BrokerRead = Callable[[HistoryQuery], Awaitable[HistoryResult]]
"""The broker's history of one channel."""
LogOptions = Callable[[str], tuple[ChannelOptions, HistoryOptions] | None]
"""A channel's namespace options and broker options, if the channel is persisted."""

ACKNOWLEDGED_KEPT = 10000
"""Channels whose latest acknowledged position a node remembers (to notice a
broker that lost publications it had accepted)."""
FORWARD_ATTEMPTS = 5
"""Rounds of reading the log, then the broker's window, in one forward history read
(each round reads on from where the last one stopped)."""
READ_PAUSE = 1.0
"""Seconds MongoDB reads are not tried after one failed."""
ACKNOWLEDGED_RECENT = 60.0
"""Seconds after its last acknowledged publication a channel is checked after a
broker reconnect (a broker crash loses at most its last fsync interval)."""


def spill_dir(settings: Settings) -> Path:
    """Where this deployment's spill files live (shared by its workers)."""
    return Path(settings.persist.spill_dir or Path(settings.embedded.dir) / "spill")


def _unrecoverable() -> ReplyError:
    return ReplyError(ErrorCode.UNRECOVERABLE_POSITION)


def _run_from(pubs: list[Publication], first: int, step: int) -> list[Publication]:
    """The leading publications whose offsets go first, first+step, ... without a hole."""
    run: list[Publication] = []
    for pub in pubs:
        if pub.offset != first + step * len(run):
            break
        run.append(pub)
    return run


def _runs(offsets: list[int]) -> list[tuple[int, int]]:
    """Sorted offsets as (first, last) runs of consecutive ones."""
    runs: list[tuple[int, int]] = []
    for offset in sorted(offsets):
        if runs and offset <= runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], max(runs[-1][1], offset))
        else:
            runs.append((offset, offset))
    return runs


class ChannelLog:
    """The MongoDB log of persisted channels, with retained state, as one node uses it."""

    def __init__(
        self,
        store: MongoStore,
        settings: PersistSettings,
        spill_dir: Path,
        repeat_interval: float = 10.0,
    ) -> None:
        self.store = store
        self._read_timeout = settings.read_timeout
        self.writer = LogWriter(
            store.write_log,
            spill_dir,
            batch_size=settings.batch_size,
            flush_interval=settings.flush_interval,
            queue_max=settings.queue_max,
            write_timeout=settings.write_timeout,
            retry_delay_max=settings.retry_delay_max,
            on_written=self._stored,
        )
        self._shutdown_timeout = settings.shutdown_timeout
        self._sweep_interval = settings.sweep_interval
        self._flush_interval = settings.flush_interval
        self._indexer: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._broker: Broker | None = None
        self._options: LogOptions = lambda channel: None
        self._prefixes: tuple[str, ...] = ()
        # channel -> (epoch, highest offset acknowledged by this node, when), newest last
        self._acknowledged: OrderedDict[str, tuple[str, int, float]] = OrderedDict()
        self._stalled: dict[str, tuple[str, int]] = {}  # lagging at the last sweep
        self._checkpoint_failed = Repeated(log, repeat_interval)
        self._sweep_failed = Repeated(log, repeat_interval)
        self._read_failed = Repeated(log, repeat_interval)
        self._reads_paused_until = 0.0
        self.filled = 0  # publications the sweep took from the broker into the log
        self.lost = 0  # publications the broker dropped before the log had them
        self.restarted_epochs = 0

    async def start(
        self,
        broker: Broker | None = None,
        options: LogOptions | None = None,
        prefixes: tuple[str, ...] = (),
    ) -> None:
        """Start writing, and (given the broker) following it: `options` says which
        channels are persisted, `prefixes` where to look for them (namespaces).
        Indexes are created when MongoDB answers (in the background when it does not)."""
        self._broker = broker
        if options is not None:
            self._options = options
        self._prefixes = prefixes
        self.writer.start()
        if broker is not None and prefixes:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())
        try:
            await asyncio.wait_for(self.store.ensure_indexes(), self._read_timeout)
        except Exception as exc:
            log.warning("MongoDB indexes not created yet (%s); retrying in the background", exc)
            self._indexer = asyncio.get_running_loop().create_task(self._ensure_indexes_later())

    async def _ensure_indexes_later(self, delay: float = 1.0) -> None:
        while True:
            await asyncio.sleep(delay)
            try:
                await self.store.ensure_indexes()
                return
            except Exception:
                delay = min(delay * 2, 30.0)

    async def close(self) -> None:
        """Flush the queue within `persist.shutdown_timeout`, spill the rest."""
        for task in (self._indexer, self._sweeper):
            if task is not None:
                task.cancel()
        await self.writer.close(self._shutdown_timeout)

    @property
    def stats(self) -> WriterStats:
        return self.writer.stats

    # Writing ------------------------------------------------------------------

    def record(
        self,
        channel: str,
        options: ChannelOptions,
        position: StreamPosition,
        data: Any,
        info: ClientInfo | None,
        tags: dict[str, str] | None,
    ) -> None:
        """Queue an accepted publication for the log; returns at once."""
        pub = Publication(data, position.offset, info, tags, position.epoch)
        self._remember(channel, position)
        self._put(channel, options, pub)

    def _put(self, channel: str, options: ChannelOptions, pub: Publication) -> None:
        ttl = options.persist_ttl
        self.writer.put(LogRecord.of(channel, pub, time.time(), ttl, options.retained))

    def _remember(self, channel: str, position: StreamPosition) -> None:
        known = self._acknowledged.get(channel)
        offset = position.offset
        if known is not None and known[0] == position.epoch:
            offset = max(offset, known[1])
        self._acknowledged[channel] = (position.epoch, offset, time.monotonic())
        self._acknowledged.move_to_end(channel)
        if len(self._acknowledged) > ACKNOWLEDGED_KEPT:
            self._acknowledged.popitem(last=False)

    # Following the broker -----------------------------------------------------

    async def _stored(self, batch: list[LogRecord]) -> None:
        """MongoDB took `batch`: move each channel's checkpoint in the broker."""
        if self._broker is None:
            return
        offsets: dict[tuple[str, str], list[int]] = {}
        for record in batch:
            offsets.setdefault((record.channel, record.epoch), []).append(record.offset)
        for (channel, epoch), found in offsets.items():
            known = self._options(channel)
            if known is None:
                continue
            try:
                await self._broker.log_stored(channel, epoch, _runs(found), known[1])
            except Exception as exc:  # the sweep moves it later
                self._checkpoint_failed("moving the log checkpoint of %r failed: %s", channel, exc)
                return
        if self._checkpoint_failed.failing:
            self._checkpoint_failed.recovered("log checkpoints move again")

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval)
            try:
                await self.sweep()
            except Exception as exc:
                self._sweep_failed("log sweep failed: %s", exc)
            else:
                if self._sweep_failed.failing:
                    self._sweep_failed.recovered("log sweep works again")

    async def sweep(self) -> int:
        """Fill the log of channels whose checkpoint has not moved since the last
        sweep (nobody is writing their publications) from the broker's stream.
        Skipped while this node's own queue is not written yet: those channels'
        checkpoints move once it is. Returns how many publications were queued."""
        if self._broker is None or not self.writer.idle:
            return 0
        lagging = await self._broker.log_lagging(self._prefixes)
        stalled, queued = {}, 0
        for state in lagging:
            known = self._options(state.channel)
            if known is None:
                continue
            seen = (state.epoch, state.logged)
            if self._stalled.get(state.channel) == seen:
                queued += await self._fill(state, *known)
            else:
                stalled[state.channel] = seen
        self._stalled = stalled
        return queued

    async def _fill(self, state: LogState, options: ChannelOptions, history: HistoryOptions) -> int:
        assert self._broker is not None
        window = await self._broker.history(state.channel, HistoryQuery(limit=-1), history)
        if window.position.epoch != state.epoch:
            return 0
        pubs = [p for p in window.publications if p.offset > state.logged]
        first = pubs[0].offset if pubs else window.position.offset + 1
        if first > state.logged + 1:  # the broker dropped them (data lost, or removed)
            gap = (state.logged + 1, first - 1)
            self.lost += gap[1] - gap[0] + 1
            log.warning(
                "log of %r: offsets %d-%d are gone from the broker before the log had them",
                state.channel,
                *gap,
            )
            await self._broker.log_stored(state.channel, state.epoch, [gap], history)
        for pub in pubs:
            self._put(state.channel, options, pub)
        self.filled += len(pubs)
        if pubs:
            log.info(
                "log of %r: filling offsets %d-%d from the broker",
                state.channel,
                pubs[0].offset,
                pubs[-1].offset,
            )
        return len(pubs)

    async def check_broker_lost_nothing(self) -> int:
        """After a broker reconnect: a channel whose top offset is now below what this
        node saw acknowledged (or the log holds) lost its tail, e.g. to a crash
        between fsyncs; it restarts in a new epoch, so no (epoch, offset) pair ever
        names two publications. Returns how many channels restarted."""
        if self._broker is None:
            return 0
        # Other nodes' queues may hold the broker's lost tail: give their writers
        # a moment to store it, so the log's highest offset tells.
        await asyncio.sleep(min(2 * self._flush_interval + 0.1, 1.0))
        restarted = 0
        recent = time.monotonic() - ACKNOWLEDGED_RECENT
        for channel, (epoch, acknowledged, when) in list(self._acknowledged.items()):
            known = self._options(channel)
            if known is None or when < recent:
                continue
            top = acknowledged
            try:
                logged = await asyncio.wait_for(
                    self.store.top_offset(channel, epoch), self._read_timeout
                )
                top = max(top, logged)
            except Exception as exc:  # what this node saw is all it can go by
                log.info("MongoDB top offset of %r unknown: %s", channel, exc)
            now = await self._broker.restart_epoch(channel, epoch, top, known[1])
            if now and now != epoch:
                restarted += 1
                self.restarted_epochs += 1
                self._acknowledged.pop(channel, None)
                log.warning(
                    "broker lost publications of %r (acknowledged up to offset %d): new epoch %s",
                    channel,
                    top,
                    now,
                )
        return restarted

    # Reading ------------------------------------------------------------------

    async def _read_log(
        self, channel: str, epoch: str, after: int, upto: int, reverse: bool = False
    ) -> list[Publication] | None:
        """Offsets (after, upto] from MongoDB, or None when it cannot answer now.

        After a failed read, reads are not tried for `READ_PAUSE` seconds, so an
        outage costs one `read_timeout`, not one per request."""
        if time.monotonic() < self._reads_paused_until:
            return None
        try:
            return await asyncio.wait_for(
                self.store.read_log(channel, epoch, after, upto, reverse), self._read_timeout
            )
        except Exception as exc:
            self._reads_paused_until = time.monotonic() + READ_PAUSE
            self._read_failed("MongoDB history of %r failed: %s", channel, exc)
            return None

    async def history(self, channel: str, query: HistoryQuery, read: BrokerRead) -> HistoryResult:
        """`query` answered from the broker, reaching into the log where the
        broker's window does not go back far enough (queries with `since`)."""
        since = query.since
        if since is None:
            return await read(query)
        if query.reverse:
            return await self._backward(channel, query, since, await read(query))
        try:
            return await read(query)
        except ReplyError as exc:
            if exc.code is not ErrorCode.UNRECOVERABLE_POSITION:
                raise
        return await self._forward(channel, query, since, read)

    async def _forward(
        self, channel: str, query: HistoryQuery, since: StreamPosition, read: BrokerRead
    ) -> HistoryResult:
        position = (await read(HistoryQuery())).position
        if position.epoch != since.epoch or since.offset > position.offset:
            raise _unrecoverable()
        top = position.offset
        upto = top if query.limit < 0 else min(top, since.offset + query.limit)
        pubs: list[Publication] = []
        last = since.offset
        for _ in range(FORWARD_ATTEMPTS):
            logged = await self._read_log(channel, since.epoch, last, upto)
            if logged is None:  # nothing is lost, the log cannot answer now: retry later
                raise ReplyError(ErrorCode.INTERNAL, "the log cannot be read now; retry later")
            run = _run_from(logged, last + 1, 1)
            pubs += run
            last = run[-1].offset if run else last
            if last >= upto:
                break
            try:  # the newest ones may not be written yet: the broker has them
                rest = await read(HistoryQuery(StreamPosition(last, since.epoch), upto - last))
            except ReplyError as exc:
                # The checkpoint moved past `last` while the log was read, and the
                # window with it: the log holds those now, read on from there.
                if exc.code is not ErrorCode.UNRECOVERABLE_POSITION:
                    raise
                continue
            pubs += rest.publications
            break
        if len(_run_from(pubs, since.offset + 1, 1)) != upto - since.offset:
            raise _unrecoverable()
        return HistoryResult(pubs, position)

    async def _backward(
        self, channel: str, query: HistoryQuery, since: StreamPosition, found: HistoryResult
    ) -> HistoryResult:
        """Offsets below `since`, newest first: the broker's part, then older from the log."""
        if found.position.epoch != since.epoch:
            return found
        newest = min(since.offset - 1, found.position.offset)
        pubs = _run_from(found.publications, newest, -1)
        want = newest if query.limit < 0 else min(query.limit, newest)
        if len(pubs) >= want:
            return found
        upto = pubs[-1].offset - 1 if pubs else newest
        after = max(0, newest - want)
        logged = await self._read_log(channel, since.epoch, after, upto, reverse=True)
        if logged is None:
            return HistoryResult(pubs, found.position)
        pubs += _run_from(logged, upto, -1)
        return HistoryResult(pubs, found.position)

    # Retained state -----------------------------------------------------------

    async def state(self, channel: str, read: BrokerRead) -> Publication | None:
        """The channel's retained state: whichever is newer of its latest publication
        (the broker's window) and the state stored in MongoDB (set through the API,
        or a publication the window no longer holds)."""
        latest = await read(HistoryQuery(limit=1, reverse=True))
        stored: RetainedState | None = None
        if self.writer.stats.healthy:
            try:
                stored = await asyncio.wait_for(self.store.get_state(channel), self._read_timeout)
            except Exception as exc:
                log.warning("MongoDB state of %r failed: %s", channel, exc)
        live = latest.publications[0] if latest.publications else None
        if stored is None:
            return live
        pub = stored.publication
        if live is not None and (pub.epoch != live.epoch or live.offset > pub.offset):
            return live
        return Publication(pub.data, 0, pub.info, pub.tags) if stored.explicit else pub

    async def set_state(self, channel: str, data: Any, position: StreamPosition) -> None:
        """Store an explicit state; it wins until the channel's next publication."""
        pub = Publication(data, position.offset, None, None, position.epoch)
        await asyncio.wait_for(
            self.store.set_state(channel, pub, datetime.now(UTC)), self._read_timeout
        )
