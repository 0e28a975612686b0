"""Logging set-up: one line per event, as text or as JSON objects.

JSON lines carry `time`, `level`, `logger` and `message`, plus `client`
(the connection id) and `request` (an API request id) when the log call passes
them in `extra`, and `error` with the exception's type and text (never its
arguments' secrets: messages are written to name what failed, not what was sent).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from .config import LogSettings
from .errors import ErrorCode, ReplyError

__all__ = ["CONTEXT_FIELDS", "JsonFormatter", "Repeated", "configure", "temporary_failure"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CONTEXT_FIELDS = ("client", "user", "request", "node")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            line["error"] = f"{type(exc).__name__}: {exc}"
        return json.dumps(line, default=str)


def configure(settings: LogSettings) -> None:
    """Send the root logger's records to stderr in the configured format."""
    handler = logging.StreamHandler(sys.stderr)
    formatter = JsonFormatter() if settings.format == "json" else logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level.upper())


class Repeated:
    """Logs a failure that repeats at a bounded rate: the first occurrence at once,
    then at most one line per `interval` seconds saying how many happened since.
    `recovered` logs one line (with the count) when the failure stops; with
    `quiet`, only once no failure came for that long, so that it can be called on
    every success and a failure that comes and goes logs no more than one that stays.

    The clock is passed in for tests; it defaults to `time.monotonic`.
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 10.0,
        level: int = logging.WARNING,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self.interval = interval
        self._level = level
        self._clock = clock
        self._last: float | None = None  # when a line was last written
        self._last_failure = 0.0
        self._suppressed = 0  # occurrences since that line
        self.total = 0  # occurrences since the failure began

    @property
    def failing(self) -> bool:
        return self.total > 0

    def __call__(self, message: str, *args: object) -> bool:
        """Count one occurrence; returns whether a line was written."""
        self.total += 1
        now = self._last_failure = self._clock()
        if self._last is not None and now - self._last < self.interval:
            self._suppressed += 1
            return False
        if self._suppressed and self._last is not None:
            since = now - self._last
            message = f"{message} (repeated {self._suppressed} times in {since:.0f}s)"
        self._log.log(self._level, message, *args)
        self._last, self._suppressed = now, 0
        return True

    def recovered(self, message: str, *args: object, quiet: float = 0.0) -> None:
        """The failure stopped: one line with how often it happened, then reset;
        nothing yet if the last failure was less than `quiet` seconds ago."""
        if self.total and self._clock() - self._last_failure < quiet:
            return
        if self.total:
            self._log.info(f"{message} (after {self.total} failures)", *args)
        self._last, self._suppressed, self.total = None, 0, 0


@contextmanager
def temporary_failure(failures: Repeated, action: str, target: str) -> Iterator[None]:
    """Broker (or store) trouble becomes error 100 (temporary); the details stay in the log,
    at most one line per `log.repeat_interval` while it lasts."""
    try:
        yield
    except ReplyError:
        raise
    except Exception as exc:
        failures("%s %r failed: %s", action, target, exc)
        raise ReplyError(ErrorCode.INTERNAL) from None
    if failures.failing:
        failures.recovered("broker calls succeed again", quiet=failures.interval)
