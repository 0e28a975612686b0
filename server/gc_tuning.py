"""The collector's settings for a serving process (`[server] gc_freeze`, `gc_threshold`).

A connection is a couple of dozen container objects that live as long as it
does, so a server holding thousands of them spends a large share of its
connection set-up in the cyclic garbage collector: with Python's defaults a
collection runs every 700 net allocations and every tenth of tenth of those
walks the whole heap, startup objects (modules, functions, classes) included.
`tune` moves what exists after start-up out of the collector's reach
(`gc.freeze`: never collected, never walked again) and runs the youngest
generation less often (`gc_threshold` net allocations instead of 700). Cyclic
garbage then waits for at most that many allocations before it is collected.
The command line calls it once the server is built and started; an
application embedding the server decides for its own process.
"""

from __future__ import annotations

import gc

from .config import ServerSettings

__all__ = ["tune"]


def tune(settings: ServerSettings) -> None:
    """Apply `settings.gc_freeze` and `settings.gc_threshold` (0: Python's own)."""
    if settings.gc_threshold:
        _, second, third = gc.get_threshold()
        gc.set_threshold(settings.gc_threshold, second, third)
    if settings.gc_freeze:
        gc.collect()
        gc.freeze()
