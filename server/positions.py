"""Channels' current stream positions, read once per event-loop turn however many ask."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from .protocol import StreamPosition

__all__ = ["SharedPositions"]


class SharedPositions:
    """Reads of a channel's position asked for in the same event-loop turn share one
    call of `read` (a burst of subscribers needs one broker read, not one each).

    The shared read starts on the next turn, after every caller asked, so each
    caller's earlier steps happened before it. Every caller gets its result or
    its exception; `spawn` runs the read (and logs what nobody awaited).
    """

    def __init__(
        self,
        read: Callable[[str], Awaitable[StreamPosition]],
        spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]],
    ) -> None:
        self._read = read
        self._spawn = spawn
        self._pending: dict[str, asyncio.Future[StreamPosition]] = {}

    async def get(self, channel: str) -> StreamPosition:
        future = self._pending.get(channel)
        if future is None:
            loop = asyncio.get_running_loop()
            future = self._pending[channel] = loop.create_future()
            loop.call_soon(self._start, channel, future)
        return await asyncio.shield(future)

    def _start(self, channel: str, future: asyncio.Future[StreamPosition]) -> None:
        if self._pending.get(channel) is future:
            del self._pending[channel]
        self._spawn(self._settle(channel, future))

    async def _settle(self, channel: str, future: asyncio.Future[StreamPosition]) -> None:
        try:
            future.set_result(await self._read(channel))
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # observed by the callers; silence if none is left
