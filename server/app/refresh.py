"""An expiry the server renews itself by asking a hook, as Centrifugo's refresh proxy.

A connecting (or subscribing) hook's `expire_at` with a refresh (or
sub_refresh) hook: when it arrives, the hook is asked rather than the client.
Its answer extends the expiry (with new info, when given) or ends it; a hook
that fails (error, timeout, garbage: the layer logged it) is asked again after
`proxy.refresh_retry_interval`, the connection staying; a Disconnect closes it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..auth.access import Expiry
from ..errors import Disconnect
from .hooks import RefreshResult, SubRefreshResult
from .layer import Spawn

__all__ = ["ServerRefresh"]


class ServerRefresh(Expiry):
    """`ask` asks the hook (through the layer); `apply` takes a new info;
    `on_expired` ends what expired; `alive` says whether it still exists;
    `disconnect` closes the connection. The reply fields `set` returns are
    empty: the client is not told to refresh, the server does."""

    __slots__ = ("_alive", "_apply", "_ask", "_disconnect", "_retry", "_spawn")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        ask: Callable[[], Awaitable[RefreshResult | SubRefreshResult]],
        apply: Callable[[Any], Awaitable[None]],
        on_expired: Callable[[], None],
        alive: Callable[[], bool],
        disconnect: Callable[[Disconnect], None],
        retry_interval: float,
        spawn: Spawn,
    ) -> None:
        super().__init__(loop, 0.0, on_expired)
        self._ask = ask
        self._apply = apply
        self._alive = alive
        self._disconnect = disconnect
        self._retry = retry_interval
        self._spawn = spawn

    def set(self, expires_at: int | None) -> dict[str, Any]:
        super().set(expires_at)
        return {}

    def _fire(self) -> None:
        self._handle = None
        if self.expires_at is not None and self.expires_at <= time.time() and self._alive():
            self._spawn(self._refresh())

    async def _refresh(self) -> None:
        try:
            result = await self._ask()
        except Disconnect as exc:
            if self._alive():
                self._disconnect(exc)
            return
        except Exception:  # the layer logged the failure: ask again later
            if self._alive():
                self._handle = self._loop.call_later(self._retry, self._fire)
            return
        if not self._alive():
            return
        if result.expired or (result.expire_at is not None and result.expire_at <= time.time()):
            self._on_expired()
            return
        self.set(result.expire_at)
        if result.info is not None:
            await self._apply(result.info)
