"""The embedded servers one process uses: Valkey and/or SecantusDB under `embedded.dir`.

``start_embedded(var, need_redis, need_mongo)`` attaches to (or starts) the servers of
``var/valkey`` and ``var/secantusdb`` through their keepers (wsfan.embedded.lease);
``EmbeddedSet.watch()`` starts them again should a keeper be killed while this
process runs; ``release()`` lets them stop once no other process uses them.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from ..logs import Repeated
from . import procs
from .keeper import STOP_TIMEOUT
from .lease import START_TIMEOUT, Lease, attach
from .servers import EmbeddedServerError, Fsync
from .state import read_state

__all__ = ["DIRS", "EmbeddedSet", "is_embedded_url", "running_url", "start_embedded"]

log = logging.getLogger("wsfan.embedded")

DIRS = {"redis": "valkey", "mongo": "secantusdb"}  # role -> kind, also its directory under var/
LEGACY_STATE = "embedded.json"  # var/embedded.json, written before keepers existed


@dataclass
class EmbeddedSet:
    """Leases on the embedded servers `start_embedded` attached to (either may be None)."""

    redis: Lease | None = None
    mongo: Lease | None = None
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _watcher: threading.Thread | None = field(default=None, repr=False)

    @property
    def leases(self) -> list[Lease]:
        return [lease for lease in (self.redis, self.mongo) if lease is not None]

    def watch(self, interval: float = 1.0) -> None:
        """Check the keepers every `interval` seconds on a daemon thread, and start a
        killed one's server again on the same port (this process's URLs stay valid)."""
        if self._watcher is None:
            self._watcher = threading.Thread(
                target=self._watch, args=(interval,), name="embedded-watch", daemon=True
            )
            self._watcher.start()

    def _watch(self, interval: float) -> None:
        failures = Repeated(log, level=logging.ERROR)
        while not self._stop.wait(interval):
            for lease in self.leases:
                try:
                    if lease.restore():
                        log.warning(
                            "embedded %s's keeper was gone; running again at %s (pid %d)",
                            lease.kind,
                            lease.url,
                            lease.pid,
                        )
                except EmbeddedServerError as exc:
                    failures("%s", exc)

    def release(self, timeout: float = STOP_TIMEOUT + 5) -> None:
        """Stop watching, drop every lease, and wait up to `timeout` for the servers
        this process was the last to use to stop. Idempotent."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join()
        for lease in self.leases:
            lease.drop()
        deadline = time.monotonic() + timeout
        for lease in self.leases:
            lease.wait_stopped(deadline)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def start_embedded(
    var_dir: Path,
    need_redis: bool,
    need_mongo: bool,
    fsync: Fsync = "everysec",
    timeout: float = START_TIMEOUT,
) -> EmbeddedSet:
    """Attach to the persistent Valkey / SecantusDB under var_dir/{valkey,secantusdb} as
    asked, starting whichever is not running. Valkey fsyncs its AOF per `fsync` (a
    running one is raised to "always" when asked, never lowered).

    Drops what it attached if a later one fails; raises EmbeddedServerError (one line)."""
    var_dir = Path(var_dir)
    try:
        var_dir.mkdir(parents=True, exist_ok=True)
        (var_dir / LEGACY_STATE).unlink(missing_ok=True)  # its servers are found by directory
    except OSError as exc:
        raise EmbeddedServerError(f"embedded.dir: cannot use {var_dir}: {exc.strerror}") from None
    group = EmbeddedSet()
    try:
        if need_redis:
            group.redis = attach(DIRS["redis"], var_dir / DIRS["redis"], fsync, timeout)
        if need_mongo:
            group.mongo = attach(DIRS["mongo"], var_dir / DIRS["mongo"], timeout=timeout)
    except BaseException:
        group.release()
        raise
    return group


def running_url(var_dir: Path, name: str) -> str | None:
    """URL of the embedded `name` ("redis" or "mongo") whose keeper runs under
    `var_dir`, or None when none runs."""
    state = read_state(Path(var_dir).resolve() / DIRS[name])
    if state is None or not (procs.alive(state.keeper) and procs.alive(state.pid)):
        return None
    return state.url


def is_embedded_url(url: str, var_dir: Path, name: str) -> bool:
    """True when `url` points at the embedded `name` ("redis" or "mongo") running under
    `var_dir` (a second run.py given the first one's URL): it then holds a lease too."""
    state = read_state(Path(var_dir).resolve() / DIRS[name])
    if state is None or not procs.alive(state.keeper):
        return False
    try:
        parts = urllib.parse.urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return False
    return host in ("127.0.0.1", "localhost") and port == state.port
