"""`client.max_connections_per_user_scope = "cluster"`: the per-user cap held
across instances by connection leases in Redis that expire (a killed instance's
connections stop counting after `redis.presence_ttl`)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from redis.asyncio import Redis
from tornado.ioloop import IOLoop
from wsfan.auth.cli import mint
from wsfan.broker.redis_connection import redis_client
from wsfan.broker.redis_keys import escape
from wsfan.broker.redis_user_leases import RedisUserLeases, user_key
from wsfan.compose import build_node
from wsfan.config import Settings, load_settings
from wsfan.node import Node
from wsfan.protocol import Encoding

from tests.client import ProtoClient
from tests.conftest import ACROSS_REDIS, TIMEOUT_SCALE, broker_settings
from tests.processes import Server, clean_env, running

TTL = 1.0
CLUSTER_CAP = {"max_connections_per_user": 2, "max_connections_per_user_scope": "cluster"}
FAST_LEASES = {"presence_ttl": TTL, "presence_update_interval": 0.2}


async def until(condition, timeout: float = 5.0) -> None:
    """Polls the async `condition` until true, within `timeout` (scaled)."""
    deadline = asyncio.get_running_loop().time() + timeout * TIMEOUT_SCALE
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


# The store ---------------------------------------------------------------------


@pytest.fixture
def redis(redis_url: str, io_loop: IOLoop) -> Iterator[Redis]:
    client = redis_client(redis_url)
    yield client
    io_loop.run_sync(client.aclose)


@pytest.fixture
def leases(redis: Redis, redis_prefix: str) -> RedisUserLeases:
    return RedisUserLeases(redis, redis_prefix)


@pytest.mark.gen_test
async def test_places_up_to_the_cap_are_leased_and_one_more_is_refused(leases):
    assert await leases.acquire("alice", "c1", 2, 30.0)
    assert await leases.acquire("alice", "c2", 2, 30.0)
    assert not await leases.acquire("alice", "c3", 2, 30.0)
    assert await leases.count("alice") == 2


@pytest.mark.gen_test
async def test_users_are_capped_separately(leases):
    assert await leases.acquire("alice", "c1", 1, 30.0)
    assert await leases.acquire("bob", "c2", 1, 30.0)


@pytest.mark.gen_test
async def test_a_connection_holding_a_lease_is_admitted_again(leases):
    assert await leases.acquire("alice", "c1", 1, 30.0)
    assert await leases.acquire("alice", "c1", 1, 30.0)
    assert await leases.count("alice") == 1


@pytest.mark.gen_test
async def test_a_released_place_is_free_again(leases):
    await leases.acquire("alice", "c1", 1, 30.0)
    await leases.release("alice", "c1")
    assert await leases.acquire("alice", "c2", 1, 30.0)


@pytest.mark.gen_test
async def test_an_expired_lease_frees_its_place(leases):
    await leases.acquire("alice", "c1", 1, 0.2)

    async def free() -> bool:
        return bool(await leases.acquire("alice", "c2", 1, 30.0))

    await until(free, timeout=3.0)


@pytest.mark.gen_test(timeout=10 * TIMEOUT_SCALE)
async def test_renewed_leases_outlive_their_first_ttl(leases):
    await leases.acquire("alice", "c1", 1, 0.3)
    for _ in range(4):  # 4 x 0.15 s: twice the first TTL
        await leases.renew([("alice", "c1")], 0.3)
        await asyncio.sleep(0.15)
    assert not await leases.acquire("alice", "c2", 1, 30.0)


@pytest.mark.gen_test
async def test_a_user_name_with_braces_keeps_its_leases_under_its_own_tag(leases, redis_prefix):
    assert user_key(redis_prefix, "a}{b") == f"{redis_prefix}.user.{{{escape('a}{b')}}}"
    assert await leases.acquire("a}{b", "c1", 1, 30.0)
    assert not await leases.acquire("a}{b", "c2", 1, 30.0)
    assert await leases.acquire("a", "c3", 1, 30.0)


# Nodes ---------------------------------------------------------------------------


ACROSS_NODES = pytest.mark.brokers(*ACROSS_REDIS)


@pytest.fixture
def cap_settings(request: pytest.FixtureRequest, broker_type: str) -> Settings:
    """Two-node settings on one Redis, or on two shards (a user's leases on one)."""
    return broker_settings(request, broker_type).with_overrides(
        redis=FAST_LEASES, client=CLUSTER_CAP, stats={"interval": 0}
    )


@asynccontextmanager
async def nodes(settings: Settings, count: int) -> AsyncIterator[list[Node]]:
    started: list[Node] = []
    try:
        for _ in range(count):
            node = build_node(settings)
            await node.start()
            started.append(node)
        yield started
    finally:
        for node in started:
            await node.close()


@ACROSS_NODES
@pytest.mark.gen_test(timeout=15 * TIMEOUT_SCALE)
async def test_the_cap_holds_across_two_nodes(cap_settings):
    async with nodes(cap_settings, 2) as (a, b):
        assert await a.users.admit("alice", "c1")
        assert await b.users.admit("alice", "c2")
        assert not await a.users.admit("alice", "c3")
        assert not await b.users.admit("alice", "c4")
        assert await b.users.admit("bob", "c5")


@ACROSS_NODES
@pytest.mark.gen_test(timeout=15 * TIMEOUT_SCALE)
async def test_a_place_released_on_one_node_is_free_on_the_other(cap_settings):
    async with nodes(cap_settings, 2) as (a, b):
        await a.users.admit("alice", "c1")
        await a.users.admit("alice", "c2")
        a.users.release("c1")

        async def admitted() -> bool:
            return await b.users.admit("alice", "c3")

        await until(admitted)


@ACROSS_NODES
@pytest.mark.gen_test(timeout=15 * TIMEOUT_SCALE)
async def test_a_node_keeps_renewing_its_leases_past_their_ttl(cap_settings):
    async with nodes(cap_settings, 2) as (a, b):
        await a.users.admit("alice", "c1")
        await a.users.admit("alice", "c2")
        await asyncio.sleep(2.5 * TTL)  # renewed every 0.2 s meanwhile
        assert not await b.users.admit("alice", "c3")


@ACROSS_NODES
@pytest.mark.gen_test(timeout=15 * TIMEOUT_SCALE)
async def test_a_lease_released_during_its_renewal_does_not_come_back(cap_settings):
    settings = cap_settings.with_overrides(redis={"presence_update_interval": 60.0})
    async with nodes(settings, 1) as (node,):
        await node.users.admit("alice", "c1")
        renewal = asyncio.ensure_future(node.refresh_presence())
        await asyncio.sleep(0)  # the renewal has taken its leases and is on its way
        node.users.release("c1")
        await renewal
        leases = node.presence.user_leases()
        assert leases is not None

        async def released() -> bool:
            return await leases.count("alice") == 0

        await until(released)


@pytest.mark.gen_test
async def test_the_memory_broker_keeps_no_shared_leases_so_its_process_counts():
    settings = load_settings(env={}).with_overrides(broker={"type": "memory"}, client=CLUSTER_CAP)
    async with nodes(settings, 1) as (node,):
        assert await node.users.admit("alice", "c1")  # nobody connected yet
        assert node.presence.user_leases() is None


# Connections ---------------------------------------------------------------------


def token(node: Node, user: str) -> str:
    return mint(node.settings.auth.hmac_secret, user)


@pytest.mark.brokers("redis")
@pytest.mark.settings(client=CLUSTER_CAP, redis=FAST_LEASES)
@pytest.mark.gen_test(timeout=15 * TIMEOUT_SCALE)
async def test_a_connect_past_the_cluster_cap_closes_3504_and_a_close_frees_a_place(
    open_client, node: Node
):
    first = await open_client(Encoding.JSON)
    await first.connect(token=token(node, "alice"))
    await (await open_client(Encoding.JSON)).connect(token=token(node, "alice"))
    extra = await open_client(Encoding.JSON)
    await extra.send({"id": 1, "connect": {"token": token(node, "alice")}})
    assert await extra.closed() == (3504, "connection limit")
    first.close()

    async def connects() -> bool:
        again = await open_client(Encoding.JSON)
        answer = await again.call("connect", {"token": token(node, "alice")})
        return "connect" in answer

    await until(connects)


# Killed instances (real processes) ---------------------------------------------------


def process_env(redis_url: str, mongo_url: str, prefix: str) -> dict[str, str]:
    return clean_env(
        REDIS_URL=redis_url,
        MONGO_URL=mongo_url,
        WSFAN_REDIS__PREFIX=prefix,
        WSFAN_REDIS__PRESENCE_TTL=str(TTL),
        WSFAN_REDIS__PRESENCE_UPDATE_INTERVAL="0.2",
        WSFAN_CLIENT__MAX_CONNECTIONS_PER_USER="1",
        WSFAN_CLIENT__MAX_CONNECTIONS_PER_USER_SCOPE="cluster",
        WSFAN_LOG__LEVEL="warning",
    )


async def connect_to(server: Server, user: str) -> ProtoClient:
    url = f"ws://127.0.0.1:{server.port}/connection/websocket"
    client = await ProtoClient.open(url, Encoding.JSON, timeout=5 * TIMEOUT_SCALE)
    secret = load_settings(env={}).auth.hmac_secret  # the shipped development secret
    await client.send({"id": 1, "connect": {"token": mint(secret, user)}})
    return client


@pytest.mark.gen_test(timeout=40 * TIMEOUT_SCALE)
async def test_a_killed_instances_connections_stop_counting_after_the_ttl(
    tmp_path: Path, redis_url: str, mongo_url: str
):
    env = process_env(redis_url, mongo_url, f"t-{uuid.uuid4().hex[:12]}:")
    with (
        running(tmp_path, env, ("--workers", "1"), "a") as a,
        running(tmp_path, env, ("--workers", "1"), "b") as b,
    ):
        a.wait_ready()
        b.wait_ready()
        held = await connect_to(a, "alice")
        refused: ProtoClient | None = None
        try:
            assert "connect" in await held.reply(1)
            refused = await connect_to(b, "alice")
            assert await refused.closed() == (3504, "connection limit")
            a.kill()  # SIGKILL: nothing released

            async def admitted() -> bool:
                client = await connect_to(b, "alice")
                message = await client.recv()
                client.close()
                return message is not None and "connect" in message

            await until(admitted, timeout=TTL + 5.0)
        finally:
            held.close()
            if refused is not None:
                refused.close()
