"""What a node does when its broker connection comes back after a cut.

- With a MongoDB channel log, the log checks that the broker kept every
  publication it acknowledged (`ChannelLog.check_broker_lost_nothing`, which
  starts a new epoch where it did not); persisted publishes wait for that
  check, at most `redis.command_timeout`, so none reuses a lost offset. The
  broker takes commands again (`Broker.reconnect_checked`) once it is done.
- Subscribers of recoverable channels that missed publications meanwhile are
  told to resubscribe (and so recover them).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any

from .broker.base import Broker
from .config import Settings
from .errors import ErrorCode, ReplyError
from .protocol import StreamPosition

if TYPE_CHECKING:
    from .channel_log import ChannelLog
    from .session import ChannelSubscriber

__all__ = ["BrokerRecovery"]

log = logging.getLogger(__name__)


class BrokerRecovery:
    """Runs the checks after each broker reconnect; `wait_checked` holds persisted
    publishes while one is under way."""

    def __init__(
        self,
        settings: Settings,
        broker: Broker,
        durable: ChannelLog | None,
        channels: Callable[[], Iterable[str]],
        subscribers: Callable[[str], Iterable[ChannelSubscriber]],
        position: Callable[[str], Awaitable[StreamPosition]],
        spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]],
    ) -> None:
        self._settings = settings
        self._broker = broker
        self._durable = durable
        self._channels = channels
        self._subscribers = subscribers
        self._position = position
        self._spawn = spawn
        self._checked = asyncio.Event()  # cleared while the log checks the broker
        self._checked.set()

    def reconnected(self) -> None:
        if self._durable is None:
            self._broker.reconnect_checked()
        elif self._checked.is_set():
            self._checked.clear()
            self._spawn(self._check_broker_kept_publications(self._durable))
        self._spawn(self._check_positions())

    async def wait_checked(self) -> None:
        """Returns once no check is under way; ReplyError(100) if one outlasts
        `redis.command_timeout`."""
        if self._checked.is_set():
            return
        try:
            await asyncio.wait_for(
                asyncio.shield(self._checked.wait()), self._settings.redis.command_timeout
            )
        except TimeoutError:
            raise ReplyError(ErrorCode.INTERNAL) from None

    async def _check_broker_kept_publications(self, durable: ChannelLog, attempts: int = 5) -> None:
        try:
            for attempt in range(attempts):
                try:
                    await durable.check_broker_lost_nothing()
                    return
                except Exception as exc:
                    log.info("checking the broker after a reconnect failed: %s", exc)
                    await asyncio.sleep(0.1 * (attempt + 1))
        finally:
            self._checked.set()
            self._broker.reconnect_checked()

    async def _check_positions(self, attempts: int = 5) -> None:
        """Reads are retried a few times: right after a reconnect the command
        connections may still be stale. If the broker stays away, the next
        reconnect checks again."""
        for channel in list(self._channels()):
            options = self._settings.channel_options(channel)
            if options is None or not options.recoverable:
                continue
            for attempt in range(attempts):
                try:
                    position = await self._position(channel)
                    break
                except ReplyError:
                    await asyncio.sleep(0.1 * (attempt + 1))
            else:
                return
            for subscriber in list(self._subscribers(channel)):
                subscriber.check_position(channel, position)
