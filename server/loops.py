"""Which asyncio event loop to run: the standard one, or uvloop when asked or available.

uvloop is an optional accelerator (the `fast` extra): the same asyncio API with
the loop, timers and transports in C. Tornado and picows both run on it.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable

__all__ = ["LOOP_CHOICES", "loop_factory"]

LOOP_CHOICES = ("auto", "asyncio", "uvloop")


def loop_factory(choice: str = "auto") -> Callable[[], asyncio.AbstractEventLoop]:
    """A factory for `asyncio.Runner`: uvloop's for "uvloop" (which must be installed)
    and for "auto" when it is installed, the standard loop's otherwise."""
    if choice not in LOOP_CHOICES:
        raise ValueError(f"event loop must be one of {', '.join(LOOP_CHOICES)}, not {choice!r}")
    installed = importlib.util.find_spec("uvloop") is not None
    if choice == "uvloop" and not installed:
        raise ValueError("event loop 'uvloop' is not installed (pip install '.[fast]')")
    if choice == "uvloop" or (choice == "auto" and installed):
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop
