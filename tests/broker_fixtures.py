"""Fixtures for the broker contract tests: each implementation (memory, Redis on the
session's real Valkey, client-side shards over its two, a Redis Cluster; a key prefix
per test), a clock, and a recording event handler. Loaded as a pytest plugin by
tests/conftest.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest
from redis.asyncio import Redis
from tornado.ioloop import IOLoop
from wsfan.broker.base import Broker, PresenceManager
from wsfan.broker.memory import MemoryBroker, MemoryPresence
from wsfan.broker.redis import RedisBroker, RedisPresence
from wsfan.broker.redis_cluster import RedisClusterBroker, cluster_client
from wsfan.broker.redis_connection import redis_client
from wsfan.broker.sharded import ShardedBroker, ShardedPresence
from wsfan.protocol import ClientInfo, Publication

from tests.conftest import TIMEOUT_SCALE


class Clock:
    """A controllable monotonic clock, injected where an implementation reads time."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def advance(self, seconds: float) -> None:
        self.now += seconds


class WallClock(Clock):
    """For servers that keep their own time: advancing means waiting."""

    async def advance(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class RecordingHandler:
    """The node's role towards a broker: records every event it is handed, in order."""

    def __init__(self) -> None:
        self.publications: list[tuple[str, Publication]] = []
        self.joins: list[tuple[str, ClientInfo]] = []
        self.leaves: list[tuple[str, ClientInfo]] = []
        self.controls: list[bytes] = []
        self.reconnects = 0

    def handle_publication(self, channel: str, pub: Publication) -> None:
        self.publications.append((channel, pub))

    def handle_join(self, channel: str, info: ClientInfo) -> None:
        self.joins.append((channel, info))

    def handle_leave(self, channel: str, info: ClientInfo) -> None:
        self.leaves.append((channel, info))

    def handle_broker_reconnect(self) -> None:
        self.reconnects += 1

    def handle_control(self, data: bytes) -> None:
        self.controls.append(data)

    def data(self, channel: str) -> list[Any]:
        return [p.data for c, p in self.publications if c == channel]

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 2.0) -> None:
        deadline = time.monotonic() + timeout * TIMEOUT_SCALE
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError("broker event did not arrive in time")
            await asyncio.sleep(0.001)


IMPLEMENTATIONS = ["memory", "redis", "sharded", "cluster"]
"""Every broker: in memory, one Valkey, client-side shards over two, and a Redis
Cluster (tests/valkey_cluster.py: three primaries, three replicas)."""


@pytest.fixture(params=IMPLEMENTATIONS)
def implementation(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def clock(implementation: str) -> Clock:
    return Clock() if implementation == "memory" else WallClock()


def _redis(request: pytest.FixtureRequest, url_fixture: str = "redis_url") -> Redis:
    return redis_client(request.getfixturevalue(url_fixture))


SHARD_URLS = ("redis_url", "second_redis_url")
"""The session's two Valkeys: the shards of the "sharded" implementation."""


def sharded_broker(request: pytest.FixtureRequest) -> ShardedBroker:
    prefix = request.getfixturevalue("redis_prefix")
    shards = [RedisBroker(_redis(request, url), prefix) for url in SHARD_URLS]
    return ShardedBroker(shards, list(SHARD_URLS))


@pytest.fixture
def handler() -> RecordingHandler:
    return RecordingHandler()


@pytest.fixture
def broker(
    request: pytest.FixtureRequest,
    implementation: str,
    clock: Clock,
    handler: RecordingHandler,
    io_loop: IOLoop,
) -> Iterator[Broker]:
    """A started broker of each implementation, delivering to `handler`."""
    instance: Broker
    if implementation == "memory":
        instance = MemoryBroker(clock=clock)
    elif implementation == "sharded":
        instance = sharded_broker(request)
    elif implementation == "cluster":
        client = cluster_client(request.getfixturevalue("cluster_url"))
        instance = RedisClusterBroker(client, request.getfixturevalue("redis_prefix"))
    else:
        instance = RedisBroker(_redis(request), request.getfixturevalue("redis_prefix"))
    io_loop.run_sync(lambda: instance.start(handler))
    yield instance
    io_loop.run_sync(instance.close)


@pytest.fixture
def presence(
    request: pytest.FixtureRequest, implementation: str, io_loop: IOLoop
) -> Iterator[PresenceManager]:
    if implementation == "memory":
        yield MemoryPresence()
        return
    prefix = request.getfixturevalue("redis_prefix")
    if implementation == "cluster":
        client = cast(Redis, cluster_client(request.getfixturevalue("cluster_url")))
        yield RedisPresence(client, prefix)
        io_loop.run_sync(client.aclose)
        return
    urls = SHARD_URLS if implementation == "sharded" else SHARD_URLS[:1]
    clients = [_redis(request, url) for url in urls]
    shards = [RedisPresence(client, prefix) for client in clients]
    yield ShardedPresence(shards) if implementation == "sharded" else shards[0]
    for client in clients:
        io_loop.run_sync(client.aclose)
