"""The stream Tornado serves a pending connection through, with a deadline on
every request head it waits for (see wsfan.web.upgrade)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable
from typing import Any, cast

from tornado.iostream import IOStream

from .pending import PendingConnections

__all__ = ["HeldStream"]


class HeldStream(IOStream):
    """A pending connection Tornado serves. Each request head it waits for has a
    deadline: the first `deadline` (head_timeout after the accept), later ones
    `idle_timeout` after Tornado starts waiting. While it waits for a head it
    counts in `pending` as waiting (closable to make room), otherwise as busy;
    closing it ends its pending count.

    Tornado's HTTP/1 connection reads every request head with `read_until_regex`
    (and nothing else with it), which is what this hooks.
    """

    def __init__(
        self,
        sock: socket.socket,
        pending: PendingConnections,
        deadline: float,
        idle_timeout: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(sock, **kwargs)
        self._key = sock
        self._pending = pending
        self._idle_timeout = idle_timeout
        self._first_deadline: float | None = deadline

    def read_until_regex(self, regex: bytes, max_bytes: int | None = None) -> Awaitable[bytes]:
        future = cast("asyncio.Future[bytes]", super().read_until_regex(regex, max_bytes))
        pending = self._pending
        if future.done():
            pending.busy(self._key)
            return future
        loop = asyncio.get_running_loop()  # its clock, as the first deadline's
        deadline, self._first_deadline = self._first_deadline, None
        if deadline is None:
            deadline = loop.time() + self._idle_timeout
        pending.wait(self._key, self.close)
        timer = loop.call_at(deadline, self.close)

        def arrived(_: object) -> None:
            timer.cancel()
            pending.busy(self._key)

        future.add_done_callback(arrived)
        return future

    def close(self, exc_info: Any = False) -> None:
        super().close(exc_info)
        self._pending.remove(self._key)
