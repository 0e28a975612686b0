"""Servers running from this checkout, so that its tools find them (`run.py publish`).

A serving `run.py` (the supervisor, when it has workers) writes
`<embedded.dir>/servers/<pid>.json` once its port is bound and removes it when it
exits. The file holds the PID, the process's start time (from /proc, so that a
PID reused by another program is told apart), the host and the port it listens on.
A file left behind by a process that died without cleaning up (SIGKILL, a crash)
is ignored by `find` and removed by it.

Writing is best effort: a directory that cannot be written costs a warning, never
the start-up.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SERVERS", "Instance", "find", "register"]

log = logging.getLogger(__name__)

SERVERS = "servers"  # the directory under embedded.dir


def start_time(pid: int) -> int | None:
    """A process's start time in clock ticks since boot (/proc/PID/stat field 22);
    None when it does not exist (or /proc cannot be read)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()
    if fields[:1] == [b"Z"]:  # exited, not reaped yet
        return None
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def client_host(host: str) -> str:
    """Where a client on this machine reaches a server listening on `host`."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


@dataclass(frozen=True, slots=True)
class Instance:
    """One running server of this checkout, as its file says."""

    pid: int
    host: str
    port: int
    started: int  # start time of `pid`, clock ticks since boot
    path: Path

    @property
    def url(self) -> str:
        """Its HTTP base URL, for a client on this machine."""
        host = client_host(self.host)
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def remove(self) -> None:
        """Remove the file (the server is stopping); a file already gone is fine."""
        with contextlib.suppress(OSError):
            self.path.unlink()


def register(directory: Path, host: str, port: int) -> Instance | None:
    """Write this process's file under `directory`/servers; None if it cannot be written."""
    pid = os.getpid()
    path = directory / SERVERS / f"{pid}.json"
    started = start_time(pid) or 0
    body = {"pid": pid, "started": started, "host": host, "port": port}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".tmp")
        partial.write_text(json.dumps(body) + "\n")
        partial.replace(path)
    except OSError as exc:
        log.warning("cannot write %s (run.py publish will not find this server): %s", path, exc)
        return None
    return Instance(pid, host, port, started, path)


def _read(path: Path) -> Instance | None:
    try:
        body = json.loads(path.read_text())
        return Instance(
            int(body["pid"]), str(body["host"]), int(body["port"]), int(body["started"]), path
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def find(directory: Path) -> list[Instance]:
    """The servers running from `directory`/servers, most recently started first.

    A file whose process is gone, or whose PID now names a process started at
    another time, is stale: skipped and removed.
    """
    found = []
    with contextlib.suppress(OSError):
        for path in (directory / SERVERS).glob("*.json"):
            instance = _read(path)
            if instance is None:
                continue
            if start_time(instance.pid) != instance.started:
                instance.remove()
                continue
            found.append(instance)
    return sorted(found, key=lambda i: (i.started, i.pid), reverse=True)
