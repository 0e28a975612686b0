"""A loop-lag watchdog: names the hook that holds the event loop.

Blocking code in a hook (a synchronous database call, `time.sleep`) cannot be
interrupted; it can be named. The loop sets a heartbeat every `interval`; a
daemon thread checks it, and when the loop has been held longer than
`threshold` it logs one line per stall, naming what `describe` finds on the
loop thread's stack (the application layer's call wrapper knows its hook).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType

__all__ = ["LoopWatchdog"]

log = logging.getLogger(__name__)

Describe = Callable[[FrameType | None], str | None]
"""What the loop thread's innermost frame is running, as a name (None: unknown)."""


class LoopWatchdog:
    """Started on the loop it watches (`start`), stopped with `stop`. Costs one
    timer callback per `interval` on the loop, and a thread that sleeps."""

    def __init__(self, threshold: float, describe: Describe) -> None:
        self.threshold = threshold
        self.interval = max(0.005, threshold / 4)
        self._describe = describe
        self._beat = time.monotonic()
        self._timer: asyncio.TimerHandle | None = None
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self._loop_thread = 0
        self.stalls = 0  # stalls reported so far

    def start(self) -> None:
        if self._thread is not None:
            return
        loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._stopped.clear()
        self._heartbeat(loop)
        self._thread = threading.Thread(target=self._watch, name="loop-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            self._thread = None

    def _heartbeat(self, loop: asyncio.AbstractEventLoop) -> None:
        self._beat = time.monotonic()
        self._timer = loop.call_later(self.interval, self._heartbeat, loop)

    def _watch(self) -> None:
        reported_beat = None  # the heartbeat a stall was reported against
        # The heartbeat is late by up to `interval` on an idle loop.
        limit = self.threshold + self.interval
        while not self._stopped.wait(self.interval / 2):
            beat = self._beat
            held = time.monotonic() - beat
            if held <= limit or beat == reported_beat:
                continue
            reported_beat = beat
            self.stalls += 1
            frame = sys._current_frames().get(self._loop_thread)
            culprit = self._describe(frame)
            log.warning(
                "event loop held for over %.2fs (app.loop_lag_warning) by %s",
                held - self.interval,
                culprit or "code outside any hook",
            )
