"""`python run.py token`: development tokens the server accepts as they are."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from wsfan.auth.cli import main
from wsfan.auth.tokens import TokenVerifier
from wsfan.config import load_settings

from tests.conftest import TIMEOUT_SCALE
from tests.processes import clean_env, config_exit, run_to_exit, running


@pytest.fixture
def verifier() -> TokenVerifier:
    return TokenVerifier.from_settings(load_settings(env={}).auth)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_prints_a_connection_token_for_the_user_valid_for_an_hour(capsys, verifier):
    code, out, _ = run(capsys, "alice")
    assert code == 0
    claims = verifier.connection(out.strip())
    assert claims.user == "alice"
    assert claims.expires_at is not None
    assert abs(claims.expires_at - (time.time() + 3600)) <= 2


def test_channel_makes_a_subscription_token(capsys, verifier):
    _, out, _ = run(capsys, "alice", "--channel", "private:1")
    claims = verifier.subscription(out.strip())
    assert (claims.user, claims.channel) == ("alice", "private:1")


def test_ttl_zero_makes_a_token_that_never_expires(capsys, verifier):
    _, out, _ = run(capsys, "alice", "--ttl", "0")
    assert verifier.connection(out.strip()).expires_at is None


def test_info_is_attached_as_json(capsys, verifier):
    _, out, _ = run(capsys, "alice", "--info", '{"name": "Alice"}')
    assert verifier.connection(out.strip()).info == {"name": "Alice"}


def test_subscribe_adds_server_side_channels(capsys, verifier):
    _, out, _ = run(capsys, "alice", "--subscribe", "news", "--subscribe", "chat:1")
    assert verifier.connection(out.strip()).channels == ("news", "chat:1")


def test_empty_user_makes_an_anonymous_token(capsys, verifier):
    _, out, _ = run(capsys, "")
    assert verifier.connection(out.strip()).user == ""


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["alice", "--info", "{not json"], "--info is not valid JSON"),
        (["alice", "--ttl", "-5"], "--ttl must be >= 0"),
        (["alice", "--channel", "c", "--subscribe", "d"], "--subscribe"),
    ],
)
def test_bad_arguments_exit_2_saying_why(capsys, argv: list[str], message: str):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == "" and message in err


def test_without_a_secret_exits_2_naming_the_key(capsys, tmp_path: Path, monkeypatch):
    monkeypatch.delenv("WSFAN_AUTH__HMAC_SECRET", raising=False)
    config = tmp_path / "no-secret.toml"
    config.write_text('[auth]\nhmac_secret = ""\n')
    code, out, err = run(capsys, "alice", "--config", str(config))
    assert code == 2 and out == "" and "auth.hmac_secret" in err


def test_run_py_token_prints_one_token_the_default_server_accepts(verifier):
    result = run_to_exit(["token", "alice"], clean_env())
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    assert verifier.connection(lines[0]).user == "alice"
    assert "development secret" in result.stderr  # a warning, never the secret itself
    assert load_settings(env={}).auth.hmac_secret not in result.stderr


# The server's own checks at start-up -----------------------------------------------------


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ('[client]\nallow_anonymous = false\n[auth]\nhmac_secret = ""\n', "auth.hmac_secret"),
        ('[auth]\nhmac_secret = "too-short"\n', "auth.hmac_secret"),
        ('[auth]\npublic_key_file = "/nonexistent/key.pem"\n', "auth.public_key_file"),
    ],
    ids=["tokens-required-without-key", "short-secret", "missing-key-file"],
)
def test_server_with_unusable_token_settings_exits_2_naming_the_key(
    tmp_path: Path, config: str, key: str
):
    result = config_exit(tmp_path, config)
    assert result.returncode == 2, result.stderr
    assert key in result.stderr and "configuration error" in result.stderr
    assert "too-short" not in result.stderr


# Against the server as shipped ------------------------------------------------------------


async def _sdk_clients_connect(url: str, tokens: list[str]) -> list[bool]:
    """Whether the official SDK connects with each token ("" for none)."""
    from centrifuge import Client, ClientState

    connected = []
    for token in tokens:
        client = Client(url, token=token, timeout=5 * TIMEOUT_SCALE, proxy=None)
        try:
            await client.connect()
            await asyncio.wait_for(client.ready(), 5 * TIMEOUT_SCALE)
            connected.append(client.state is ClientState.CONNECTED)
        finally:
            await client.disconnect()
    # The SDK closes its sockets in background tasks: let them finish (bounded).
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    if others:
        await asyncio.wait(others, timeout=5 * TIMEOUT_SCALE)
    return connected


def test_run_py_token_output_works_against_the_shipped_server(
    tmp_path: Path, redis_url: str, mongo_url: str
):
    """`make run` as is (default config; the session's Valkey and SecantusDB stand
    in for the embedded ones): the printed token connects, and so does an anonymous client."""
    minted = run_to_exit(["token", "alice"], clean_env())
    assert minted.returncode == 0, minted.stderr
    env = clean_env(REDIS_URL=redis_url, MONGO_URL=mongo_url)
    with running(tmp_path, env, ("--workers", "1")) as server:
        server.wait_ready()
        url = f"ws://127.0.0.1:{server.port}/connection/websocket"
        assert asyncio.run(_sdk_clients_connect(url, [minted.stdout.strip(), ""])) == [True, True]
        assert server.terminate() == 0
