"""Reading a channel's stream: its position, its history (the broker's window, then
the MongoDB log for persisted namespaces), a retained namespace's state, and removing
history. Broker failures here become ReplyError(100), logged once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import TYPE_CHECKING, Any

from .broker.base import Broker, HistoryOptions, HistoryQuery, HistoryResult
from .config import ChannelOptions, Settings
from .errors import ErrorCode, ReplyError
from .logs import Repeated, temporary_failure
from .positions import SharedPositions
from .protocol import HistoryRequest, Publication, StreamPosition
from .replies import ReplyBounds

if TYPE_CHECKING:
    from .channel_log import ChannelLog

__all__ = ["ChannelReads"]


class ChannelReads:
    """The node's reads of channels. `options` names a channel's namespace options
    (ReplyError(102) for an unknown one); `history_options` the broker options of a
    namespace."""

    def __init__(
        self,
        settings: Settings,
        broker: Broker,
        durable: ChannelLog | None,
        options: Callable[[str], ChannelOptions],
        history_options: Callable[[ChannelOptions], HistoryOptions],
        failures: Repeated,
        spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]],
    ) -> None:
        self.settings = settings
        self.broker = broker
        self.durable = durable
        self.channel_options = options
        self.history_options = history_options
        self._broker_log = failures
        self._positions = SharedPositions(self._read_position, spawn)

    async def position(self, channel: str) -> StreamPosition:
        """The channel's current stream position (one broker read per event-loop
        turn, however many ask: see server/positions.py)."""
        return await self._positions.get(channel)

    async def _read_position(self, channel: str) -> StreamPosition:
        return (await self.history(channel, HistoryQuery())).position

    async def history(self, channel: str, query: HistoryQuery) -> HistoryResult:
        """The channel's history; for persisted namespaces a `since` older than the
        broker's window is served from the MongoDB log too (see `ChannelLog.history`)."""
        options = self.channel_options(channel)
        read = self._broker_history(channel, options)
        with temporary_failure(self._broker_log, "history of", channel):
            if options.persist and self.durable is not None:
                return await self.durable.history(channel, query, read)
            return await read(query)

    def _broker_history(
        self, channel: str, options: ChannelOptions
    ) -> Callable[[HistoryQuery], Awaitable[HistoryResult]]:
        """The broker's read of `channel` (the log reads past it through this)."""
        return partial(self.broker.history, channel, options=self.history_options(options))

    async def retained_state(self, channel: str) -> Publication | None:
        """The state a new subscriber of a `retained` namespace gets (None if nothing)."""
        options = self.channel_options(channel)
        if not options.retained or self.durable is None:
            return None
        read = self._broker_history(channel, options)
        with temporary_failure(self._broker_log, "state of", channel):
            return await self.durable.state(channel, read)

    async def set_retained_state(self, channel: str, data: Any) -> None:
        """Store an explicit retained state (the server API's `state_set`)."""
        options = self.channel_options(channel)
        if not options.retained or self.durable is None:
            raise ReplyError(ErrorCode.NOT_AVAILABLE, "channel keeps no retained state")
        position = await self.position(channel)
        try:
            await self.durable.set_state(channel, data, position)
        except Exception as exc:
            self._broker_log("storing the state of %r failed: %s", channel, exc)
            raise ReplyError(ErrorCode.INTERNAL) from None

    def history_query(self, request: HistoryRequest) -> HistoryQuery:
        """The query a history request makes: at most `client.history_max_limit`
        publications (-1: that many); ReplyError(108) where none are kept."""
        if self.channel_options(request.channel).history_size <= 0:
            raise ReplyError(ErrorCode.NOT_AVAILABLE, "channel keeps no history")
        most = self.settings.client.history_max_limit
        limit = most if request.limit < 0 else min(request.limit, most)
        return HistoryQuery(request.since, limit, request.reverse)

    async def history_reply(
        self, request: HistoryRequest, bounds: ReplyBounds | None = None
    ) -> dict[str, Any]:
        """The answer to a client's or the API's history request (`history_query`);
        with a client's `bounds`, read page by page within them (server/replies.py)."""
        query = self.history_query(request)
        if bounds is not None:
            return await bounds.history(partial(self.history, request.channel), query)
        history = await self.history(request.channel, query)
        return {
            "publications": [p.to_dict() for p in history.publications],
            "epoch": history.position.epoch,
            "offset": history.position.offset,
        }

    async def remove_history(self, channel: str) -> None:
        self.channel_options(channel)
        with temporary_failure(self._broker_log, "remove history of", channel):
            await self.broker.remove_history(channel)
