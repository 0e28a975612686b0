"""`run.py publish` finds the server running from the same checkout (server/instances.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from wsfan.embedded import free_port
from wsfan.instances import SERVERS, find, register

from tests.processes import SIGTERM_TIMEOUT, clean_env, run_to_exit, running

KEY = "publish-test-key"


@pytest.fixture
def server_env(tmp_path: Path, redis_url: str, mongo_url: str) -> dict[str, str]:
    """A run.py and its tools sharing `tmp_path/var` as their checkout's var/."""
    return clean_env(
        REDIS_URL=redis_url,
        MONGO_URL=mongo_url,
        WSFAN_EMBEDDED__DIR=str(tmp_path / "var"),
        WSFAN_API__KEYS=KEY,
        WSFAN_LOG__LEVEL="warning",
    )


def publish(env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    return run_to_exit(["publish", "news", '{"text": "hello"}', *extra], env)


def test_publish_reaches_a_server_on_a_non_default_port_without_url(
    tmp_path: Path, server_env: dict[str, str]
) -> None:
    with running(tmp_path, server_env, ("--workers", "1")) as server:
        server.wait_ready()
        assert server.port != 8888
        result = publish(server_env)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["offset"] >= 1
        found = find(tmp_path / "var")
        assert [(i.pid, i.port) for i in found] == [(server.proc.pid, server.port)]
        assert server.terminate() == 0
    assert find(tmp_path / "var") == []
    assert list((tmp_path / "var" / SERVERS).iterdir()) == []  # removed on exit


def test_the_supervisors_file_names_the_port_its_workers_share(
    tmp_path: Path, server_env: dict[str, str]
) -> None:
    with running(tmp_path, server_env, ("--workers", "2")) as server:
        server.wait_ready()
        assert [(i.pid, i.url) for i in find(tmp_path / "var")] == [
            (server.proc.pid, f"http://127.0.0.1:{server.port}")
        ]
        result = publish(server_env)
        assert result.returncode == 0, result.stderr


def test_a_file_left_by_a_killed_server_is_ignored_and_the_configured_port_used(
    tmp_path: Path, server_env: dict[str, str]
) -> None:
    with running(tmp_path, server_env, ("--workers", "1")) as server:
        server.wait_ready()
        server.kill()  # SIGKILL: no clean-up, the file stays
    assert (tmp_path / "var" / SERVERS / f"{server.proc.pid}.json").exists()
    configured = free_port()  # nothing listens there
    result = publish({**server_env, "WSFAN_SERVER__PORT": str(configured)})
    assert result.returncode == 1
    assert f"cannot reach http://127.0.0.1:{configured}/api" in result.stderr
    assert not (tmp_path / "var" / SERVERS / f"{server.proc.pid}.json").exists()


def test_a_file_whose_pid_now_names_another_process_is_stale(tmp_path: Path) -> None:
    # This process's own PID, with a start time that is not this process's.
    instance = register(tmp_path, "127.0.0.1", free_port())
    assert instance is not None and find(tmp_path) == [instance]
    body = json.loads(instance.path.read_text())
    instance.path.write_text(json.dumps({**body, "started": body["started"] + 1}))
    assert find(tmp_path) == []
    assert not instance.path.exists()


def test_url_given_wins_over_the_running_server(tmp_path: Path, server_env: dict[str, str]) -> None:
    with running(tmp_path, server_env, ("--workers", "1")) as server:
        server.wait_ready()
        elsewhere = f"http://127.0.0.1:{free_port()}/api"
        result = publish(server_env, "--url", elsewhere)
        assert result.returncode == 1
        assert f"cannot reach {elsewhere}" in result.stderr


def test_a_server_that_cannot_write_its_file_still_serves(
    tmp_path: Path, server_env: dict[str, str]
) -> None:
    var = tmp_path / "var"
    var.mkdir()
    (var / SERVERS).write_text("a file where the directory would be")
    with running(tmp_path, server_env, ("--workers", "1")) as server:
        server.wait_ready()
        assert "run.py publish will not find this server" in server.stderr()


def test_sigint_removes_the_file_too(tmp_path: Path, server_env: dict[str, str]) -> None:
    with running(tmp_path, server_env, ("--workers", "1")) as server:
        server.wait_ready()
        assert find(tmp_path / "var")
        os.kill(server.proc.pid, signal.SIGINT)
        assert server.proc.wait(SIGTERM_TIMEOUT) == 0
    assert find(tmp_path / "var") == []
