"""The keeper: one small process per embedded server, holding it for every user.

``python -m wsfan.embedded keep KIND DIR [--port N] [--fsync always|everysec]`` is
started by `wsfan.embedded.lease.attach` (not by hand), with DIR as its working
directory. It detaches (the launcher exits at once), prints ``keeper PID`` on
stdout, starts the server as its own child with the parent-death signal set (the
kernel sends the server SIGTERM when the keeper dies, even by SIGKILL), writes
``DIR/embedded.json`` and prints ``ready`` (or ``error MESSAGE`` and exits 1).

Then it polls every `POLL` seconds:
- a server that exits is started again on the same port, after a pause that grows
  from 0.5 s to 10 s while it keeps failing;
- when no lease under ``DIR/leases`` is held any more (each user's process holds
  one; the kernel drops it when that process dies), or on SIGTERM / SIGINT, it
  stops the server and exits. It holds ``DIR/keeper.lock`` from that decision until
  it exits, so no one attaches to a server that is stopping.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from ..logs import Repeated
from .servers import (
    EmbeddedSecantus,
    EmbeddedServer,
    EmbeddedServerError,
    EmbeddedValkey,
)
from .state import (
    MutexTimeout,
    State,
    held_leases,
    lock,
    read_state,
    remove_state,
    write_state,
)

__all__ = ["KINDS", "POLL", "main", "make_server"]

log = logging.getLogger("wsfan.keeper")

POLL = 0.2  # seconds between lease checks: the servers outlive their last user by this much
RESTART_PAUSE = (0.5, 10.0)  # first and longest pause before starting a dead server again
STOP_TIMEOUT = 10.0  # SIGTERM to SIGKILL for the server
KINDS = ("valkey", "secantusdb")


def make_server(kind: str, directory: Path, port: int | None, fsync: str) -> EmbeddedServer:
    """The persistent server of `kind` in `directory`, dying with this process."""
    if kind == "valkey":
        return EmbeddedValkey(
            directory,
            port,
            persist=True,
            fsync="always" if fsync == "always" else "everysec",
            die_with_parent=True,
        )
    return EmbeddedSecantus(directory, port, persist=True, die_with_parent=True)


class Keeper:
    def __init__(self, server: EmbeddedServer, kind: str, directory: Path) -> None:
        self.server = server
        self.kind = kind
        self.directory = directory
        self.stopping = False
        self._pause = RESTART_PAUSE[0]
        self._restart_at: float | None = None
        self._failures = Repeated(log)

    def stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def publish(self) -> None:
        """Write the state file for the running server."""
        server = self.server
        assert server.pid is not None
        fsync = server.fsync if isinstance(server, EmbeddedValkey) else None
        state = State(self.kind, server.url, server.port, server.pid, os.getpid(), fsync)
        write_state(self.directory, state)

    def run(self) -> None:
        """Poll until no lease is held or a signal asks to stop; then stop the server.

        Returns holding the mutex (its fd stays open until this process exits)."""
        while not self.stopping:
            time.sleep(POLL)
            if not self.server.is_running():
                self._restart()
            try:
                fd = lock(self.directory, None)
            except MutexTimeout:
                continue  # someone is attaching: they will hold a lease
            if not held_leases(self.directory):
                log.info("no process holds a lease any more; stopping")
                self._shut_down()
                return
            os.close(fd)
        log.info("asked to stop; stopping %s pid %s", self.kind, self.server.pid)
        with contextlib.suppress(MutexTimeout):  # stop anyway
            lock(self.directory, time.monotonic() + STOP_TIMEOUT)
        self._shut_down()

    def _shut_down(self) -> None:
        remove_state(self.directory)
        self.server.stop(STOP_TIMEOUT)

    def _restart(self) -> None:
        now = time.monotonic()
        if self._restart_at is None:
            log.warning("%s exited; starting it again in %gs", self.kind, self._pause)
            self._restart_at = now + self._pause
            return
        if now < self._restart_at:
            return
        state = read_state(self.directory)  # a user may have raised appendfsync meanwhile
        if isinstance(self.server, EmbeddedValkey) and state and state.fsync == "always":
            self.server.fsync = "always"
        try:
            self.server.start()
        except EmbeddedServerError as exc:
            self._failures("%s did not start again: %s", self.kind, exc)
            self._pause = min(self._pause * 2, RESTART_PAUSE[1])
            self._restart_at = time.monotonic() + self._pause
            return
        self.publish()
        log.info("%s running again (pid %s)", self.kind, self.server.pid)
        self._pause, self._restart_at = RESTART_PAUSE[0], None
        self._failures = Repeated(log)


def _say(line: str) -> None:
    """A line for the launcher; if it is gone (killed while waiting), its lease went
    with it, and the first poll stops the server."""
    with contextlib.suppress(OSError):
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wsfan.embedded")
    parser.add_argument("command", choices=("keep",))
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--port", type=int)
    parser.add_argument("--fsync", choices=("always", "everysec"), default="everysec")
    args = parser.parse_args(argv)
    if os.fork():  # the launcher returns at once; the keeper is nobody's child to reap
        os._exit(0)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s keeper %(process)d: %(message)s",
    )
    directory = args.directory.resolve()
    server = make_server(args.kind, directory, args.port, args.fsync)
    keeper = Keeper(server, args.kind, directory)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, keeper.stop)
    _say(f"keeper {os.getpid()}")
    try:
        server.start()
    except EmbeddedServerError as exc:
        log.error("%s", exc)
        _say(f"error {exc}")
        return 1
    keeper.publish()
    log.info("%s at %s (pid %s)", args.kind, server.url, server.pid)
    _say("ready")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # the launcher's pipe closes: it has its answer
    os.close(devnull)
    try:
        keeper.run()
    finally:
        server.stop(STOP_TIMEOUT)
    return 0
