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
- `sharded`: the connection uses sharded pub/sub (SSUBSCRIBE / SUNSUBSCRIBE,
  `smessage`) on one Redis Cluster node; `connect` makes its connections. A
  sharded subscribe names channels of one slot, so a batch is sent as one
  command per slot, written together. When the node gives channels up (a
  `sunsubscribe` it pushes because their slot moved, or a MOVED / CLUSTERDOWN
  answer to the SSUBSCRIBE) they stop being wanted here, their subscribes fail
  with `ChannelMoved`, and `on_moved(channels)` is called so the caller can
  subscribe them where they live now.

redis-py's own PubSub object resubscribes silently on reconnect; we need to
know when that happens, so this drives a redis-py `Connection` directly.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.crc import key_slot
from redis.exceptions import MovedError, RedisError, ResponseError

from ..logs import Repeated

__all__ = ["ChannelMoved", "PubSubConnection", "RedisUnavailable"]

log = logging.getLogger(__name__)

_BATCH = 512  # channels per SUBSCRIBE / UNSUBSCRIBE command


class RedisUnavailable(ConnectionError):
    """Redis could not be reached in time."""


class ChannelMoved(RedisUnavailable):
    """The cluster node gave the channel up: its slot is served elsewhere now."""


_COMMANDS = {False: ("SUBSCRIBE", "UNSUBSCRIBE"), True: ("SSUBSCRIBE", "SUNSUBSCRIBE")}


class PubSubConnection:
    def __init__(
        self,
        client: Redis | None,
        on_message: Callable[[bytes, bytes], None],
        on_reconnect: Callable[[], None],
        timeout: float = 5.0,
        reconnect_min: float = 0.05,
        reconnect_max: float = 5.0,
        keepalive: float = 5.0,
        permanent: Iterable[bytes] = (),
        on_lost: Callable[[], None] | None = None,
        repeat_interval: float = 10.0,
        *,
        sharded: bool = False,
        connect: Callable[[], AbstractConnection] | None = None,
        on_moved: Callable[[list[bytes]], None] | None = None,
    ) -> None:
        if connect is None:
            assert client is not None, "a client or a connect function"
            pool = client.connection_pool
            # RESP2: subscribe-mode messages come back from read_response as plain
            # arrays (under RESP3 they are push frames routed to a handler instead).
            connect = lambda: pool.connection_class(  # noqa: E731
                **{**pool.connection_kwargs, "protocol": 2}
            )
        self._new_connection = connect
        self._sharded = sharded
        self._subscribe_command, self._unsubscribe_command = _COMMANDS[sharded]
        self._message_kind = b"smessage" if sharded else b"message"
        self._subscribed_kind = b"ssubscribe" if sharded else b"subscribe"
        self._on_moved = on_moved
        # Sharded only: the S* commands sent and not yet fully answered, in order
        # (command, channels, answers still due), so that an error answer (one per
        # command) names the channels it refused.
        self._pending: deque[list[Any]] = deque()
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
        self.writes = 0  # sharded: batches of S* commands written (one command per slot)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wants(self, channel: bytes) -> bool:
        """Whether the channel is to be subscribed here (confirmed or not)."""
        return channel in self._wanted

    def confirmed(self, channel: bytes) -> bool:
        """Whether Redis confirmed the channel on the current connection."""
        return channel in self._confirmed

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
            if isinstance(exc, ChannelMoved):
                raise ChannelMoved(f"subscribe failed: {exc}") from None
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
                await self._send(self._unsubscribe_command, gone)
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
                await self._send(self._subscribe_command, channels)
            done.set_result(None)
        except BaseException as exc:
            done.set_exception(exc)
            done.exception()  # observed by the waiters; silence if none is left

    async def _send(self, command: str, channels: list[bytes]) -> None:
        conn = self._conn
        if conn is None:
            raise RedisUnavailable("not connected")
        if command == self._subscribe_command:
            self._sent.update(channels)
        if not self._sharded:
            for i in range(0, len(channels), _BATCH):
                await conn.send_command(command, *channels[i : i + _BATCH], check_health=False)
            return
        by_slot: dict[int, list[bytes]] = {}
        for channel in channels:
            by_slot.setdefault(key_slot(channel), []).append(channel)
        commands: list[list[str | bytes]] = []
        for group in by_slot.values():
            for i in range(0, len(group), _BATCH):
                chunk = group[i : i + _BATCH]
                commands.append([command, *chunk])
                self._pending.append([command.lower().encode(), set(chunk), len(chunk)])
        self.writes += 1
        await conn.send_packed_command(conn.pack_commands(commands), check_health=False)

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
        conn = self._new_connection()
        self._conn = conn
        async with asyncio.timeout(self._timeout):
            await conn.connect()
            channels = list(self._wanted)
            if channels:
                await self._send(self._subscribe_command, channels)
        self._connected.set()

    async def _read(self) -> None:
        conn = self._conn
        assert conn is not None
        pinged = False
        while not self._closing:
            # With an explicit timeout redis-py answers None when nothing arrived.
            try:
                response: Any = await conn.read_response(timeout=self._keepalive)
            except ResponseError as exc:
                if not self._sharded:
                    raise
                self._refused(exc)
                continue
            if response is None:
                if pinged:
                    raise TimeoutError("pub/sub keepalive PING went unanswered")
                await conn.send_command("PING", check_health=False)
                pinged = True
                continue
            pinged = False
            kind = response[0]
            if kind == self._message_kind:
                self._on_message(response[1], response[2])
            elif kind == self._subscribed_kind:
                self._answered(kind, response[1])
                self._confirmed.add(response[1])
                for future in self._waiters.pop(response[1], ()):
                    if not future.done():
                        future.set_result(None)
            elif kind == b"sunsubscribe" and not self._answered(kind, response[1]):
                self._moved([response[1]], "its slot moved")

    # Sharded: answers and channels the node gave up ---------------------------

    def _answered(self, kind: bytes, channel: bytes) -> bool:
        """Count an answer to the oldest pending command if it is one; False when
        it is not (a `sunsubscribe` the node pushed of its own accord)."""
        if not self._pending:
            return False
        head = self._pending[0]
        if head[0] != kind or channel not in head[1]:
            return False
        head[2] -= 1
        if head[2] <= 0:
            self._pending.popleft()
        return True

    def _refused(self, exc: ResponseError) -> None:
        """An error answer: the oldest pending command failed as a whole."""
        if not self._pending:
            log.warning("redis sharded pub/sub: unexpected error %r", exc)
            return
        command, channels, _ = self._pending.popleft()
        if command == b"ssubscribe":
            why = "moved" if isinstance(exc, MovedError) else f"refused: {exc}"
            self._moved(sorted(channels), why)
        else:
            log.debug("redis %s refused: %r", command.decode(), exc)

    def _moved(self, channels: list[bytes], why: str) -> None:
        gone = [c for c in channels if c in self._wanted and c not in self._permanent]
        if not gone:
            return
        self._wanted.difference_update(gone)
        self._sent.difference_update(gone)
        self._confirmed.difference_update(gone)
        for channel in gone:
            for future in self._waiters.pop(channel, ()):
                if not future.done():
                    future.set_exception(ChannelMoved(f"channel {why}"))
                    future.exception()
        log.info("redis sharded pub/sub: %d channels %s", len(gone), why)
        if self._on_moved is not None:
            self._on_moved(gone)

    async def _drop_connection(self) -> None:
        self._connected.clear()
        self._sent.clear()
        self._confirmed.clear()
        self._pending.clear()
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
