"""Helpers for the occupancy and channel source tests: a recorder of occupancy
events, a channel subscriber that keeps what it is delivered, and waiting."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from wsfan.frames import WEBSOCKET
from wsfan.protocol import Encoding, Publication
from wsfan.transport import Frame, variant

from tests.conftest import TIMEOUT_SCALE

__all__ = ["Events", "Subscriber", "wait_until"]


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> float:
    """Poll `condition` until true; the seconds it took. AssertionError after `timeout`
    (scaled by TIMEOUT_SCALE)."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout * TIMEOUT_SCALE:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)
    return time.monotonic() - start


class Events:
    """Records `on_occupied` / `on_vacated` calls as (event, channel[, tag]), with
    the monotonic time of each."""

    def __init__(self, tag: str = "", log: list[tuple[str, ...]] | None = None) -> None:
        self.tag = tag
        self.seen: list[tuple[str, ...]] = [] if log is None else log
        self.times: list[float] = []

    def _record(self, event: str, channel: str) -> None:
        self.seen.append((event, channel, self.tag) if self.tag else (event, channel))
        self.times.append(time.monotonic())

    async def occupied(self, channel: str) -> None:
        self._record("occupied", channel)

    async def vacated(self, channel: str) -> None:
        self._record("vacated", channel)

    def of(self, channel: str) -> list[str]:
        return [e[0] for e in self.seen if e[1] == channel]


class Subscriber:
    """A local channel subscriber (what a session is to the hub) keeping each
    publication it is delivered."""

    def __init__(self) -> None:
        self.variant = variant(Encoding.JSON, WEBSOCKET)
        self.publications: list[Publication] = []

    def deliver_publication(self, channel: str, pub: Publication, frame: Frame) -> None:
        self.publications.append(pub)

    def deliver(self, channel: str, frame: Frame) -> None:
        return None

    def deliver_batch(self, channel: str, messages: Sequence[bytes], frame: Frame) -> None:
        return None

    def data(self) -> list[Any]:
        return [p.data for p in self.publications]
