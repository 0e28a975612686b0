"""Real `run.py` processes for tests: start on a free port, wait until ready, stop by PID."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from wsfan.embedded import free_port

from tests.conftest import TIMEOUT_SCALE

ROOT = Path(__file__).resolve().parents[1]
RUN = [sys.executable, str(ROOT / "run.py")]
EXIT_TIMEOUT = 10 * TIMEOUT_SCALE  # a process with a bad configuration is gone by then
# Stopping includes stopping embedded servers: SecantusDB alone takes ~2.1 s on SIGTERM
# (its accept thread's timeout), and CI runs this with the rest of the suite.
SIGTERM_TIMEOUT = 10 * TIMEOUT_SCALE
# An embedded SecantusDB's graceful stop: 2 s for its accept thread, up to 5 s draining
# connection threads, then a checkpoint; longer on a loaded CI machine.
EMBEDDED_STOP_TIMEOUT = 30 * TIMEOUT_SCALE
READY_TIMEOUT = 30 * TIMEOUT_SCALE  # includes starting embedded Valkey and SecantusDB


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without backing-server URLs or WSFAN_ settings, plus `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("REDIS_URL", "MONGO_URL") and not k.startswith("WSFAN_")
    }
    env.update(extra)
    return env


def run_to_exit(args: list[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RUN, *args],
        cwd=ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=EXIT_TIMEOUT,
        check=False,
    )


def config_exit(directory: Path, config: str, **env_vars: str) -> subprocess.CompletedProcess[str]:
    """run.py with `config` as its --config file, alone on a free port with the memory
    broker (should validation wrongly pass, it serves until EXIT_TIMEOUT)."""
    path = directory / "config.toml"
    path.write_text(config)
    env = clean_env(
        WSFAN_EMBEDDED__ENABLED="false",
        WSFAN_BROKER__TYPE="memory",
        WSFAN_SERVER__PORT=str(free_port()),
        **env_vars,
    )
    return run_to_exit(["--config", str(path)], env)


def get(port: int, path: str) -> tuple[int, dict[str, object]]:
    """(status, JSON body) of GET http://127.0.0.1:port/path; raises OSError if nothing answers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3 * TIMEOUT_SCALE)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self) -> dict[str, object]:
        """Poll /readyz until it answers 200; return its body."""
        deadline = time.monotonic() + READY_TIMEOUT
        last: object = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"exited {self.proc.returncode}:\n{self.stderr()}")
            try:
                status, body = get(self.port, "/readyz")
                if status == 200:
                    return body
                last = (status, body)
            except OSError as exc:
                last = exc
            time.sleep(0.05)
        raise AssertionError(f"not ready within {READY_TIMEOUT:g}s ({last!r}):\n{self.stderr()}")

    def terminate(self) -> int:
        """SIGTERM; the exit code, which must come within SIGTERM_TIMEOUT."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(SIGTERM_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"still running {SIGTERM_TIMEOUT:g} s after SIGTERM:\n{self.stderr()}"
            ) from None

    def kill(self) -> None:
        """SIGKILL: the process dies without any cleanup (its workers' too)."""
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        """Cleanup, idempotent: SIGTERM if still running, SIGKILL if that is not enough."""
        if self.proc.poll() is None:
            try:
                self.terminate()
            except AssertionError:
                self.proc.kill()
                self.proc.wait()


@contextmanager
def running(
    tmp_path: Path,
    env: Mapping[str, str],
    args: tuple[str, ...] = (),
    name: str = "run",
    port: int | None = None,
) -> Iterator[Server]:
    """run.py on `port` (default: a free loopback port), stderr to a file; killed by PID
    if still running after."""
    port = port or free_port()
    log = tmp_path / f"{name}.stderr"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [*RUN, "--host", "127.0.0.1", "--port", str(port), *args],
            cwd=ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    server = Server(proc, port, log)
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def ready(
    command: list[str], port: int, log: Path, cwd: Path = ROOT, env: Mapping[str, str] | None = None
) -> Iterator[Server]:
    """`command` (a server that will listen on `port`) run in `cwd` with `env` (default:
    `clean_env()`), stderr to `log`; yielded once its /readyz answers 200, stopped after
    (SIGTERM, SIGKILL if that is not enough)."""
    with log.open("wb") as err:
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=dict(clean_env() if env is None else env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    server = Server(proc, port, log)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


# Embedded servers of a run.py (keepers and their servers) ------------------------------

EMBEDDED_KINDS = ("valkey", "secantusdb")  # also their directories under embedded.dir


def embedded_state(var: Path) -> dict[str, dict[str, object]]:
    """What var/<kind>/embedded.json says, per kind that has one (url, port, pid, keeper)."""
    states = {}
    for kind in EMBEDDED_KINDS:
        path = var / kind / "embedded.json"
        if path.exists():
            states[kind] = json.loads(path.read_text())
    return states


def embedded_pids(var: Path) -> dict[str, int]:
    """{"valkey": pid, "valkey keeper": pid, ...} from the state files under `var`."""
    pids = {}
    for kind, state in embedded_state(var).items():
        pids[kind] = int(state["pid"])  # type: ignore[call-overload]
        pids[f"{kind} keeper"] = int(state["keeper"])  # type: ignore[call-overload]
    return pids


def is_running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (an exited child nobody reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :][:1] != b"Z"


def still_running(pids: Mapping[str, int], timeout: float = SIGTERM_TIMEOUT) -> list[str]:
    """Poll until none of `pids` runs or `timeout` passed; the names of those still running."""
    deadline = time.monotonic() + timeout
    while (left := [name for name, pid in pids.items() if is_running(pid)]) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.05)
    return left


def kill_embedded(var: Path) -> None:
    """Cleanup after a test: SIGKILL every keeper and server still running in `var`'s
    embedded directories (recognised by /proc/PID/cwd, so only ours)."""
    from wsfan.embedded.procs import running_in

    for kind in EMBEDDED_KINDS:
        if (var / kind).is_dir():
            for pid in running_in(var / kind):
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def stays_running(pids: Mapping[str, int], polls: int = 5) -> list[str]:
    """Watch `pids` for several keeper polls (a keeper that is going to stop its server
    has decided by then); the names of those that stopped."""
    from wsfan.embedded.keeper import POLL

    deadline = time.monotonic() + polls * POLL * TIMEOUT_SCALE
    while time.monotonic() < deadline:
        if stopped := [name for name, pid in pids.items() if not is_running(pid)]:
            return stopped
        time.sleep(POLL / 2)
    return []
