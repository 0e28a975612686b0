"""Channel sources: an async generator registered for a channel pattern runs
while a matching channel has subscribers, on one node of the cluster at a
time, and what it yields is published to the channel through `Node.publish`
(history, recovery and the durable log apply as to any publication).

Promises:
- Patterns are those of the server API's `channels` method (server/pattern.py);
  a channel runs the first registered pattern that matches it.
- Every node with subscribers of the channel contends for its lease
  (server/broker/leases.py); the holder runs the generator, renewing the lease
  every `app.source_takeover` / 3 seconds (its TTL is two thirds of it). The
  others try to take it every `app.source_takeover` / 3: when the holder dies,
  another node runs the source within `app.source_takeover` seconds. The holder
  lets go (and another takes over within that third) once its last local
  subscriber left.
- Publishes are fenced by the lease's token: a holder that lost the lease
  (paused past its TTL, then woken) has its next publish refused by the broker,
  in the same atomic step, and stops; it never publishes alongside the new one.
- A starting generator gets the channel's last publication (None when the
  channel keeps no history or has none), to resume where the last one stopped.
- A generator that raises, or whose item cannot be published, is logged in one
  line and started again (with the last publication) after a delay: 0.1 s,
  doubling with each failure in a row up to `RESTART_DELAY_MAX`, back to 0.1 s
  once an item was published. One that ends is started again the same way.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..broker.base import FENCED, Fence, HistoryQuery
from ..broker.leases import Leases
from ..config.settings import AppSettings
from ..errors import ReplyError
from ..logs import Repeated
from ..pattern import Pattern, compile_pattern
from ..protocol import Encoding, Publication, encode
from .hooks import SourceFactory

if TYPE_CHECKING:
    from ..node import Node

__all__ = ["LEASE_NAME", "RESTART_DELAY_MAX", "RESTART_DELAY_MIN", "SourceRunner"]

log = logging.getLogger(__name__)

LEASE_NAME = "source"
RESTART_DELAY_MIN = 0.1
RESTART_DELAY_MAX = 10.0


class SourceRunner:
    def __init__(
        self,
        node: Node,
        leases: Leases,
        sources: Mapping[str, SourceFactory],
        settings: AppSettings,
        member: str,
    ) -> None:
        """`sources`: pattern -> factory (ValueError names a malformed pattern);
        `member` names this node in lease tokens."""
        self._node = node
        self._leases = leases
        self._sources: list[tuple[Pattern, SourceFactory]] = []
        for pattern, factory in sources.items():
            try:
                self._sources.append((compile_pattern(pattern), factory))
            except ValueError as exc:
                raise ValueError(f"channel source pattern {pattern!r}: {exc}") from None
        self._member = member
        self._lease_ttl = settings.source_takeover * 2 / 3
        self._renew_interval = self._lease_ttl / 3
        self._try_interval = settings.source_takeover / 3
        self._failures = Repeated(log, node.settings.log.repeat_interval)
        self._running: dict[str, asyncio.Task[None]] = {}  # channel -> its contender
        self._stopping: dict[str, asyncio.Task[None]] = {}  # cancelled, releasing the lease
        self._closed = False

    def factory(self, channel: str) -> SourceFactory | None:
        """The source registered for `channel`, if any."""
        for pattern, factory in self._sources:
            if pattern.fullmatch(channel):
                return factory
        return None

    # The hub's listener (server/hub.py ChannelListener) ------------------------

    def occupied_here(self, channel: str) -> None:
        if self._closed or channel in self._running:
            return
        factory = self.factory(channel)
        if factory is not None:
            stopping = self._stopping.get(channel)  # back soon after it left: after that one
            task = asyncio.get_running_loop().create_task(self._contend(channel, factory, stopping))
            self._running[channel] = task

    def vacated_here(self, channel: str) -> None:
        task = self._running.pop(channel, None)
        if task is not None:
            task.cancel()  # it releases the lease
            self._stopping[channel] = task
            task.add_done_callback(lambda done: self._stopped(channel, done))

    def _stopped(self, channel: str, task: asyncio.Task[None]) -> None:
        if self._stopping.get(channel) is task:
            del self._stopping[channel]

    async def close(self, timeout: float = 2.0) -> None:
        """Stop every source here and release its lease (others take over at once)."""
        self._closed = True
        tasks = [*self._running.values(), *self._stopping.values()]
        self._running.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    # Holding a channel's lease --------------------------------------------------

    async def _contend(
        self, channel: str, factory: SourceFactory, stopping: asyncio.Task[None] | None
    ) -> None:
        if stopping is not None:
            await asyncio.wait([stopping])
        while not _cancelling():
            token = f"{self._member}:{secrets.token_hex(8)}"
            if await self._acquire(channel, token):
                try:
                    await self._hold(channel, factory, token)
                finally:
                    await self._release(channel, token)
            await asyncio.sleep(self._try_interval)

    async def _acquire(self, channel: str, token: str) -> bool:
        try:
            return await self._leases.acquire(channel, LEASE_NAME, token, self._lease_ttl)
        except Exception as exc:
            self._failures("channel source lease of %r failed: %s", channel, exc)
            return False

    async def _release(self, channel: str, token: str) -> None:
        try:
            await asyncio.wait_for(
                self._leases.release(channel, LEASE_NAME, token), self._renew_interval
            )
        except Exception as exc:  # it runs out by itself
            log.debug("releasing the source lease of %r failed: %r", channel, exc)

    async def _hold(self, channel: str, factory: SourceFactory, token: str) -> None:
        """Run the source while the lease is renewed; stop when it is lost."""
        runner = asyncio.get_running_loop().create_task(
            self._run(channel, factory, Fence(LEASE_NAME, token))
        )
        try:
            while True:
                done, _ = await asyncio.wait([runner], timeout=self._renew_interval)
                if done or not await self._acquire(channel, token):
                    if not done:
                        log.warning("channel source of %r: lease lost, stopped here", channel)
                    return
        finally:
            runner.cancel()
            await asyncio.wait([runner])

    # Running the generator -----------------------------------------------------

    async def _run(self, channel: str, factory: SourceFactory, fence: Fence) -> None:
        """Start, publish, start again after a failure; return once fenced out."""
        delay = RESTART_DELAY_MIN
        while not _cancelling():
            items: Any = None
            try:
                items = factory(channel, await self._last_publication(channel))
                async for item in items:
                    encode(item, Encoding.MSGPACK)  # TypeError before the broker keeps it
                    await self._node.publish(channel, item, fence=fence)
                    await asyncio.sleep(0)  # a turn for the loop, from a source that never awaits
                    delay = RESTART_DELAY_MIN
                log.info("channel source of %r ended; started again in %gs", channel, delay)
            except ReplyError as exc:
                if exc.message == FENCED:
                    log.warning("channel source of %r: another node holds it, stopped", channel)
                    return
                log.warning("channel source of %r: %s; started again in %gs", channel, exc, delay)
            except Exception as exc:
                log.warning("channel source of %r: %r; started again in %gs", channel, exc, delay)
            finally:
                await _close(items)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RESTART_DELAY_MAX)

    async def _last_publication(self, channel: str) -> Publication | None:
        if self._node.channel_options(channel).history_size <= 0:
            return None
        history = await self._node.reads.history(channel, HistoryQuery(limit=1, reverse=True))
        return history.publications[0] if history.publications else None


async def _close(items: Any) -> None:
    """Close a generator (its `finally` runs now, not when collected)."""
    close = getattr(items, "aclose", None)
    if close is not None:
        try:
            await close()
        except Exception as exc:
            log.debug("closing a channel source failed: %r", exc)


def _cancelling() -> bool:
    """Whether this task was asked to stop: redis-py may turn a cancel that lands
    inside a command into a connection error, which a loop here then catches."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
