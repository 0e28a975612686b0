"""Several worker processes sharing one listening socket, supervised by the parent.

The parent binds the socket, forks the workers and then only supervises: it
forwards SIGTERM / SIGINT to every worker, restarts a worker that dies while
the server is not stopping (after a short pause, so a crash loop does not spin),
and returns once all workers are gone. Workers end with `os._exit`, so they
never run the parent's exit handlers (which stop the embedded servers).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from types import FrameType

__all__ = ["run_workers"]

log = logging.getLogger(__name__)

RESTART_PAUSE = 1.0


Worker = Callable[[list[socket.socket], int], int]
"""Runs one worker on the shared sockets; returns its exit code."""


def _fork(worker: Worker, sockets: list[socket.socket], index: int) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        code = worker(sockets, index)
    except BaseException:
        log.exception("worker %d failed", index)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def run_workers(
    count: int,
    sockets: list[socket.socket],
    worker: Worker,
    on_exit: Callable[[int], None] | None = None,
) -> int:
    """Run `worker(sockets, index)` in `count` processes; returns 0 after a clean stop.

    `on_exit(pid)` runs in the supervisor after each worker ends (metrics bookkeeping).
    """
    children: dict[int, int] = {}
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for index in range(count):
            children[_fork(worker, sockets, index)] = index
        log.info("started %d workers: %s", count, ", ".join(map(str, children)))
        while children:
            pid, status = os.wait()
            if on_exit is not None:
                on_exit(pid)
            index = children.pop(pid, -1)
            if index < 0 or stopping:
                continue
            log.warning("worker %d (pid %d) exited with status %d; restarting", index, pid, status)
            time.sleep(RESTART_PAUSE)
            if not stopping:
                children[_fork(worker, sockets, index)] = index
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
