"""The queue between fan-out and the durable log.

`put` never waits: delivery goes on whatever MongoDB does. A background task
writes the queue in batches (size or time, whichever comes first). While the
sink fails or is slow, the queue grows to `queue_max` records in memory; past
that, the oldest records go to a spill file (see `spill.py`), replayed once
writes succeed again, and at the next start if the process stopped first.
`close` flushes what it can within its timeout and spills the rest; a record
put after `close` goes straight to a spill file. After each successful write
`on_written` hears of the batch (the durable log moves its checkpoint there).

Writes must be idempotent (the store ignores duplicates of a channel, epoch and
offset): a batch that timed out may have been written, and is written again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from .records import LogRecord
from .spill import SpillFile, Spool

__all__ = ["LogWriter", "Sink", "WriterStats"]

log = logging.getLogger(__name__)

Sink = Callable[[list[LogRecord]], Awaitable[None]]
"""Writes one batch; raises when it could not (the batch is then retried)."""
Written = Callable[[list[LogRecord]], Awaitable[None]]
"""Told of each batch once it is written; its failures are its own (logged, not retried)."""


@dataclass(slots=True)
class WriterStats:
    """What the metrics endpoint shows about the durable log's queue."""

    queued: int = 0  # records in memory now
    spill_bytes: int = 0  # bytes in spill files this process holds
    written: int = 0  # records written since start
    batches: int = 0
    last_batch: int = 0
    max_batch: int = 0
    spilled: int = 0  # records sent to spill files since start
    replayed: int = 0  # records written back from spill files
    failures: int = 0
    last_latency: float = 0.0  # seconds of the last successful write
    max_latency: float = 0.0
    healthy: bool = True  # the last write succeeded


class LogWriter:
    def __init__(
        self,
        sink: Sink,
        spill_dir: Path,
        *,
        batch_size: int = 500,
        flush_interval: float = 0.05,
        queue_max: int = 50000,
        write_timeout: float = 5.0,
        retry_delay_max: float = 5.0,
        on_written: Written | None = None,
    ) -> None:
        self._sink = sink
        self._on_written = on_written
        self._closed = False
        self._spool = Spool(spill_dir)
        self._queue: deque[LogRecord] = deque()
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._queue_max = queue_max
        self._write_timeout = write_timeout
        self._retry_delay_max = retry_delay_max
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stats = WriterStats()
        self._in_flight = 0  # records taken from the queue, not yet written
        self._replaying = False  # spill files taken from the spool, not all written yet

    # Producer side ------------------------------------------------------------

    def put(self, record: LogRecord) -> None:
        """Queue one record; never blocks on MongoDB (spills past `queue_max`)."""
        if self._closed:  # nobody writes any more: the next start replays it
            self._spool.write([record])
            self._spool.close()
            self._stats.spilled += 1
            return
        self._queue.append(record)
        if len(self._queue) >= self._batch_size:
            self._wakeup.set()
        if len(self._queue) > self._queue_max:
            self._spill(len(self._queue) - self._queue_max // 2)

    def _spill(self, count: int) -> None:
        records = [self._queue.popleft() for _ in range(min(count, len(self._queue)))]
        if records:
            self._spool.write(records)
            self._stats.spilled += len(records)

    @property
    def stats(self) -> WriterStats:
        self._stats.queued = len(self._queue)
        self._stats.spill_bytes = self._spool.size
        return self._stats

    # Life cycle ---------------------------------------------------------------

    def start(self) -> None:
        """Start writing; spill files left by a previous run are replayed first."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    @property
    def idle(self) -> bool:
        """Nothing queued, being written, or waiting in spill files of this process."""
        return not (self._queue or self._in_flight or self._replaying or self._spool.has_pending())

    async def close(self, timeout: float = 5.0) -> None:
        """Write what the queue holds within `timeout`, spill the rest, stop."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        deadline = time.monotonic() + timeout
        while self._queue and time.monotonic() < deadline:
            if not await self._write(self._take(), deadline - time.monotonic()):
                break
        if self._queue:
            log.warning("MongoDB log: %d records spilled at shutdown", len(self._queue))
            self._spill(len(self._queue))
        self._spool.close()

    async def flush(self) -> None:
        """Wait until everything queued so far (spill files too) is written."""
        while not self.idle:
            self._wakeup.set()
            await asyncio.sleep(min(self._flush_interval, 0.01))

    # The writing task ---------------------------------------------------------

    def _take(self) -> list[LogRecord]:
        count = min(self._batch_size, len(self._queue))
        return [self._queue.popleft() for _ in range(count)]

    async def _write(
        self, batch: list[LogRecord], timeout: float | None = None, requeue: bool = True
    ) -> bool:
        """Write one batch; False when it failed. With `requeue` (a batch taken from
        the queue) a batch not known written goes back to the queue's head, on
        failure and on cancellation alike."""
        started = time.monotonic()
        self._in_flight += len(batch)
        try:
            await asyncio.wait_for(self._sink(batch), timeout or self._write_timeout)
        except asyncio.CancelledError:
            if requeue:
                self._queue.extendleft(reversed(batch))
            raise
        except Exception as exc:
            if requeue:
                self._queue.extendleft(reversed(batch))
            self._stats.failures += 1
            if self._stats.healthy:
                log.warning("MongoDB log write of %d records failed: %s", len(batch), exc)
            self._stats.healthy = False
            return False
        finally:
            self._in_flight -= len(batch)
        elapsed = time.monotonic() - started
        stats = self._stats
        if not stats.healthy:
            log.info("MongoDB log writes succeed again")
        stats.healthy = True
        stats.written += len(batch)
        stats.batches += 1
        stats.last_batch = len(batch)
        stats.max_batch = max(stats.max_batch, len(batch))
        stats.last_latency = elapsed
        stats.max_latency = max(stats.max_latency, elapsed)
        if self._on_written is not None:
            try:
                await self._on_written(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the records are stored; only the news is lost
                log.debug("after a log write: %r", exc)
        return True

    async def _run(self) -> None:
        delay = 0.0
        replay_due = True  # a previous run may have left spill files
        while True:
            if delay:
                await asyncio.sleep(delay)
            elif len(self._queue) < self._batch_size:
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), self._flush_interval)
            if self._queue and not await self._write(self._take()):
                delay = self._backoff(delay)
                replay_due = True
                continue
            delay = 0.0
            if (replay_due or self._spool.has_pending()) and not self._queue:
                replay_due = False
                if not await self._replay():
                    delay = self._backoff(delay)
                    replay_due = True

    def _backoff(self, delay: float) -> float:
        base = min(self._retry_delay_max, max(0.05, delay * 2))
        return base * random.uniform(0.5, 1.0)

    async def _replay(self) -> bool:
        """Write spill files back, a batch at a time, fresh records first."""
        files = self._spool.take()
        self._replaying = bool(files)
        done = 0
        try:
            for spill in files:
                if not await self._replay_file(spill):
                    return False
                spill.remove()
                done += 1
            return True
        finally:  # on failure and on cancellation (close) alike
            self._spool.give_back(files[done:])
            self._replaying = False

    async def _replay_file(self, spill: SpillFile) -> bool:
        batch: list[LogRecord] = []
        for record in spill.records():
            batch.append(record)
            if len(batch) >= self._batch_size:
                if not await self._write_replayed(batch):
                    return False
                batch = []
        return not batch or await self._write_replayed(batch)

    async def _write_replayed(self, batch: list[LogRecord]) -> bool:
        # Live records go first; replay resumes (from the file's start).
        if self._queue and not await self._write(self._take()):
            return False
        if not await self._write(batch, requeue=False):
            return False
        self._stats.replayed += len(batch)
        return True
