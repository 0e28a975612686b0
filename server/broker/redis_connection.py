"""Connections to one Redis: a client that fails fast and bounds its pool, and the
watch every new connection of a broker goes through, which notices a restarted
server (its `run_id` changed) before anything is published on it."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

__all__ = ["RedisRestarted", "RestartWatch", "redis_client", "watch_restarts"]

log = logging.getLogger(__name__)


def redis_client(
    url: str, connect_timeout: float = 2.0, command_timeout: float = 5.0, max_connections: int = 32
) -> Redis:
    """A client that fails fast when Redis is down (one quick retry, bounded waits) and
    holds at most `max_connections`: in a burst, commands wait for a free connection
    (up to `command_timeout`) instead of failing."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=command_timeout,
        socket_connect_timeout=connect_timeout,
        socket_timeout=command_timeout,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 1),
    )
    return Redis.from_pool(pool)


class RedisRestarted(RedisError):
    """The Redis server answering is not the one answering before (a restart): the
    command that opened the connection fails, unretried, so that nothing publishes
    on top of a stream that may have lost its tail before the node has checked."""


class RestartWatch:
    """A connection hook (redis-py's `redis_connect_func`) that reads each new
    connection's server `run_id`. The first one seen is trusted. A different one
    (Redis restarted, and may have lost the tail of its data) calls `on_restart`
    once, and every new connection to it fails with RedisRestarted until `confirm`
    (the node checked what Redis kept) or until `limit` seconds have passed."""

    def __init__(self, limit: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.confirmed: str | None = None
        self.pending: str | None = None
        self.on_restart: Callable[[], None] | None = None
        self._limit = limit
        self._clock = clock
        self._since = 0.0

    async def check(self, connection: Any) -> None:
        """The hook itself (a coroutine function, as redis-py requires to await it)."""
        await connection.on_connect()
        await connection.send_command("INFO", "server")
        info = await connection.read_response()
        text = info.decode() if isinstance(info, bytes) else str(info)
        found = re.search(r"^run_id:(\w+)", text, re.MULTILINE)
        self.admit(found.group(1) if found else "")

    def admit(self, run_id: str) -> None:
        """Let a connection to server `run_id` be used, or raise RedisRestarted."""
        if self.confirmed is None or not run_id:
            self.confirmed = self.confirmed or run_id or None
            return
        if run_id == self.confirmed:
            return
        if self.pending != run_id:
            self.pending, self._since = run_id, self._clock()
            log.warning("Redis restarted (new run_id): checking what it kept")
            if self.on_restart is not None:
                self.on_restart()
        elif self._clock() - self._since > self._limit:
            log.warning("Redis restarted: not checked within %gs, used anyway", self._limit)
            self.confirm()
            return
        raise RedisRestarted("Redis restarted; retry shortly")

    def confirm(self) -> None:
        """What the restarted Redis kept was checked: its connections may be used."""
        if self.pending is not None:
            self.confirmed, self.pending = self.pending, None


def watch_restarts(
    client: Redis, timeout: float, on_restart: Callable[[], None]
) -> tuple[Redis, RestartWatch]:
    """Make every new connection of `client` (commands and pub/sub alike) go through
    a RestartWatch calling `on_restart`. Returns it, and a client of its own (a
    pool of two that the watch never holds back) for the checks that confirm it."""
    pool = client.connection_pool
    admin = Redis.from_pool(
        BlockingConnectionPool(
            connection_class=pool.connection_class,
            max_connections=2,
            timeout=timeout,
            **pool.connection_kwargs,
        )
    )
    watch = RestartWatch(timeout)
    watch.on_restart = on_restart
    pool.connection_kwargs["redis_connect_func"] = watch.check
    return admin, watch
