"""Attach to the embedded server of a data directory, starting its keeper if need be.

Every process that uses an embedded server (each `run.py`, `run.py apikey`) holds a
lease on it; one keeper process per server (wsfan.embedded.keeper) runs it while
any lease is held and stops it at most `keeper.POLL` seconds (plus its stop time)
after the last holder is gone, however that holder died. Several `run.py` in one
checkout therefore share the servers of its `embedded.dir`.

An unclean stop (a SIGKILLed keeper, a machine crash, a server left running by a
version without keepers) leaves a state file naming dead processes or servers
still holding the data directory. The next `attach` finds them, says so in one
warning naming the PIDs, stops those that are ours and starts afresh. A process is
ours only if it runs in that very data directory (/proc/PID/cwd) and is a keeper
or a server of that kind; anything else is left alone.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import IO, Self

from . import procs
from .keeper import KINDS, STOP_TIMEOUT, make_server
from .servers import HOST, EmbeddedServerError
from .state import (
    KEEPER_COMMAND,
    KEEPER_LOG,
    MUTEX_FILE,
    STATE_FILE,
    MutexTimeout,
    State,
    holder,
    lease_files,
    locked,
    new_lease,
    read_state,
    remove_state,
    write_state,
)

__all__ = ["START_TIMEOUT", "Lease", "attach"]

log = logging.getLogger("wsfan.embedded")

START_TIMEOUT = 60.0  # waiting for another process's attach, then for the server to answer
_KEEPER_ARGS = [arg.encode() for arg in KEEPER_COMMAND]


class Lease:
    """This process's hold on one embedded server; `url`, `pid` and `keeper` describe it.

    The hold lasts until `release()` or until this process and every child forked
    since have exited."""

    def __init__(
        self, kind: str, directory: Path, fd: int, path: Path, state: State, started: bool
    ) -> None:
        self.kind = kind
        self.directory = directory
        self.state = state
        self.started = started  # True when this process started the keeper
        self._fd: int | None = fd
        self._path = path
        self._lock = threading.Lock()  # release() and restore() may run on two threads

    @property
    def url(self) -> str:
        return self.state.url

    @property
    def pid(self) -> int:
        return self.state.pid

    @property
    def keeper(self) -> int:
        return self.state.keeper

    def others(self) -> str:
        """PIDs of the other processes attached, from the lease file names ("1, 2")."""
        pids = {holder(p) for p in lease_files(self.directory) if p != self._path}
        return ", ".join(map(str, sorted(pids - {0}))) or "none"

    def drop(self) -> None:
        """Give up the hold now (idempotent); the keeper notices within a poll."""
        with self._lock:
            if self._fd is not None:
                self._path.unlink(missing_ok=True)
                os.close(self._fd)
                self._fd = None

    def wait_stopped(self, deadline: float) -> bool:
        """After `drop`: wait until the keeper has exited, or until another process
        holds a lease (the server then stays). False if neither happened in time."""
        while time.monotonic() < deadline:
            # alive(), not _is_keeper(): an exiting keeper's command line empties
            # before it is gone
            if not procs.alive(self.state.keeper) or lease_files(self.directory):
                return True
            time.sleep(0.05)
        return False

    def release(self, timeout: float = STOP_TIMEOUT + 5) -> None:
        """`drop`, then `wait_stopped`: when this was the last holder, the server has
        stopped by the time this returns (or `timeout` passed)."""
        self.drop()
        self.wait_stopped(time.monotonic() + timeout)

    def restore(self, timeout: float = START_TIMEOUT) -> bool:
        """If the keeper is gone (killed), start the server again on the same port,
        so this process's URL stays valid. True if it had to; EmbeddedServerError if
        it could not."""
        with self._lock:
            if self._fd is None or _is_keeper(self.state.keeper, self.directory):
                return False
            deadline = time.monotonic() + timeout
            try:
                with locked(self.directory, deadline):
                    state, started = _ensure(self.kind, self.directory, self.state, deadline)
            except MutexTimeout:
                raise _busy(self.kind, self.directory, timeout) from None
            if state.port != self.state.port:
                log.error(
                    "embedded %s came back at %s; this process still uses %s: restart it",
                    self.kind,
                    state.url,
                    self.state.url,
                )
            self.state = state
            return started

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        held = "held" if self._fd is not None else "released"
        return f"<Lease {self.kind} {self.url} pid={self.pid} keeper={self.keeper} {held}>"


def attach(
    kind: str, directory: Path, fsync: str = "everysec", timeout: float = START_TIMEOUT
) -> Lease:
    """Hold a lease on the `kind` server ("valkey" or "secantusdb") of `directory`,
    starting its keeper (and the server) unless one runs; returns once it answers.

    `fsync` is Valkey's appendfsync: "always" raises a running Valkey's "everysec"
    to "always" (never the other way). Raises EmbeddedServerError with one line."""
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
    directory = Path(directory).resolve()
    deadline = time.monotonic() + timeout
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EmbeddedServerError(f"embedded {kind}: cannot create {directory}: {exc}") from None
    wanted = State(kind, "", 0, 0, 0, fsync if kind == "valkey" else None)
    try:
        with locked(directory, deadline):
            fd, path = new_lease(directory)
            try:
                state, started = _ensure(kind, directory, wanted, deadline)
            except BaseException:
                path.unlink(missing_ok=True)
                os.close(fd)
                raise
    except MutexTimeout:
        raise _busy(kind, directory, timeout) from None
    return Lease(kind, directory, fd, path, state, started)


def _busy(kind: str, directory: Path, timeout: float) -> EmbeddedServerError:
    return EmbeddedServerError(
        f"embedded {kind}: another process kept {directory / MUTEX_FILE} locked for "
        f"{timeout:g}s (starting or stopping the server); see {directory / KEEPER_LOG}"
    )


def _ensure(kind: str, directory: Path, wanted: State, deadline: float) -> tuple[State, bool]:
    """With the mutex and a lease held: the running server's state, after starting a
    keeper if no live one runs. `wanted.port` (when set) is the port it must have."""
    state = read_state(directory)
    if state is not None and _is_keeper(state.keeper, directory):
        answering = _answering(kind, directory, deadline)
        if answering is not None:
            if wanted.fsync == "always" and answering.fsync != "always":
                answering = _raise_fsync(directory, answering)
            return answering, False
    previous = _clear_stale(kind, directory, state)
    port = wanted.port or None
    if port is None and previous is not None and _port_free(previous.port):
        port = previous.port  # the same URL as before the unclean stop, when possible
    return _spawn_keeper(kind, directory, port, wanted.fsync, deadline), True


def _is_keeper(pid: int, directory: Path) -> bool:
    return pid > 0 and procs.alive(pid) and procs.cwd(pid) == directory and _runs_keeper(_argv(pid))


def _argv(pid: int) -> list[bytes]:
    return procs.cmdline(pid).split(b"\0")


def _runs_keeper(argv: list[bytes]) -> bool:
    return argv[1 : 1 + len(_KEEPER_ARGS)] == _KEEPER_ARGS


def _runs_server(kind: str, argv: list[bytes]) -> bool:
    """True for the command lines `servers` starts (strictly: a shell in the directory
    or a `tail -f secantusdb.log` must never match)."""
    names = [Path(os.fsdecode(arg)).name for arg in argv[:2]]
    if kind == "valkey":  # Valkey rewrites its title to "valkey-server HOST:PORT"
        return names[0].split(" ")[0] == "valkey-server"
    return b"--storage-path" in argv and (
        "secantusd-py" in names or argv[1:3] == [b"-m", b"secantus"]
    )


def _answering(kind: str, directory: Path, deadline: float) -> State | None:
    """The state once its server answers with the PID it names; None if its keeper
    dies first. A keeper restarting its server is waited for."""
    while True:
        state = read_state(directory)
        if state is None or not _is_keeper(state.keeper, directory):
            return None
        server = make_server(kind, directory, state.port, state.fsync or "everysec")
        if server.answering_pid() == state.pid:
            return state
        if time.monotonic() >= deadline:
            raise EmbeddedServerError(
                f"embedded {kind}: keeper pid {state.keeper} runs but pid {state.pid} does "
                f"not answer on {HOST}:{state.port}; see {directory / KEEPER_LOG}"
            )
        time.sleep(0.05)


def _raise_fsync(directory: Path, state: State) -> State:
    import redis

    client = redis.Redis.from_url(state.url, socket_timeout=5.0, socket_connect_timeout=5.0)
    try:
        client.config_set("appendfsync", "always")
    except redis.RedisError as exc:
        raise EmbeddedServerError(
            f"embedded valkey pid {state.pid}: cannot set appendfsync always: {exc}"
        ) from None
    finally:
        client.close()
    state = replace(state, fsync="always")
    write_state(directory, state)
    log.info("embedded valkey pid %d: appendfsync raised to always", state.pid)
    return state


def _clear_stale(kind: str, directory: Path, state: State | None) -> State | None:
    """Stop what an unclean stop left in `directory` (ours only), in one warning line.

    Returns the state file's old content (its port is worth reusing)."""
    ours: dict[int, str] = {}
    for pid in procs.running_in(directory):
        argv = _argv(pid)
        if _runs_keeper(argv):
            ours[pid] = "keeper"
        elif _runs_server(kind, argv):
            parent = procs.parent(pid)
            if parent not in (None, 1) and b"run.py" in procs.cmdline(parent or 0):
                raise EmbeddedServerError(
                    f"embedded {kind}: {directory} is in use by pid {pid}, started by "
                    f"run.py pid {parent} of an older version; stop that one first"
                )
            ours[pid] = kind
    notes = [f"{what} pid {pid} still running: stopping it" for pid, what in ours.items()]
    if state is not None:
        for pid, what in ((state.pid, kind), (state.keeper, "keeper")):
            if pid in ours:
                continue
            fate = "another program's now, left alone" if procs.alive(pid) else "gone"
            notes.append(f"{what} pid {pid} named in {STATE_FILE} is {fate}")
    if notes:
        log.warning(
            "embedded %s in %s was not stopped cleanly: %s; starting afresh",
            kind,
            directory,
            "; ".join(notes),
        )
    procs.terminate(ours, STOP_TIMEOUT)
    remove_state(directory)
    return state


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def _spawn_keeper(
    kind: str, directory: Path, port: int | None, fsync: str | None, deadline: float
) -> State:
    command = [sys.executable, *KEEPER_COMMAND, kind, str(directory)]
    if port is not None:
        command += ["--port", str(port)]
    if fsync is not None:
        command += ["--fsync", fsync]
    env = dict(os.environ)
    keeper_log = directory / KEEPER_LOG
    with keeper_log.open("ab") as err:
        launcher = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            cwd=directory,
            env=env,
            start_new_session=True,  # a terminal's Ctrl-C is for run.py, not the keeper
        )
    assert launcher.stdout is not None
    keeper = 0
    try:
        while True:
            line = _read_line(launcher.stdout, deadline)
            if line.startswith("keeper "):
                keeper = int(line.split()[1])
                continue
            if line == "ready" and (state := read_state(directory)) is not None:
                return state
            if line.startswith("error "):
                raise EmbeddedServerError(f"embedded {line.removeprefix('error ')}")
            why = "did not get ready in time" if line == "timeout" else "exited"
            raise EmbeddedServerError(
                f"embedded {kind}: keeper {why}; see {keeper_log}: {_last_line(keeper_log)}"
            )
    except BaseException:
        if keeper:
            procs.terminate([keeper], STOP_TIMEOUT)  # it stops its server on SIGTERM
        raise
    finally:
        launcher.stdout.close()
        launcher.wait()


def _read_line(stream: IO[bytes], deadline: float) -> str:
    """One line from the keeper's pipe; "" at EOF, "timeout" past the deadline."""
    buf = b""
    fd = stream.fileno()
    while not buf.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            return "timeout"
        chunk = os.read(fd, 1)
        if not chunk:
            return ""
        buf += chunk
    return buf.decode(errors="replace").strip()


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    return lines[-1].strip() if lines else "(empty)"
