"""Several server processes sharing one real Redis behave as one server.

Each instance is a real `run.py` process; clients connect to whichever instance
a test names, as a load balancer without sticky sessions would send them. The
cluster view's own promises (`Cluster.request`, `heard_itself`) are tested on
nodes in this process sharing the same Valkey.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from wsfan.compose import build_node
from wsfan.config import load_settings
from wsfan.node import Node
from wsfan.protocol import Encoding

from tests.client import ProtoClient
from tests.conftest import TIMEOUT_SCALE
from tests.processes import Server, alive, clean_env, running

PRESENCE_TTL = 1.0
TEST_TIMEOUT = 30 * TIMEOUT_SCALE


def cluster_env(redis_url: str, mongo_url: str, prefix: str) -> dict[str, str]:
    return clean_env(
        REDIS_URL=redis_url,
        MONGO_URL=mongo_url,
        WSFAN_REDIS__PREFIX=prefix,
        WSFAN_REDIS__PRESENCE_TTL=str(PRESENCE_TTL),
        WSFAN_REDIS__PRESENCE_UPDATE_INTERVAL="0.2",
        # off outside namespaces in config/default.toml; these tests watch them on "news"
        WSFAN_CHANNELS__PRESENCE="true",
        WSFAN_CHANNELS__JOIN_LEAVE="true",
        WSFAN_LOG__LEVEL="warning",
    )


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str, mongo_url: str
) -> Iterator[list[Server]]:
    """Three single-worker instances, shared by this module's tests (each uses its own channel)."""
    env = cluster_env(redis_url, mongo_url, "cluster-module")
    logs = tmp_path_factory.mktemp("cluster")
    with ExitStack() as stack:
        servers = [
            stack.enter_context(running(logs, env, ("--workers", "1"), name=f"n{i}"))
            for i in range(3)
        ]
        for server in servers:
            server.wait_ready()
        yield servers


@asynccontextmanager
async def connected(
    server: Server, encoding: Encoding = Encoding.JSON
) -> AsyncIterator[ProtoClient]:
    url = f"ws://127.0.0.1:{server.port}/connection/websocket"
    client = await ProtoClient.open(url, encoding, timeout=5 * TIMEOUT_SCALE)
    try:
        await client.connect()
        yield client
    finally:
        client.close()


async def eventually(check, timeout: float = 5.0) -> None:
    """Polls the async `check` until it returns true, within `timeout` (scaled)."""
    deadline = asyncio.get_running_loop().time() + timeout * TIMEOUT_SCALE
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_publication_on_one_instance_reaches_subscribers_on_the_others_in_order(cluster):
    a, b, c = cluster
    async with connected(a) as on_a, connected(b) as on_b, connected(c, Encoding.MSGPACK) as on_c:
        for sub in (on_a, on_c):
            await sub.result("subscribe", {"channel": "ordered"})
        for i in range(50):
            await on_b.result("publish", {"channel": "ordered", "data": i})
        for sub in (on_a, on_c):
            pubs = await sub.publications("ordered", 50)
            assert [p["data"] for p in pubs] == list(range(50))
            assert [p["offset"] for p in pubs] == list(range(1, 51))


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_concurrent_publishers_on_every_instance_get_gapless_offsets(cluster):
    async with (
        connected(cluster[0]) as watcher,
        connected(cluster[0]) as p0,
        connected(cluster[1]) as p1,
        connected(cluster[2]) as p2,
    ):
        await watcher.result("subscribe", {"channel": "contended"})

        async def publish_many(client: ProtoClient, name: str) -> None:
            for i in range(30):
                await client.result("publish", {"channel": "contended", "data": f"{name}{i}"})

        await asyncio.gather(publish_many(p0, "a"), publish_many(p1, "b"), publish_many(p2, "c"))
        pubs = await watcher.publications("contended", 90)
        assert [p["offset"] for p in pubs] == list(range(1, 91))
        assert sorted(p["data"] for p in pubs) == sorted(
            f"{n}{i}" for n in "abc" for i in range(30)
        )
        for name in "abc":  # each publisher's own order is kept
            mine = [p["data"] for p in pubs if p["data"].startswith(name)]
            assert mine == [f"{name}{i}" for i in range(30)]


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_client_recovers_on_another_instance_exactly_what_it_missed(cluster):
    a, b, c = cluster
    async with connected(a) as first:
        position = await first.result("subscribe", {"channel": "moving"})
    async with connected(b) as publisher:
        for i in range(5):
            await publisher.result("publish", {"channel": "moving", "data": i})
    async with connected(c) as again:
        params = {"channel": "moving", "recover": True} | {
            "offset": position["offset"],
            "epoch": position["epoch"],
        }
        result = await again.result("subscribe", params)
        assert result["recovered"] is True
        assert [p["data"] for p in result["publications"]] == [0, 1, 2, 3, 4]


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_presence_and_join_leave_span_instances(cluster):
    a, b, c = cluster
    async with connected(a) as on_a, connected(b) as on_b, connected(c) as on_c:
        await on_a.result("subscribe", {"channel": "room"})
        await on_b.result("subscribe", {"channel": "room"})
        join = await on_a.push("join", "room")
        while join["join"]["info"]["client"] != on_b.client_id:
            join = await on_a.push("join", "room")
        presence = (await on_c.result("presence", {"channel": "room"}))["presence"]
        assert set(presence) == {on_a.client_id, on_b.client_id}
        stats = await on_c.result("presence_stats", {"channel": "room"})
        assert stats == {"num_clients": 2, "num_users": 1}
        on_b.close()
        leave = await on_a.push("leave", "room")
        assert leave["leave"]["info"]["client"] == on_b.client_id


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_killed_instance_clients_leave_presence_within_its_ttl(
    tmp_path: Path, redis_url: str, mongo_url: str, redis_prefix: str
):
    env = cluster_env(redis_url, mongo_url, redis_prefix)
    with (
        running(tmp_path, env, ("--workers", "1"), "a") as a,
        running(tmp_path, env, ("--workers", "1"), "b") as b,
    ):
        a.wait_ready()
        b.wait_ready()
        async with connected(a) as on_a, connected(b) as on_b:
            await on_a.result("subscribe", {"channel": "room"})
            await on_b.result("subscribe", {"channel": "room"})
            await asyncio.sleep(3 * 0.2)  # a few presence refreshes on both
            members = await on_a.result("presence", {"channel": "room"})
            assert set(members["presence"]) == {on_a.client_id, on_b.client_id}
            b.kill()

            async def only_a_left() -> bool:
                members = await on_a.result("presence", {"channel": "room"})
                return set(members["presence"]) == {on_a.client_id}

            await eventually(only_a_left, timeout=PRESENCE_TTL + 2)


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_workers_sharing_a_port_form_one_server(
    tmp_path: Path, redis_url: str, mongo_url: str, redis_prefix: str
):
    env = cluster_env(redis_url, mongo_url, redis_prefix)
    with running(tmp_path, env, ("--workers", "2")) as server:
        server.wait_ready()
        children = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children")
        assert len(children.read_text().split()) == 2
        clients = [
            await ProtoClient.open(
                f"ws://127.0.0.1:{server.port}/connection/websocket", Encoding.JSON
            )
            for _ in range(8)
        ]
        try:
            for client in clients:
                await client.connect()
                await client.result("subscribe", {"channel": "shared"})
            await clients[0].result("publish", {"channel": "shared", "data": "to all"})
            for client in clients:
                assert (await client.push("pub", "shared"))["pub"]["data"] == "to all"
            stats = await clients[-1].result("presence_stats", {"channel": "shared"})
            assert stats["num_clients"] == 8
        finally:
            for client in clients:
                client.close()
        assert server.terminate() == 0


def test_workers_stop_when_their_supervisor_is_killed(
    tmp_path: Path, redis_url: str, mongo_url: str, redis_prefix: str
):
    env = cluster_env(redis_url, mongo_url, redis_prefix)
    with running(tmp_path, env, ("--workers", "2")) as server:
        server.wait_ready()
        children = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children")
        workers = [int(pid) for pid in children.read_text().split()]
        assert len(workers) == 2
        server.kill()  # SIGKILL: the supervisor cannot forward anything
        deadline = time.monotonic() + 10 * TIMEOUT_SCALE
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        leftover = [pid for pid in workers if alive(pid)]
        for pid in leftover:  # only on failure: end what we started
            os.kill(pid, signal.SIGKILL)
        assert leftover == []


# The cluster view on in-process nodes ----------------------------------------------


@asynccontextmanager
async def nodes(redis_url: str, prefix: str, count: int) -> AsyncIterator[list[Node]]:
    """`count` started nodes sharing one Valkey under `prefix`, each of which has
    heard its own announcement (so every other one heard it too)."""
    settings = load_settings(env={}).with_overrides(
        broker={"type": "redis"}, redis={"url": redis_url, "prefix": prefix}
    )
    started: list[Node] = []
    try:
        for _ in range(count):
            node = build_node(settings)
            await node.start()
            started.append(node)
        await eventually(_all_heard(started))
        yield started
    finally:
        for node in started:
            await node.close()


def _all_heard(started: list[Node]):
    async def check() -> bool:
        return all(n.cluster.heard_itself for n in started)

    return check


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_a_node_hears_itself_once_its_announcement_came_back(redis_url, redis_prefix):
    settings = load_settings(env={}).with_overrides(
        broker={"type": "redis"}, redis={"url": redis_url, "prefix": redis_prefix}
    )
    node = build_node(settings)
    assert node.cluster.heard_itself is False
    with pytest.raises(LookupError):
        await node.cluster.check_heard()  # /readyz says not ready yet
    await node.start()
    try:
        await eventually(_all_heard([node]))
        await node.cluster.check_heard()
    finally:
        await node.close()


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_a_request_is_answered_by_the_node_it_names_alone(redis_url, redis_prefix):
    async with nodes(redis_url, redis_prefix, 3) as (a, b, c):
        asked: list[str] = []

        def whoami(uid: str):
            def answer(params: dict[str, Any]) -> list[Any]:
                asked.append(uid)
                return [uid, params]

            return answer

        for node in (b, c):
            node.cluster.answer("whoami", whoami(node.cluster.uid))
        answer = await a.cluster.request(b.cluster.uid, "whoami", {"n": 1}, 2 * TIMEOUT_SCALE)
        assert answer == [b.cluster.uid, {"n": 1}]
        assert asked == [b.cluster.uid]
        assert a.cluster.knows(b.cluster.uid) and a.cluster.knows(c.cluster.uid)


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_a_node_answers_its_own_request(redis_url, redis_prefix):
    async with nodes(redis_url, redis_prefix, 1) as (a,):
        a.cluster.answer("ping", lambda params: "pong")
        assert await a.cluster.request(a.cluster.uid, "ping", {}, 2 * TIMEOUT_SCALE) == "pong"


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_an_op_the_node_does_not_answer_gets_none(redis_url, redis_prefix):
    async with nodes(redis_url, redis_prefix, 2) as (a, b):
        assert await a.cluster.request(b.cluster.uid, "nobody", {}, 2 * TIMEOUT_SCALE) is None


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_a_request_to_a_node_nobody_is_times_out(redis_url, redis_prefix):
    async with nodes(redis_url, redis_prefix, 1) as (a,):
        assert not a.cluster.knows("no-such-node")
        with pytest.raises(TimeoutError):
            await a.cluster.request("no-such-node", "ping", {}, 0.2)
