"""`/healthz` and `/readyz` in-process, against real Redis- and MongoDB-protocol servers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient
from tornado.ioloop import IOLoop
from tornado.web import Application
from wsfan.compose import build
from wsfan.config import Settings
from wsfan.embedded import EmbeddedServer, EmbeddedValkey
from wsfan.facade import Server

from tests.conftest import TIMEOUT_SCALE

TEST_TIMEOUT = 15 * TIMEOUT_SCALE


@pytest.fixture
def server(
    request: pytest.FixtureRequest, settings: Settings, tmp_path: Path, io_loop: IOLoop
) -> Iterator[Server]:
    """An instance from the composition root on Redis and MongoDB: the shared servers,
    or the test's own `embedded_redis` / `embedded_mongo` when it asks for one (to
    stop or kill it). /readyz checks them through the broker's and the store's ping."""

    def url(own: str, shared: str) -> str:
        if own in request.fixturenames:
            server: EmbeddedServer = request.getfixturevalue(own)
            return server.url
        return str(request.getfixturevalue(shared))

    redis: dict[str, object] = {"url": url("embedded_redis", "redis_url")}
    if "second_shard" in request.fixturenames:
        second: EmbeddedServer = request.getfixturevalue("second_shard")
        redis["shards"] = [redis["url"], second.url]
    server = build(
        settings.with_overrides(
            broker={"type": "redis"},
            redis=redis,
            mongo={"url": url("embedded_mongo", "mongo_url")},
            persist={"spill_dir": str(tmp_path / "spill")},
        )
    )
    io_loop.run_sync(server.start)
    io_loop.run_sync(lambda: heard(server), timeout=TEST_TIMEOUT)
    yield server
    io_loop.run_sync(server.close)


@pytest.fixture
def second_shard(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """A Valkey of the test's own: with it, the server shards over it and `embedded_redis`."""
    with EmbeddedValkey(tmp_path / "second", persist=False) as server:
        yield server


async def heard(server: Server) -> None:
    """Until the instance's own cluster announcement came back: /readyz answers 503
    before that, by design, and these tests are about the other checks."""
    while not server.node.cluster.heard_itself:
        await asyncio.sleep(0.01)


@pytest.fixture
def app(server: Server) -> Application:
    return server.application()


@pytest.fixture
def fetch(http_client: AsyncHTTPClient, http_port: int) -> Any:
    async def fetch(path: str) -> tuple[int, dict[str, Any]]:
        response = await http_client.fetch(
            f"http://127.0.0.1:{http_port}{path}",
            raise_error=False,
            request_timeout=10 * TIMEOUT_SCALE,
        )
        assert response.headers["Content-Type"] == "application/json"
        return response.code, json.loads(response.body)

    return fetch


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_healthz_answers_ok(fetch: Any):
    assert await fetch("/healthz") == (200, {"status": "ok"})


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_readyz_answers_ok_when_redis_and_mongo_answer(fetch: Any):
    status, body = await fetch("/readyz")
    assert status == 200
    assert body == {"status": "ok", "checks": {"cluster": "ok", "redis": "ok", "mongo": "ok"}}


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_readyz_stays_ready_and_reports_mongo_when_mongo_is_stopped(
    fetch: Any, embedded_mongo: EmbeddedServer
):
    """Fan-out works without MongoDB (the channel log spills), so a MongoDB outage
    must not pull every instance out of its load balancer."""
    assert (await fetch("/readyz"))[0] == 200
    embedded_mongo.stop()
    status, body = await fetch("/readyz")
    assert status == 200
    assert body["status"] == "ok"
    assert body["checks"]["redis"] == "ok"
    assert body["checks"]["mongo"].startswith("unavailable")


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_readyz_answers_503_naming_redis_when_redis_is_killed(
    fetch: Any, embedded_redis: EmbeddedServer
):
    assert (await fetch("/readyz"))[0] == 200
    embedded_redis.kill()
    status, body = await fetch("/readyz")
    assert status == 503
    assert body["status"] == "unavailable"
    assert body["checks"]["mongo"] == "ok"
    assert body["checks"]["redis"].startswith("unavailable")


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_readyz_stays_ready_while_any_shard_answers_and_reports_each(
    fetch: Any, embedded_redis: EmbeddedServer, second_shard: EmbeddedServer
):
    status, body = await fetch("/readyz")
    assert (status, set(body["shards"].values())) == (200, {"ok"})
    second_shard.stop()
    status, body = await fetch("/readyz")
    assert status == 200
    assert sorted(body["shards"].values())[1].startswith("unavailable")
    embedded_redis.stop()
    status, body = await fetch("/readyz")
    assert status == 503
    assert body["checks"]["redis"].startswith("unavailable")
