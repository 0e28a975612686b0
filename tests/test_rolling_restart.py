"""A rolling restart of a 2-process cluster under load: clients of the official SDK
reconnect, recover, and end up with every acknowledged publication exactly once."""

from __future__ import annotations

import asyncio
import gc
import json
import uuid
from contextlib import ExitStack
from pathlib import Path

import pytest
from centrifuge import Client
from tornado.httpclient import AsyncHTTPClient
from wsfan.api.keys import DEVELOPMENT_KEY

from tests.conftest import TIMEOUT_SCALE
from tests.faults import end_stale_sdk_readers
from tests.processes import Server, clean_env, running
from tests.test_sdk_python import SubEvents, until

CHANNEL = "news"
CLIENTS_PER_INSTANCE = 3
# centrifuge-python 0.7 keeps a reader task (and its socket) per connection its
# server dropped, waiting forever; the test ends those itself, under this filter.
pytestmark = pytest.mark.filterwarnings(
    "ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning"
)


async def publish_until(stop: asyncio.Event, servers: list[Server], acked: list[int]) -> None:
    """Publishes through whichever instance answers, recording acknowledged offsets."""
    http = AsyncHTTPClient()
    n = 0
    while not stop.is_set():
        n += 1
        for server in servers:
            try:
                response = await http.fetch(
                    f"http://127.0.0.1:{server.port}/api/publish",
                    method="POST",
                    body=json.dumps({"channel": CHANNEL, "data": {"n": n}}),
                    headers={"X-API-Key": DEVELOPMENT_KEY},
                    request_timeout=2,
                )
            except Exception:
                continue  # that one is restarting: the other takes it
            acked.append(json.loads(response.body)["result"]["offset"])
            break
        await asyncio.sleep(0.02)


@pytest.mark.gen_test(timeout=120 * TIMEOUT_SCALE)
async def test_rolling_restart_under_load_loses_no_acknowledged_publication(
    redis_url, mongo_url, tmp_path
):
    await roll(redis_url, mongo_url, tmp_path)
    await end_stale_sdk_readers()
    gc.collect()


async def roll(redis_url: str, mongo_url: str, tmp_path: Path) -> None:
    env = clean_env(
        REDIS_URL=redis_url,
        MONGO_URL=mongo_url,
        WSFAN_REDIS__PREFIX=f"roll-{uuid.uuid4().hex[:8]}",
        WSFAN_LOG__LEVEL="warning",
        WSFAN_STATS__INTERVAL="0",
    )
    with ExitStack() as stack:
        servers = [
            stack.enter_context(running(tmp_path, env, ("--workers", "1"), name=f"n{i}"))
            for i in range(2)
        ]
        for server in servers:
            await asyncio.to_thread(server.wait_ready)
        clients, events = [], []
        for server in servers:
            for _ in range(CLIENTS_PER_INSTANCE):
                url = f"ws://127.0.0.1:{server.port}/connection/websocket"
                client = Client(url, min_reconnect_delay=0.05, max_reconnect_delay=0.3)
                sub_events = SubEvents()
                sub = client.new_subscription(CHANNEL, events=sub_events)
                await client.connect()
                await sub.subscribe()
                await sub.ready()
                clients.append(client)
                events.append(sub_events)
        acked: list[int] = []
        stop = asyncio.Event()
        publisher = asyncio.ensure_future(publish_until(stop, servers, acked))
        await asyncio.sleep(1.0)
        for index, old in enumerate(list(servers)):
            assert await asyncio.to_thread(old.terminate) == 0
            new = stack.enter_context(
                running(tmp_path, env, ("--workers", "1"), name=f"n{index}-again", port=old.port)
            )
            await asyncio.to_thread(new.wait_ready)
            servers[index] = new
            await asyncio.sleep(1.0)
        stop.set()
        await publisher
        assert len(acked) > 50 and acked == sorted(acked)

        def all_delivered() -> bool:
            return all(set(acked) <= {p.offset for p in e.publications} for e in events)

        await until(all_delivered, timeout=20 * TIMEOUT_SCALE)
        for e in events:
            offsets = [p.offset for p in e.publications]
            assert len(offsets) == len(set(offsets)), "a publication came twice"
            assert offsets == sorted(offsets)
            assert any(s.was_recovering and s.recovered for s in e.subscribed)
        for client in clients:
            await client.disconnect()
