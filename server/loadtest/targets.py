"""What `--server-pid` measures: the given processes, followed to their workers and
to the embedded servers they use, all through /proc.

- A given PID is measured itself (role "server").
- Its descendants are found through the parent PIDs in /proc/*/stat; those
  running the same command line are its forked workers (role "server" too,
  named "worker"). Other descendants are not the server (a test process's
  helpers, say) and are left out.
- The embedded Valkey / SecantusDB a server uses run under a keeper that is
  nobody's child (server/embedded). A server holds a lease file open for as long
  as it uses one (`<embedded.dir>/<kind>/leases/*.lock`): the lease's directory
  holds `embedded.json`, which names the server's PID (role "embedded").

The processes are looked up once, when the load test starts: a worker that a
supervisor starts later (after a crash) is not measured.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["EMBEDDED", "SERVER", "Measured", "describe", "embedded_of", "follow"]

SERVER, EMBEDDED = "server", "embedded"
PROC = Path("/proc")


@dataclass(frozen=True, slots=True)
class Measured:
    """One process whose CPU (and, for role "server", memory) the load test reads."""

    pid: int
    role: str  # SERVER (the server proper: given, workers, children) or EMBEDDED
    name: str  # "supervisor", "server", "worker", "embedded valkey", ...
    via: int  # the --server-pid it was found from

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent PID, state) of a process, None when it is gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_bytes()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()
    return int(fields[1]), fields[0].decode()


def _cmdline(pid: int) -> bytes:
    try:
        return (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return b""


def _children() -> dict[int, list[int]]:
    """Parent PID -> its live children's PIDs, for every process /proc shows."""
    out: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) and stat[1] != "Z":
            out.setdefault(stat[0], []).append(int(entry.name))
    return out


def _descendants(pid: int, children: dict[int, list[int]]) -> list[int]:
    found, queue = [], list(children.get(pid, ()))
    while queue:
        child = queue.pop(0)
        found.append(child)
        queue.extend(children.get(child, ()))
    return found


def embedded_of(pid: int) -> list[tuple[str, int]]:
    """(kind, PID) of each embedded server `pid` holds a lease on, from its open files."""
    from ..embedded.state import LEASES, read_state

    found = []
    try:
        fds = list((PROC / str(pid) / "fd").iterdir())
    except OSError:
        return []
    for fd in fds:
        try:
            target = Path(os.readlink(fd))
        except OSError:
            continue
        if target.suffix != ".lock" or target.parent.name != LEASES:
            continue
        state = read_state(target.parent.parent)
        if state is not None and _stat(state.pid) is not None:
            found.append((state.kind, state.pid))
    return sorted(set(found))


def follow(pids: Iterable[int]) -> list[Measured]:
    """The processes to measure for the given server PIDs, each PID once, in the
    order: each given PID, its workers, the embedded servers of all of them.
    A given PID that does not exist is measured as given (it reads as no CPU)."""
    children = _children()
    out: dict[int, Measured] = {}

    def add(m: Measured) -> None:
        out.setdefault(m.pid, m)

    for given in pids:
        command = _cmdline(given)
        workers = [p for p in _descendants(given, children) if command and _cmdline(p) == command]
        add(Measured(given, SERVER, "supervisor" if workers else "server", given))
        for pid in workers:
            add(Measured(pid, SERVER, "worker", given))
        for pid in (given, *workers):
            for kind, server in embedded_of(pid):
                add(Measured(server, EMBEDDED, f"embedded {kind}", given))
    return list(out.values())


def describe(measured: Sequence[dict[str, Any]]) -> str:
    """One line saying what was measured: "123 supervisor, 124 worker, ..."."""
    return ", ".join(f"{m['pid']} {m['name']}" for m in measured)
