"""Graceful shutdown of a real run.py: drain, 3001 to every client, exit in time."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest
from wsfan.protocol import Encoding

from tests.client import ProtoClient
from tests.conftest import TIMEOUT_SCALE
from tests.processes import clean_env, get, run_to_exit, running


def env_for(redis_url: str, mongo_url: str, prefix: str, **extra: str) -> dict[str, str]:
    return clean_env(
        REDIS_URL=redis_url,
        MONGO_URL=mongo_url,
        WSFAN_REDIS__PREFIX=prefix,
        WSFAN_SERVER__WORKERS="1",
        **extra,
    )


@pytest.mark.gen_test(timeout=60 * TIMEOUT_SCALE)
async def test_sigterm_drains_then_closes_clients_with_3001_and_exits_in_time(
    tmp_path: Path, redis_url: str, mongo_url: str, redis_prefix: str
):
    env = env_for(
        redis_url,
        mongo_url,
        redis_prefix,
        WSFAN_SERVER__DRAIN_DELAY="1.0",
        WSFAN_SERVER__SHUTDOWN_TIMEOUT="8.0",
    )
    with running(tmp_path, env) as server:
        server.wait_ready()
        url = f"ws://127.0.0.1:{server.port}/connection/websocket"
        client = await ProtoClient.open(url, Encoding.JSON, timeout=10 * TIMEOUT_SCALE)
        try:
            await client.connect()
            await client.result("subscribe", {"channel": "news"})
            started = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.2)
            # still serving while draining, but no longer ready
            status, body = get(server.port, "/readyz")
            assert (status, body["status"]) == (503, "draining")
            assert get(server.port, "/healthz")[0] == 200
            disconnect = await client.push("disconnect")
            assert disconnect["disconnect"]["code"] == 3001
            assert (await client.closed())[0] == 3001
            assert time.monotonic() - started >= 1.0  # the drain delay came first
        finally:
            client.close()
        assert await asyncio.get_running_loop().run_in_executor(None, server.proc.wait, 15) == 0
        assert time.monotonic() - started < 8.0 + 3 * TIMEOUT_SCALE  # timeout, plus process exit


def test_shutdown_timeout_must_leave_room_for_the_drain_and_the_queue(tmp_path: Path):
    result = run_to_exit(
        [],
        clean_env(
            WSFAN_SERVER__SHUTDOWN_TIMEOUT="5.0",
            WSFAN_PERSIST__SHUTDOWN_TIMEOUT="4.0",
            WSFAN_SERVER__DRAIN_DELAY="1.0",
        ),
    )
    assert result.returncode == 2
    assert "server.shutdown_timeout" in result.stderr
