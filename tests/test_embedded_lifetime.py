"""run.py's embedded servers live exactly as long as some run.py of that embedded.dir
uses them, however it dies; what an unclean stop left is named and replaced."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from wsfan.embedded import EmbeddedSecantus, EmbeddedValkey

from tests.processes import (
    EMBEDDED_STOP_TIMEOUT,
    clean_env,
    embedded_pids,
    embedded_state,
    get,
    kill_embedded,
    running,
    stays_running,
    still_running,
)

ONE = ("--workers", "1")
CHECKS = {"cluster": "ok", "redis": "ok", "mongo": "ok"}


@pytest.fixture
def var(tmp_path: Path) -> Iterator[Path]:
    """An embedded.dir of this test's own; whatever still runs in it is killed after."""
    var = tmp_path / "var"
    yield var
    kill_embedded(var)


def env_for(var: Path, **extra: str) -> dict[str, str]:
    return clean_env(WSFAN_EMBEDDED__DIR=str(var), **extra)


def test_sigkill_of_run_py_leaves_no_embedded_process_and_the_next_start_is_clean(
    tmp_path: Path, var: Path
):
    with running(tmp_path, env_for(var), args=("--workers", "2"), name="killed") as killed:
        killed.wait_ready()
        pids = embedded_pids(var)
        assert set(pids) == {"valkey", "valkey keeper", "secantusdb", "secantusdb keeper"}
        killed.kill()  # its workers notice within a second and exit; then the keepers stop
    assert still_running(pids, timeout=EMBEDDED_STOP_TIMEOUT) == []
    with running(tmp_path, env_for(var), args=ONE, name="next") as after:
        after.wait_ready()
        assert "not stopped cleanly" not in after.stderr()
        after.kill()  # quicker than SIGTERM; the fixture ends what it left


def test_run_py_processes_of_one_embedded_dir_share_its_servers_until_the_last_stops(
    tmp_path: Path, var: Path
):
    with running(tmp_path, env_for(var), args=ONE, name="a") as a:
        a.wait_ready()
        pids = embedded_pids(var)
        valkey_url = str(embedded_state(var)["valkey"]["url"])
        # b as `make run` twice; c as a reader of "Running a cluster" would: the first
        # one's Valkey by URL, no MONGO_URL.
        with (
            running(tmp_path, env_for(var), args=ONE, name="b") as b,
            running(tmp_path, env_for(var, REDIS_URL=valkey_url), args=ONE, name="c") as c,
        ):
            b.wait_ready()
            c.wait_ready()
            assert embedded_pids(var) == pids
            assert "shared with pid" in b.stderr() and "shared with pid" in c.stderr()
            assert a.terminate() == 0
            assert stays_running(pids, polls=3) == []
            assert b.terminate() == 0
            assert stays_running(pids, polls=3) == []
            assert get(c.port, "/readyz") == (200, {"status": "ok", "checks": CHECKS})
            assert c.terminate() == 0
            assert still_running(pids, timeout=0) == []  # stopped before the last one exits


def test_servers_an_older_run_py_left_running_are_named_and_replaced(tmp_path: Path, var: Path):
    # What a SIGKILL of run.py left before keepers existed: both servers still running
    # (SecantusDB holding its data directory's lock) and var/embedded.json naming them.
    left = [EmbeddedValkey(var / "valkey", persist=True), EmbeddedSecantus(var / "secantusdb")]
    try:
        for server in left:
            server.start()
        pids = {server.name: server.pid or 0 for server in left}
        legacy = {
            role: {"url": s.url, "pid": s.pid}
            for role, s in zip(("redis", "mongo"), left, strict=True)
        }
        (var / "embedded.json").write_text(json.dumps(legacy))
        with running(tmp_path, env_for(var), args=ONE) as server:
            server.wait_ready()
            notes = [line for line in server.stderr().splitlines() if "not stopped" in line]
            assert len(notes) == 2, server.stderr()
            for note, (name, pid) in zip(notes, pids.items(), strict=True):
                assert f"{name} pid {pid} still running: stopping it" in note
            assert still_running(pids, timeout=0) == []
            assert not (var / "embedded.json").exists()
            assert set(embedded_pids(var).values()).isdisjoint(pids.values())
            server.kill()  # quicker than SIGTERM; the fixture ends what it left
    finally:
        for server in left:
            server.stop()  # reaps them (they were this test's children)


def test_embedded_valkey_fsyncs_always_when_a_channel_persists(
    tmp_path: Path, var: Path, mongo_url: str
):
    config = tmp_path / "persist.toml"
    config.write_text("[namespaces.log]\nhistory_size = 10\npersist = true\n")
    env = env_for(var, MONGO_URL=mongo_url)  # only Valkey is embedded
    with running(tmp_path, env, args=(*ONE, "--config", str(config))) as server:
        server.wait_ready()
        assert not (var / "secantusdb").exists()
        url = str(embedded_state(var)["valkey"]["url"])
        client = redis.Redis.from_url(url)
        try:
            assert client.config_get("appendfsync") == {"appendfsync": "always"}
        finally:
            client.close()
