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
from datetime import UTC, datetime
from typing import Any

from server.config import LogSettings

__all__ = ["CONTEXT_FIELDS", "JsonFormatter", "configure"]

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
