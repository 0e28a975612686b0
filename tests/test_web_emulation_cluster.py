"""/emulation across instances: two `run.py` processes sharing the real Valkey
(redis broker, one prefix), as a load balancer without sticky sessions would
use them. A request sent to the instance not holding the stream is forwarded
through the broker and answered once the holder took the commands (or said it
could not), so the SDK's later commands are never lost on the way."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest

from tests.conftest import TIMEOUT_SCALE
from tests.processes import Server, clean_env, running
from tests.streams_client import BIDIRECTIONAL, Clients

EMULATION_TIMEOUT = 1.0
TEST_TIMEOUT = 30 * TIMEOUT_SCALE
PRESENCE = {"id": 2, "presence_stats": {"channel": "news"}}


@pytest.fixture(scope="module", params=["redis", "sharded", "cluster"])
def pair(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, redis_url: str
) -> Iterator[list[Server]]:
    """Two single-process instances shared by this module: on the session's Valkey,
    sharded over its two (control traffic, and so forwarding, on the first), then on
    the session's Redis Cluster (control traffic on one shard, sharded pub/sub)."""
    shards = {}
    if request.param == "sharded":
        second = request.getfixturevalue("second_redis_url")
        shards = {"WSFAN_REDIS__SHARDS": json.dumps([redis_url, second])}
    if request.param == "cluster":
        redis_url = request.getfixturevalue("cluster_url")
        shards = {"WSFAN_REDIS__CLUSTER": "true"}
    env = clean_env(
        **shards,
        REDIS_URL=redis_url,
        WSFAN_EMBEDDED__ENABLED="false",
        WSFAN_REDIS__PREFIX=f"emulation-{uuid.uuid4().hex[:8]}:",
        WSFAN_LOG__LEVEL="warning",
        WSFAN_TRANSPORTS__EMULATION_TIMEOUT=str(EMULATION_TIMEOUT),
        WSFAN_CHANNELS__PRESENCE="true",  # presence_stats, the probe command here
    )
    logs = tmp_path_factory.mktemp("emulation")
    with ExitStack() as stack:
        servers = [
            stack.enter_context(running(logs, env, ("--workers", "1"), name=f"n{i}"))
            for i in range(2)
        ]
        for server in servers:
            body = server.wait_ready()  # ready: its announcement went round, the other knows it
            assert (
                len(body.get("shards", {}))
                == {"redis": 0, "sharded": 2, "cluster": 3}[request.param]
            )
        yield servers


@contextmanager
def stopped(server: Server) -> Iterator[None]:
    """`server` frozen (SIGSTOP) while the block runs: it reads nothing, answers nothing."""
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)


@pytest.mark.parametrize("kind", BIDIRECTIONAL)
@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_commands_sent_to_the_other_instance_are_answered_on_the_stream(pair, kind):
    holder, other = pair
    async with Clients(holder.port) as on_holder, Clients(other.port) as on_other:
        stream = await on_holder.connect(kind)
        subscribe = {"id": 2, "subscribe": {"channel": f"fwd-{kind}"}}
        publish = {"id": 3, "publish": {"channel": f"fwd-{kind}", "data": "via the other"}}
        assert await on_other.emulate(stream, subscribe, publish) == 204
        assert "subscribe" in await stream.reply(2)
        assert "publish" in await stream.reply(3)
        assert (await stream.push("pub"))["pub"]["data"] == "via the other"


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_the_forwarded_request_is_answered_only_once_the_holder_took_the_commands(pair):
    holder, other = pair
    async with Clients(holder.port) as on_holder, Clients(other.port) as on_other:
        stream = await on_holder.connect("http_stream")
        with stopped(holder):
            sending = asyncio.ensure_future(on_other.emulate(stream, PRESENCE))
            await asyncio.sleep(0.3 * EMULATION_TIMEOUT)
            assert not sending.done()  # the other instance waits for the holder's word
        assert await sending == 204
        assert "presence_stats" in await stream.reply(2)


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_a_holder_that_does_not_answer_within_emulation_timeout_is_503(pair):
    holder, other = pair
    async with Clients(holder.port) as on_holder, Clients(other.port) as on_other:
        stream = await on_holder.connect("sse")
        with stopped(holder):
            assert await on_other.emulate(stream, PRESENCE) == 503


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_an_unknown_session_on_the_other_instance_is_204(pair):
    holder, other = pair
    async with Clients(holder.port) as on_holder, Clients(other.port) as on_other:
        stream = await on_holder.connect("http_stream")
        assert await on_other.emulate(stream, PRESENCE, session="guessed") == 204
        assert await on_other.emulate(stream, {"id": 3, "presence_stats": {"channel": "a"}}) == 204
        assert (await stream.recv())["id"] == 3  # nothing came for the guess before it


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_both_instances_reach_the_same_stream_in_order(pair):
    holder, other = pair
    async with Clients(holder.port) as on_holder, Clients(other.port) as on_other:
        stream = await on_holder.connect("http_stream")
        for i in range(2, 8):
            via = on_other if i % 2 else on_holder
            assert await via.emulate(stream, {"id": i, "presence_stats": {"channel": "a"}}) == 204
        assert [(await stream.recv())["id"] for _ in range(6)] == [2, 3, 4, 5, 6, 7]
