"""The name this program was started by, for usage lines and messages: `wsfan` (the
console script), `python -m wsfan`, or `run.py` (a checkout)."""

from __future__ import annotations

import os
import sys

__all__ = ["prog_name"]


def prog_name(tool: str = "") -> str:
    """How to call the server (or `tool`, a command of it) the way this process was called."""
    started = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "wsfan"
    if started in ("__main__.py", "-c", "-m") or started.endswith(".pyz"):
        started = "python -m wsfan"
    elif started not in ("run.py", "wsfan"):
        started = "wsfan"
    return f"{started} {tool}" if tool else started
