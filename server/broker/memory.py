"""Broker and presence kept in this process: a single node needs nothing else.

Publishing is synchronous under the hood, so the atomicity the broker contract
asks for holds trivially: offset, history append, idempotency check and
delivery happen in one step of the event loop. The control stream reaches this
node alone (it is the whole cluster).
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import ErrorCode, ReplyError
from ..protocol import ClientInfo, Publication, StreamPosition
from .base import (
    FENCED,
    Broker,
    BrokerEventHandler,
    Fence,
    HistoryOptions,
    HistoryQuery,
    HistoryResult,
    LogState,
    PresenceManager,
)
from .leases import Leases, MemoryLeases
from .occupancy import MemoryOccupancy, OccupancyStore

__all__ = ["LOG_BEHIND", "MemoryBroker", "MemoryPresence", "new_epoch"]

LOG_BEHIND = "the channel's log is behind; retry later"


def new_epoch() -> str:
    return secrets.token_hex(4)


class _Stream:
    """One channel's history: offsets top-len(items)+1 .. top, all in one epoch.

    `logged` is the durable log's checkpoint (logged channels only): items above
    it stay whatever `size` and `ttl` say; `stored` holds offsets the log stored
    beyond the checkpoint, until it reaches them.
    """

    __slots__ = (
        "epoch",
        "items",
        "items_expire_at",
        "logged",
        "meta_expire_at",
        "stored",
        "top",
    )

    def __init__(self) -> None:
        self.epoch = new_epoch()
        self.top = 0
        self.logged: int | None = None
        self.stored: set[int] = set()
        self.items: deque[Publication] = deque()
        self.items_expire_at = 0.0
        self.meta_expire_at = 0.0

    def unlogged(self) -> int:
        return 0 if self.logged is None else self.top - self.logged

    def trim(self, size: int) -> None:
        keep = max(size, self.unlogged())
        while len(self.items) > keep:
            self.items.popleft()


class MemoryBroker(Broker):
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._handler: BrokerEventHandler | None = None
        self._subscribed: set[str] = set()
        self._streams: dict[str, _Stream] = {}
        # (channel, idempotency key) -> (first result, expires at), oldest first
        self._idempotent: dict[tuple[str, str], tuple[StreamPosition, float]] = {}
        self.leases = MemoryLeases(clock)  # what fenced publishes are checked against

    async def start(self, handler: BrokerEventHandler) -> None:
        self._handler = handler

    async def close(self) -> None:
        self._subscribed.clear()

    async def ping(self) -> None:
        return None  # in this process: always there

    def channel_stores(self) -> tuple[OccupancyStore, Leases]:
        return MemoryOccupancy(), self.leases

    async def subscribe(self, channels: Sequence[str]) -> None:
        self._subscribed.update(channels)

    async def unsubscribe(self, channels: Sequence[str]) -> None:
        self._subscribed.difference_update(channels)

    def _stream(self, channel: str, options: HistoryOptions) -> _Stream:
        now = self._clock()
        stream = self._streams.get(channel)
        if stream is None or (stream.meta_expire_at <= now and not stream.unlogged()):
            stream = self._streams[channel] = _Stream()
        elif stream.items_expire_at <= now and not stream.unlogged():
            stream.items.clear()
        stream.trim(options.size)
        stream.meta_expire_at = max(stream.meta_expire_at, now + options.meta_ttl)
        return stream

    async def publish(
        self,
        channel: str,
        data: Any,
        options: HistoryOptions,
        info: ClientInfo | None = None,
        tags: dict[str, str] | None = None,
        idempotency_key: str | None = None,
        idempotency_window: float = 300.0,
        fence: Fence | None = None,
    ) -> StreamPosition:
        if fence is not None and not self.leases.admits(channel, fence):
            raise ReplyError(ErrorCode.INTERNAL, FENCED)
        if idempotency_key is not None:
            seen = self._seen(channel, idempotency_key)
            if seen is not None:
                return seen
        position = StreamPosition(0, "")
        if options.size > 0:
            stream = self._stream(channel, options)
            if options.log_lag > 0:
                if stream.logged is None:
                    stream.logged = stream.top
                if stream.unlogged() >= options.log_lag:
                    raise ReplyError(ErrorCode.INTERNAL, LOG_BEHIND)
            stream.top += 1
            pub = Publication(data, stream.top, info, tags, stream.epoch)
            stream.items.append(pub)
            stream.trim(options.size)
            stream.items_expire_at = self._clock() + options.ttl
            position = StreamPosition(stream.top, stream.epoch)
        else:
            pub = Publication(data, 0, info, tags)
        if idempotency_key is not None:
            expires = self._clock() + idempotency_window
            self._idempotent[(channel, idempotency_key)] = (position, expires)
        if channel in self._subscribed and self._handler is not None:
            self._handler.handle_publication(channel, pub)
        return position

    def _seen(self, channel: str, key: str) -> StreamPosition | None:
        """The result of an earlier publish with this key, if still remembered."""
        now = self._clock()
        # Entries mostly expire in insertion order: drop the expired head.
        while self._idempotent:
            oldest = next(iter(self._idempotent))
            if self._idempotent[oldest][1] > now:
                break
            del self._idempotent[oldest]
        entry = self._idempotent.get((channel, key))
        if entry is None or entry[1] <= now:
            return None
        return entry[0]

    async def publish_join(self, channel: str, info: ClientInfo) -> None:
        if channel in self._subscribed and self._handler is not None:
            self._handler.handle_join(channel, info)

    async def publish_leave(self, channel: str, info: ClientInfo) -> None:
        if channel in self._subscribed and self._handler is not None:
            self._handler.handle_leave(channel, info)

    async def history(
        self, channel: str, query: HistoryQuery, options: HistoryOptions
    ) -> HistoryResult:
        stream = self._stream(channel, options)
        position = StreamPosition(stream.top, stream.epoch)
        items = list(stream.items)
        since = query.since
        if since is not None:
            if since.epoch != stream.epoch:
                raise ReplyError(ErrorCode.UNRECOVERABLE_POSITION)
            if query.reverse:
                items = [p for p in items if p.offset < since.offset]
            else:
                first = items[0].offset if items else stream.top + 1
                if since.offset > stream.top or since.offset + 1 < first:
                    raise ReplyError(ErrorCode.UNRECOVERABLE_POSITION)
                items = items[since.offset - first + 1 :]
        if query.reverse:
            items.reverse()
        if query.limit >= 0:
            items = items[: query.limit]
        return HistoryResult(items, position)

    async def remove_history(self, channel: str) -> None:
        stream = self._streams.get(channel)
        if stream is not None:
            stream.items.clear()

    async def publish_control(self, data: bytes) -> None:
        if self._handler is not None:
            self._handler.handle_control(data)

    async def log_stored(
        self, channel: str, epoch: str, runs: Sequence[tuple[int, int]], options: HistoryOptions
    ) -> int:
        stream = self._streams.get(channel)
        if stream is None or stream.epoch != epoch:
            return -1
        logged = stream.logged or 0
        for first, last in runs:
            if last <= logged:
                continue
            if first <= logged + 1:
                logged = last
            else:
                stream.stored.update(range(first, last + 1))
        while logged + 1 in stream.stored:
            logged += 1
        stream.stored = {o for o in stream.stored if o > logged}
        stream.logged = min(logged, stream.top)
        stream.trim(options.size)
        if not stream.unlogged():
            stream.items_expire_at = min(stream.items_expire_at, self._clock() + options.ttl)
        return stream.logged

    async def log_lagging(self, prefixes: Sequence[str]) -> list[LogState]:
        return [
            LogState(channel, stream.epoch, stream.top, stream.logged or 0)
            for channel, stream in self._streams.items()
            if stream.unlogged() and channel.startswith(tuple(prefixes))
        ]

    async def restart_epoch(
        self, channel: str, epoch: str, acknowledged: int, options: HistoryOptions
    ) -> str:
        stream = self._streams.get(channel)
        if stream is None:
            return ""
        if stream.epoch == epoch and stream.top < acknowledged:
            self._streams[channel] = _Stream()
            self._streams[channel].meta_expire_at = stream.meta_expire_at
        return self._streams[channel].epoch


class MemoryPresence(PresenceManager):
    def __init__(self) -> None:
        self._channels: dict[str, dict[str, ClientInfo]] = {}

    async def add_presence(self, channel: str, client_id: str, info: ClientInfo) -> None:
        self._channels.setdefault(channel, {})[client_id] = info

    async def remove_presence(self, channel: str, client_id: str) -> None:
        clients = self._channels.get(channel)
        if clients is not None:
            clients.pop(client_id, None)
            if not clients:
                del self._channels[channel]

    async def presence(self, channel: str) -> dict[str, ClientInfo]:
        return dict(self._channels.get(channel, {}))
