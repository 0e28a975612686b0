"""One Redis connection in subscribe mode, kept alive by this node.

Promises:
- `subscribe(channels)` returns once Redis has confirmed every channel (so a
  history read that follows cannot miss a publication), or raises
  `RedisUnavailable` within `timeout`. Subscribes made in the same event-loop
  turn (a burst of clients) share one SUBSCRIBE command.
- Messages reach `on_message(channel, data)` in the order Redis sent them.
- After the connection is lost it reconnects with exponential backoff and
  jitter, subscribes every wanted channel again, then calls `on_reconnect()`
  so the node can find out what its clients missed meanwhile.
- `close()` returns within `timeout` even if a cancellation is lost inside
  the driver's connect (seen with redis-py on Python 3.11): it also drops the
  socket and the loop checks a closing flag.
- `on_lost()` is called when an established connection is lost (Redis went
  away or restarted: the caller's pooled connections are likely stale too).
- `permanent` channels are subscribed on every connection for the whole life
  of this object; `unsubscribe` leaves them alone.
- While Redis stays away, its failed attempts are logged at most once per
  `repeat_interval` seconds, with a count, and the reconnect once.

redis-py's own PubSub object resubscribes silently on reconnect; we need to
know when that happens, so this drives a redis-py `Connection` directly.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisError

from server.logs import Repeated

__all__ = ["PubSubConnection", "RedisUnavailable"]

log = logging.getLogger(__name__)

_BATCH = 512  # channels per SUBSCRIBE / UNSUBSCRIBE command


class RedisUnavailable(ConnectionError):
    """Redis could not be reached in time."""


class PubSubConnection:
    def __init__(
        self,
        client: Redis,
        on_message: Callable[[bytes, bytes], None],
        on_reconnect: Callable[[], None],
        timeout: float = 5.0,
        reconnect_min: float = 0.05,
        reconnect_max: float = 5.0,
        keepalive: float = 5.0,
        permanent: Iterable[bytes] = (),
        on_lost: Callable[[], None] | None = None,
        repeat_interval: float = 10.0,
    ) -> None:
        self._client = client
        self._failures = Repeated(log, repeat_interval)
        self._on_message = on_message
        self._on_reconnect = on_reconnect
        self._on_lost = on_lost
        self._timeout = timeout
        self._reconnect_min = reconnect_min
        self._reconnect_max = reconnect_max
        self._keepalive = keepalive
        self._permanent = frozenset(permanent)
        self._wanted: set[bytes] = set(self._permanent)
        self._confirmed: set[bytes] = set()  # subscribed on the current connection
        self._waiters: dict[bytes, list[asyncio.Future[None]]] = {}
        self._conn: AbstractConnection | None = None
        self._sent: set[bytes] = set()  # channels this connection was told to subscribe
        self._batch: list[bytes] = []
        self._batch_sent: asyncio.Future[None] | None = None
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.reconnects = 0

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        self._closing = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        await self._drop_connection()  # wakes a reader that missed the cancellation
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), self._timeout)
            except TimeoutError:
                log.warning("redis pub/sub reader did not stop within %g s", self._timeout)
        await self._drop_connection()
        self._fail_waiters(RedisUnavailable("closed"))

    # Subscriptions -----------------------------------------------------------

    async def subscribe(self, channels: Iterable[bytes]) -> None:
        new = [c for c in channels if c not in self._wanted]
        if not new:
            return
        self._wanted.update(new)
        loop = asyncio.get_running_loop()
        futures = []
        for channel in new:
            future = loop.create_future()
            self._waiters.setdefault(channel, []).append(future)
            futures.append(future)
        try:
            async with asyncio.timeout(self._timeout):
                await self._connected.wait()
                await asyncio.shield(self._send_batched(new))
                await asyncio.gather(*futures)
        except (TimeoutError, RedisError, OSError) as exc:
            self._wanted.difference_update(new)
            for channel in new:
                self._waiters.pop(channel, None)
            for future in futures:
                future.cancel()
            raise RedisUnavailable(f"subscribe failed: {exc!r}") from None

    async def wait_subscribed(self, channels: Iterable[bytes]) -> None:
        """Return once Redis has confirmed these (wanted) channels on the current
        connection; RedisUnavailable after `timeout`. They stay wanted either way."""
        missing = [c for c in channels if c in self._wanted and c not in self._confirmed]
        if not missing:
            return
        loop = asyncio.get_running_loop()
        futures = []
        for channel in missing:
            future = loop.create_future()
            self._waiters.setdefault(channel, []).append(future)
            futures.append(future)
        try:
            async with asyncio.timeout(self._timeout):
                await asyncio.gather(*futures)
        except TimeoutError:
            for channel, future in zip(missing, futures, strict=True):
                waiting = self._waiters.get(channel, [])
                if future in waiting:
                    waiting.remove(future)
                future.cancel()
            raise RedisUnavailable("subscription not confirmed in time") from None

    async def unsubscribe(self, channels: Iterable[bytes]) -> None:
        gone = [c for c in channels if c in self._wanted and c not in self._permanent]
        self._wanted.difference_update(gone)
        self._sent.difference_update(gone)
        self._confirmed.difference_update(gone)
        if gone and self.connected:
            try:
                await self._send("UNSUBSCRIBE", gone)
            except (RedisError, OSError) as exc:
                # The reconnect will not resubscribe it; nothing else to undo.
                log.debug("unsubscribe not sent: %r", exc)

    def _send_batched(self, channels: list[bytes]) -> asyncio.Future[None]:
        """Queue channels for the SUBSCRIBE sent at the end of this loop turn."""
        self._batch.extend(c for c in channels if c not in self._sent)
        if self._batch_sent is None:
            loop = asyncio.get_running_loop()
            self._batch_sent = loop.create_future()
            loop.call_soon(lambda: loop.create_task(self._flush_batch()))
        return self._batch_sent

    async def _flush_batch(self) -> None:
        channels, self._batch = self._batch, []
        done, self._batch_sent = self._batch_sent, None
        assert done is not None
        try:
            if channels:
                await self._send("SUBSCRIBE", channels)
            done.set_result(None)
        except BaseException as exc:
            done.set_exception(exc)
            done.exception()  # observed by the waiters; silence if none is left

    async def _send(self, command: str, channels: list[bytes]) -> None:
        conn = self._conn
        if conn is None:
            raise RedisUnavailable("not connected")
        if command == "SUBSCRIBE":
            self._sent.update(channels)
        for i in range(0, len(channels), _BATCH):
            await conn.send_command(command, *channels[i : i + _BATCH], check_health=False)

    # The connection's life ---------------------------------------------------

    async def _run(self) -> None:
        delay = self._reconnect_min
        first = True
        while not self._closing:
            try:
                await self._connect()
                if self._closing:
                    break
                if not first:
                    self.reconnects += 1
                    reconnected = "redis pub/sub reconnected; %d channels resubscribed"
                    if self._failures.failing:
                        self._failures.recovered(reconnected, len(self._wanted))
                    else:
                        log.info(reconnected, len(self._wanted))
                    self._on_reconnect()
                first = False
                delay = self._reconnect_min
                await self._read()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, TimeoutError) as exc:
                self._failures("redis pub/sub connection lost: %r", exc)
            except Exception:
                log.exception("redis pub/sub reader failed")
            lost = self.connected
            await self._drop_connection()
            if self._closing:
                break
            if lost and self._on_lost is not None:
                self._on_lost()
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, self._reconnect_max)

    async def _connect(self) -> None:
        # RESP2: subscribe-mode messages come back from read_response as plain
        # arrays (under RESP3 they are push frames routed to a handler instead).
        pool = self._client.connection_pool
        conn = pool.connection_class(**{**pool.connection_kwargs, "protocol": 2})
        self._conn = conn
        async with asyncio.timeout(self._timeout):
            await conn.connect()
            channels = list(self._wanted)
            if channels:
                await self._send("SUBSCRIBE", channels)
        self._connected.set()

    async def _read(self) -> None:
        conn = self._conn
        assert conn is not None
        pinged = False
        while not self._closing:
            # With an explicit timeout redis-py answers None when nothing arrived.
            response: Any = await conn.read_response(timeout=self._keepalive)
            if response is None:
                if pinged:
                    raise TimeoutError("pub/sub keepalive PING went unanswered")
                await conn.send_command("PING", check_health=False)
                pinged = True
                continue
            pinged = False
            kind = response[0]
            if kind == b"message":
                self._on_message(response[1], response[2])
            elif kind == b"subscribe":
                self._confirmed.add(response[1])
                for future in self._waiters.pop(response[1], ()):
                    if not future.done():
                        future.set_result(None)

    async def _drop_connection(self) -> None:
        self._connected.clear()
        self._sent.clear()
        self._confirmed.clear()
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.disconnect()

    def _fail_waiters(self, exc: BaseException) -> None:
        waiters, self._waiters = self._waiters, {}
        for futures in waiters.values():
            for future in futures:
                if not future.done():
                    future.set_exception(exc)
                    future.exception()
