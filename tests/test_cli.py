"""`run.py`: configuration errors, settings layering, and a real process serving and stopping."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest
from wsfan.cli import _settings, fsync_policy, parse_args
from wsfan.config import load_settings
from wsfan.embedded import free_port

from tests.processes import (
    Server,
    alive,
    clean_env,
    get,
    kill_embedded,
    run_to_exit,
    running,
    still_running,
)

# Configuration errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "config", "key"),
    [
        pytest.param([], {}, "[server]\nbogus = 1\n", "server.bogus", id="unknown-key-in-file"),
        pytest.param([], {"WSFAN_SERVER__PORT": "abc"}, None, "server.port", id="env-wrong-type"),
        pytest.param(["--port", "70000"], {}, None, "server.port", id="port-out-of-range"),
        pytest.param(
            ["--workers", "2"],
            {"WSFAN_BROKER__TYPE": '"memory"'},
            None,
            "server.workers",
            id="workers-memory-broker",
        ),
        pytest.param(
            [],
            {"WSFAN_REDIS__CLUSTER": "true", "WSFAN_REDIS__SHARDS": '["redis://127.0.0.1:1/0"]'},
            None,
            "redis.shards",
            id="cluster-and-shards",
        ),
        # the test turns embedded servers off, so the Redis broker has no URL
        pytest.param([], {}, None, "redis.url", id="redis-broker-without-url"),
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
        assert ready == {"status": "ok", "checks": {"cluster": "ok", "redis": "ok", "mongo": "ok"}}
        assert get(server.port, "/healthz") == (200, {"status": "ok"})
        assert server.terminate() == 0
    assert "embedded" not in server.stderr()
    # no embedded server was started; the file naming its port is gone with it
    assert sorted(p.name for p in (tmp_path / "var").iterdir()) == ["servers"]
    assert list((tmp_path / "var" / "servers").iterdir()) == []


EMBEDDED_PID = re.compile(r"embedded (Valkey|SecantusDB) at \S+ \(pid (\d+), keeper (\d+);")


def embedded_pids(server: Server) -> dict[str, int]:
    """PIDs of the embedded servers and their keepers run.py says (in its log) it uses."""
    pids = {}
    for name, pid, keeper in EMBEDDED_PID.findall(server.stderr()):
        pids[name], pids[f"{name} keeper"] = int(pid), int(keeper)
    return pids


def test_starts_embedded_servers_without_urls_and_stops_them_on_sigterm(tmp_path: Path):
    var = tmp_path / "var"
    with running(tmp_path, clean_env(WSFAN_EMBEDDED__DIR=str(var))) as server:
        try:
            ready = server.wait_ready()
            pids = embedded_pids(server)
            assert set(pids) == {"Valkey", "SecantusDB", "Valkey keeper", "SecantusDB keeper"}
            assert all(alive(pid) for pid in pids.values())
            assert ready == {
                "status": "ok",
                "checks": {"cluster": "ok", "redis": "ok", "mongo": "ok"},
            }
            assert (var / "valkey").is_dir() and (var / "secantusdb").is_dir()
            assert server.terminate() == 0
            assert still_running(pids, timeout=0) == []  # stopped before run.py exits
        finally:
            server.stop()
            kill_embedded(var)  # after a failure only: what run.py left running


# Start-up problems -------------------------------------------------------------------

SECRET = "a-test-secret-of-more-than-32-bytes"  # not the development one, which warns


@pytest.mark.parametrize(
    ("env", "key"),
    [
        pytest.param({"REDIS_URL": "http://x"}, "redis.url", id="redis-url-scheme"),
        pytest.param({"MONGO_URL": "http://x"}, "mongo.url", id="mongo-url-scheme"),
        pytest.param(
            {"WSFAN_AUTH__PUBLIC_KEY_FILE": "{tmp}/not.pem"},
            "auth.public_key_file",
            id="public-key-not-pem",
        ),
        pytest.param({"WSFAN_AUTH__JWKS_FILE": "{tmp}"}, "auth.jwks_file", id="jwks-a-directory"),
        pytest.param({}, "server.port", id="port-in-use"),
        pytest.param(
            {"WSFAN_EMBEDDED__DIR": "{tmp}/not.pem/var"}, "embedded.dir", id="embedded-dir"
        ),
    ],
)
def test_a_start_up_problem_is_one_line_and_exit_2_before_anything_starts(
    tmp_path: Path, env: dict[str, str], key: str
):
    (tmp_path / "not.pem").write_text("not a key\n")
    var = tmp_path / "var"
    env = {k: v.replace("{tmp}", str(tmp_path)) for k, v in env.items()}
    env = clean_env(WSFAN_EMBEDDED__DIR=str(var), WSFAN_AUTH__HMAC_SECRET=f'"{SECRET}"') | env
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1] if key == "server.port" else free_port()
        result = run_to_exit(["--host", "127.0.0.1", "--port", str(port)], env)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.splitlines()
    assert key in line
    assert not var.exists()  # no keeper, no server: nothing was started


@pytest.mark.parametrize(
    ("config", "policy"),
    [
        ("", "everysec"),
        ("[channels]\nhistory_size = 10\npersist = true\n", "always"),
        ("[namespaces.log]\nhistory_size = 10\npersist = true\n", "always"),
    ],
)
def test_embedded_valkey_fsyncs_always_when_any_channel_persists(
    tmp_path: Path, config: str, policy: str
):
    path = tmp_path / "site.toml"
    path.write_text(config)
    assert fsync_policy(load_settings(path, env={})) == policy
