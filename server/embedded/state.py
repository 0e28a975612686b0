"""Files one embedded server shares between its keeper and the processes using it.

Under the server's data directory D (``var/valkey``, ``var/secantusdb``):

- ``D/embedded.json``: the running server (kind, url, port, pid, keeper pid, fsync),
  written by the keeper, removed when it stops cleanly;
- ``D/keeper.lock``: the mutex (flock). An attaching process holds it from reading
  the state to holding its lease; the keeper holds it from deciding to stop until
  it has exited, so no one attaches to a server that is stopping;
- ``D/leases/<pid>-<random>.lock``: one per attached process, flock'ed for as long as
  that process (and any worker it forks) lives. The kernel drops the lock of a
  process that dies, by any signal, so a lease cannot outlive its holder;
- ``D/keeper.log``: the keeper's own log, next to the server's.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = [
    "KEEPER_COMMAND",
    "KEEPER_LOG",
    "LEASES",
    "MUTEX_FILE",
    "STATE_FILE",
    "MutexTimeout",
    "State",
    "held_leases",
    "holder",
    "lease_files",
    "lock",
    "locked",
    "new_lease",
    "read_state",
    "remove_state",
    "write_state",
]

STATE_FILE = "embedded.json"
MUTEX_FILE = "keeper.lock"
LEASES = "leases"
KEEPER_LOG = "keeper.log"
KEEPER_COMMAND = ("-m", "wsfan.embedded", "keep")  # how a keeper is run, and recognised

_HELD: set[int] = set()  # mutex fds this process holds: a forked child must not keep them


def _close_held() -> None:
    # A worker forked while another thread holds the mutex must not hold it for life.
    for fd in list(_HELD):
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_close_held)


@dataclass(frozen=True, slots=True)
class State:
    """What D/embedded.json says about the server its keeper runs."""

    kind: str
    url: str
    port: int
    pid: int
    keeper: int
    fsync: str | None = None  # Valkey's appendfsync; None for SecantusDB


def read_state(directory: Path) -> State | None:
    """The state file's content, or None when it is missing or unreadable."""
    try:
        data = json.loads((directory / STATE_FILE).read_text())
        return State(**data)
    except (OSError, ValueError, TypeError):
        return None


def write_state(directory: Path, state: State) -> None:
    """Replace the state file atomically (readers see the old or the new one)."""
    tmp = directory / f".{STATE_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps(asdict(state)))
    os.replace(tmp, directory / STATE_FILE)


def remove_state(directory: Path) -> None:
    (directory / STATE_FILE).unlink(missing_ok=True)


class MutexTimeout(TimeoutError):
    """Another process held D/keeper.lock past the deadline."""


def lock(directory: Path, deadline: float | None) -> int:
    """Take D/keeper.lock; wait until `deadline` (monotonic) at most, None: don't wait.

    Returns the fd that holds it (closing it, or exiting, releases the lock); raises
    MutexTimeout when someone else keeps holding it."""
    fd = os.open(directory / MUTEX_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if deadline is None or time.monotonic() >= deadline:
                os.close(fd)
                raise MutexTimeout(str(directory / MUTEX_FILE)) from None
            time.sleep(0.02)


@contextlib.contextmanager
def locked(directory: Path, deadline: float | None) -> Iterator[None]:
    """Hold D/keeper.lock for the block (see `lock`); a forked child does not keep it."""
    fd = lock(directory, deadline)
    _HELD.add(fd)
    try:
        yield
    finally:
        _HELD.discard(fd)
        os.close(fd)


def new_lease(directory: Path) -> tuple[int, Path]:
    """Create and flock a lease file of this process; (fd, path). Closing the fd, or
    the death of this process and every child that inherited it, drops the lease."""
    leases = directory / LEASES
    leases.mkdir(parents=True, exist_ok=True)
    path = leases / f"{os.getpid()}-{secrets.token_hex(4)}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a fresh file: nobody else has it
    return fd, path


def lease_files(directory: Path) -> list[Path]:
    try:
        return sorted((directory / LEASES).glob("*.lock"))
    except OSError:
        return []


def held_leases(directory: Path) -> list[int]:
    """PIDs (from the file names) of the leases still held; removes the others.

    Call with the mutex held, so no lease is being created meanwhile."""
    holders = []
    for path in lease_files(directory):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # released meanwhile
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holders.append(holder(path))
        else:
            path.unlink(missing_ok=True)  # its holder is gone
        finally:
            os.close(fd)
    return holders


def holder(lease: Path) -> int:
    """PID of the process that created the lease file (from its name), 0 if unknown."""
    pid = lease.name.split("-", 1)[0]
    return int(pid) if pid.isdigit() else 0
