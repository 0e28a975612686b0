"""Persistence as the node sees it: queue publications for the durable log, read
history that reaches past the broker's window, and retained channel state.

The broker (Redis) holds a short window; the log (MongoDB) holds what namespaces
with `persist` keep. Reads combine the two into one gapless answer or none:
offsets are exact, so a range either comes back complete or the caller gets
`ReplyError(UNRECOVERABLE_POSITION)`, the same as when the broker alone cannot
serve it. Nothing here ever sits on the delivery path; while the log's writes
fail, reads skip MongoDB instead of waiting for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from server.broker.base import HistoryQuery, HistoryResult
from server.config import ChannelOptions, PersistSettings, Settings
from server.errors import ErrorCode, ReplyError
from server.protocol import ClientInfo, Publication, StreamPosition
from server.store.mongo import MongoStore
from server.store.records import LogRecord, RetainedState
from server.store.writer import LogWriter, WriterStats

__all__ = ["BrokerRead", "Durable", "spill_dir"]

log = logging.getLogger(__name__)

BrokerRead = Callable[[HistoryQuery], Awaitable[HistoryResult]]
"""The broker's history of one channel."""


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


class Durable:
    def __init__(self, store: MongoStore, settings: PersistSettings, spill_dir: Path) -> None:
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
        )
        self._shutdown_timeout = settings.shutdown_timeout
        self._indexer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Create indexes when MongoDB answers (in the background when it does not)."""
        self.writer.start()
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
        if self._indexer is not None:
            self._indexer.cancel()
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
        ttl = options.persist_ttl
        self.writer.put(LogRecord.of(channel, pub, time.time(), ttl, options.retained))

    # Reading ------------------------------------------------------------------

    async def _read_log(
        self, channel: str, epoch: str, after: int, upto: int, reverse: bool = False
    ) -> list[Publication] | None:
        """Offsets (after, upto] from MongoDB, or None when it cannot answer now."""
        if not self.writer.stats.healthy:
            return None
        try:
            return await asyncio.wait_for(
                self.store.read_log(channel, epoch, after, upto, reverse), self._read_timeout
            )
        except Exception as exc:
            log.warning("MongoDB history of %r failed: %s", channel, exc)
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
        logged = await self._read_log(channel, since.epoch, since.offset, upto)
        if logged is None:
            raise _unrecoverable()
        pubs = _run_from(logged, since.offset + 1, 1)
        last = pubs[-1].offset if pubs else since.offset
        if last < upto:  # the newest ones may not be written yet: the broker has them
            rest = await read(HistoryQuery(StreamPosition(last, since.epoch), upto - last))
            pubs += rest.publications
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
