"""`run.py`: configuration errors, settings layering, and a real process serving and stopping."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from server.cli import _settings, parse_args
from server.config import load_settings
from server.embedded import free_port
from tests.conftest import TIMEOUT_SCALE

ROOT = Path(__file__).resolve().parents[1]
RUN = [sys.executable, str(ROOT / "run.py")]
EXIT_TIMEOUT = 10 * TIMEOUT_SCALE  # a process with a bad configuration is gone by then
SIGTERM_TIMEOUT = 5 * TIMEOUT_SCALE  # stopping includes stopping embedded servers (~2 s)
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
        return self.proc.wait(SIGTERM_TIMEOUT)

    def stop(self) -> None:
        """Cleanup, idempotent: SIGTERM if still running, SIGKILL if that is not enough."""
        if self.proc.poll() is None:
            try:
                self.terminate()
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextmanager
def running(tmp_path: Path, env: Mapping[str, str]) -> Iterator[Server]:
    """run.py on a free loopback port, stderr to a file; killed by PID if still running after."""
    port = free_port()
    log = tmp_path / "run.stderr"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [*RUN, "--host", "127.0.0.1", "--port", str(port)],
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


# Configuration errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "config", "key"),
    [
        pytest.param([], {}, "[server]\nbogus = 1\n", "server.bogus", id="unknown-key-in-file"),
        pytest.param([], {"WSFAN_SERVER__PORT": "abc"}, None, "server.port", id="env-wrong-type"),
        pytest.param(["--port", "70000"], {}, None, "server.port", id="port-out-of-range"),
        pytest.param(["--workers", "2"], {}, None, "server.workers", id="workers-memory-broker"),
    ],
)
def test_bad_configuration_exits_2_naming_the_key(
    tmp_path: Path, args: list[str], env: dict[str, str], config: str | None, key: str
):
    if config is not None:
        path = tmp_path / "bad.toml"
        path.write_text(config)
        args = [*args, "--config", str(path)]
    # Embedded servers off: should validation wrongly pass, nothing is left behind.
    result = run_to_exit(args, clean_env(WSFAN_EMBEDDED__ENABLED="false", **env))
    assert result.returncode == 2, result.stderr
    assert key in result.stderr
    assert "configuration error" in result.stderr


# Layering ---------------------------------------------------------------------------


def test_config_file_overrides_defaults(tmp_path: Path):
    path = tmp_path / "site.toml"
    path.write_text("[client]\nping_interval = 5.0\n")
    settings = load_settings(path, env={})
    assert settings.client.ping_interval == 5.0
    assert settings.client.pong_timeout == 8.0  # default.toml


def test_config_file_alone_defines_channel_options(tmp_path: Path):
    path = tmp_path / "site.toml"
    path.write_text("[namespaces.chat]\nhistory_size = 7\n")
    settings = load_settings(path, env={})
    chat = settings.namespaces["chat"]
    assert chat.history_size == 7
    assert chat.allow_publish is False and chat.allow_anonymous is False  # starts closed
    assert settings.channels.history_size == 0  # default.toml's open [channels] not inherited


def test_environment_overrides_config_file(tmp_path: Path):
    path = tmp_path / "site.toml"
    path.write_text('[server]\nport = 9002\n[redis]\nurl = "redis://file:6379/0"\n')
    env = {"WSFAN_SERVER__PORT": "9000", "REDIS_URL": "redis://env:6379/0"}
    settings = load_settings(path, env=env)
    assert settings.server.port == 9000
    assert settings.redis.url == "redis://env:6379/0"


def test_flags_override_environment_and_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    path = tmp_path / "site.toml"
    path.write_text('[server]\nport = 9002\nhost = "127.0.0.2"\nworkers = 1\n')
    for name in list(os.environ):
        if name.startswith("WSFAN_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("WSFAN_SERVER__PORT", "9000")
    settings = _settings(parse_args(["--config", str(path), "--port", "9001"]))
    assert settings.server.port == 9001
    assert settings.server.host == "127.0.0.2"  # no flag: the file's value stands


# Running --------------------------------------------------------------------------


def test_serves_health_and_readiness_with_given_urls_and_exits_0_on_sigterm(
    tmp_path: Path, redis_url: str, mongo_url: str
):
    env = clean_env(
        REDIS_URL=redis_url, MONGO_URL=mongo_url, WSFAN_EMBEDDED__DIR=str(tmp_path / "var")
    )
    with running(tmp_path, env) as server:
        ready = server.wait_ready()
        assert ready == {"status": "ok", "checks": {"redis": "ok", "mongo": "ok"}}
        assert get(server.port, "/healthz") == (200, {"status": "ok"})
        assert server.terminate() == 0
    assert "embedded" not in server.stderr()
    assert not (tmp_path / "var").exists()


EMBEDDED_PID = re.compile(r"embedded (Valkey|SecantusDB) at \S+ \(pid (\d+)\)")


def embedded_pids(server: Server) -> dict[str, int]:
    """PIDs of the embedded servers run.py says (in its log) it started."""
    return {name: int(pid) for name, pid in EMBEDDED_PID.findall(server.stderr())}


def test_starts_embedded_servers_without_urls_and_stops_them_on_sigterm(tmp_path: Path):
    var = tmp_path / "var"
    with running(tmp_path, clean_env(WSFAN_EMBEDDED__DIR=str(var))) as server:
        try:
            ready = server.wait_ready()
            pids = embedded_pids(server)
            assert set(pids) == {"Valkey", "SecantusDB"}, server.stderr()
            assert all(alive(pid) for pid in pids.values())
            assert ready == {"status": "ok", "checks": {"redis": "ok", "mongo": "ok"}}
            assert (var / "valkey").is_dir() and (var / "secantusdb").is_dir()
            assert server.terminate() == 0
            deadline = time.monotonic() + SIGTERM_TIMEOUT
            while any(alive(p) for p in pids.values()) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert [name for name, pid in pids.items() if alive(pid)] == []
        finally:
            server.stop()
            kill_leftover_children(embedded_pids(server))


def kill_leftover_children(pids: Mapping[str, int]) -> None:
    """After a failure only: SIGKILL embedded servers our run.py started and left running."""
    for pid in pids.values():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"valkey" in cmdline or b"secantus" in cmdline:
            os.kill(pid, signal.SIGKILL)
