"""What /proc says about a process: alive, where it runs, what it runs (Linux).

Used to recognise our own leftover servers and keepers before touching them: a
process is ours only if its working directory is the embedded server's data
directory (servers and keepers are started there) and its command line names
what we expect. Elsewhere than Linux nothing is found, so nothing is touched.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = ["alive", "cmdline", "cwd", "parent", "running_in", "terminate"]


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (whoever owns it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return True  # no /proc: trust kill(0)
    return stat[stat.rfind(b")") + 2 :][:1] != b"Z"


def cwd(pid: int) -> Path | None:
    """Working directory of `pid`, or None when it is gone or not ours to read."""
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None


def cmdline(pid: int) -> bytes:
    """Command line of `pid` (NUL-separated), or b"" when it is gone or unreadable."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def running_in(directory: Path) -> Iterator[int]:
    """PIDs (other than ours) whose working directory is `directory`."""
    directory = Path(directory).resolve()
    try:
        entries = os.listdir("/proc")
    except OSError:
        return
    me = os.getpid()
    for entry in entries:
        if entry.isdigit() and int(entry) != me and cwd(int(entry)) == directory:
            yield int(entry)


def terminate(pids: Iterable[int], timeout: float) -> list[int]:
    """SIGTERM `pids`, wait up to `timeout`, SIGKILL what is left; returns those killed."""
    pids = [pid for pid in pids if alive(pid)]
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    killed = [pid for pid in pids if alive(pid)]
    for pid in killed:
        _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in killed) and time.monotonic() < deadline:
        time.sleep(0.02)
    return killed


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def parent(pid: int) -> int | None:
    """Parent PID of `pid`, or None when it is gone or /proc is unavailable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()
    return int(fields[1]) if len(fields) > 1 else None
