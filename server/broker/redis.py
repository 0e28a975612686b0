"""Broker and presence on Redis: every node sharing one Redis forms one cluster.

Publishing runs one Lua script per publication that assigns the offset,
appends to the channel's history list and publishes, so offsets are gapless
and ordered however many nodes publish at once (the broker contract). The
epoch lives in the channel's meta hash: when Redis loses it (a restart
without persistence, or the meta TTL), the next read or publish starts a new
epoch and clients learn that recovery is impossible.

Keys (named in server/broker/redis_keys.py: the escaped channel in braces is a
Redis Cluster hash tag, so a channel's keys share a slot): `<prefix>.meta.{c}`,
`<prefix>.stream.{c}`, `<prefix>.presence.{c}` (hash), `<prefix>.presence.z.{c}`
(expiry zset) and `<prefix>.idempotency.{c}.<key>` (a publish's result, for its
window); pub/sub channels `<prefix>.pub.{c}` and, for the control stream,
`<prefix>.control` (subscribed for the broker's whole life).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import msgpack
from redis.asyncio import Redis

from ..errors import ErrorCode, ReplyError
from ..protocol import ClientInfo, Encoding, Publication, StreamPosition, encode
from .base import (
    FENCED,
    Broker,
    BrokerEventHandler,
    Fence,
    HistoryOptions,
    HistoryQuery,
    HistoryResult,
    LogState,
)
from .leases import Leases
from .memory import LOG_BEHIND, new_epoch
from .occupancy import OccupancyStore
from .redis_connection import watch_restarts
from .redis_keys import channel_key, escape, pubsub_channel, untag
from .redis_leases import RedisLeases, lease_key
from .redis_occupancy import RedisOccupancy
from .redis_presence import RedisPresence
from .redis_pubsub import PubSubConnection, RedisUnavailable
from .redis_scripts import (
    HISTORY,
    LOGGED,
    NEW_EPOCH,
    PUBLISH,
)

__all__ = ["RedisBroker", "RedisPresence"]

log = logging.getLogger(__name__)

KIND_PUBLICATION, KIND_JOIN, KIND_LEAVE = 0, 1, 2
_NO_POSITION = msgpack.packb(KIND_PUBLICATION) + msgpack.packb(0) + msgpack.packb("")


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _decode_publication(message: Any) -> Publication:
    """From `[0, offset, epoch, publication-map]`."""
    return Publication.from_dict(message[3], offset=message[1], epoch=message[2])


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def _glob_escape(text: str) -> str:
    """`text` matched literally in a SCAN pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class RedisBroker(Broker):
    _publish_command = "publish"
    """How a publication reaches the channel's pub/sub channel (in the PUBLISH script too)."""

    def __init__(
        self,
        client: Redis,
        prefix: str = "wsfan",
        timeout: float = 5.0,
        reconnect_min: float = 0.05,
        reconnect_max: float = 5.0,
        repeat_interval: float = 10.0,
    ) -> None:
        self._setup(client, prefix)
        self.pubsub = PubSubConnection(
            client,
            self._on_message,
            self._on_reconnect,
            timeout=timeout,
            reconnect_min=reconnect_min,
            reconnect_max=reconnect_max,
            permanent=[self._control],
            on_lost=self._on_lost,
            repeat_interval=repeat_interval,
        )
        # A restarted Redis is noticed before anything is published on it, and used
        # only once the node has checked what it kept (through `_admin`).
        self._admin, self._restarts = watch_restarts(client, timeout, self._on_reconnect)
        self._new_epoch = self._admin.register_script(NEW_EPOCH)

    def _setup(self, client: Redis, prefix: str) -> None:
        """What every Redis broker keeps: the command client, names and scripts."""
        self.client = client
        self.prefix = prefix
        self._pub_prefix = f"{prefix}.pub.".encode()
        self._control = f"{prefix}.control".encode()
        self._handler: BrokerEventHandler | None = None
        self._publish = client.register_script(PUBLISH)
        self._history = client.register_script(HISTORY)
        self._logged = client.register_script(LOGGED)
        self._tasks: set[asyncio.Task[None]] = set()

    # Keys --------------------------------------------------------------------

    def _meta(self, channel: str) -> str:
        return channel_key(self.prefix, "meta", channel)

    def _stream(self, channel: str) -> str:
        return channel_key(self.prefix, "stream", channel)

    def _pubsub_channel(self, channel: str) -> bytes:
        return pubsub_channel(self.prefix, channel)

    def _idempotency(self, channel: str, key: str) -> str:
        return channel_key(self.prefix, "idempotency", channel, key)

    def _logged_set(self, channel: str) -> str:
        return channel_key(self.prefix, "logged", channel)

    # Life cycle --------------------------------------------------------------

    async def start(self, handler: BrokerEventHandler) -> None:
        """Starts delivery; waits (up to the timeout) for the control stream, so a
        node that starts while Redis is away still starts, and joins once it is back."""
        self._handler = handler
        self.pubsub.start()
        try:
            await self.pubsub.wait_subscribed([self._control])
        except RedisUnavailable as exc:
            log.warning("control stream not subscribed yet: %s", exc)
            return
        await self._warn_if_evicting()

    async def _warn_if_evicting(self) -> None:
        """A Redis that may evict keys can drop history, positions and what the
        durable log has not stored yet: say so once at start-up."""
        try:
            policy = (await self.client.config_get("maxmemory-policy")).get("maxmemory-policy")
        except Exception as exc:  # CONFIG may be disabled (managed Redis): nothing to say
            log.debug("could not read maxmemory-policy: %r", exc)
            return
        if policy and policy != "noeviction":
            log.warning(
                "Redis maxmemory-policy is %r: under memory pressure it may evict history, "
                "stream positions and publications not yet in the durable log; "
                "set it to 'noeviction'",
                policy,
            )

    async def close(self) -> None:
        await self.pubsub.close()
        await self.client.aclose()
        await self._admin.aclose()

    async def ping(self) -> None:
        """PING over the command connections (bounded by their timeouts)."""
        await self.client.ping()

    def channel_stores(self) -> tuple[OccupancyStore, Leases]:
        return RedisOccupancy(self.client, self.prefix), RedisLeases(self.client, self.prefix)

    def reconnect_checked(self) -> None:
        self._restarts.confirm()

    # Delivery ----------------------------------------------------------------

    def _on_message(self, pubsub_channel: bytes, data: bytes) -> None:
        handler = self._handler
        if handler is None:
            return
        if pubsub_channel == self._control:
            handler.handle_control(data)
            return
        if not pubsub_channel.startswith(self._pub_prefix):
            return
        channel = untag(pubsub_channel[len(self._pub_prefix) :].decode())
        message = _unpack(data)
        kind = message[0]
        if kind == KIND_PUBLICATION:
            handler.handle_publication(channel, _decode_publication(message))
        elif kind == KIND_JOIN:
            handler.handle_join(channel, ClientInfo.from_dict(message[1]))
        elif kind == KIND_LEAVE:
            handler.handle_leave(channel, ClientInfo.from_dict(message[1]))

    def _on_lost(self) -> None:
        # Idle pooled connections to a Redis that went away would each fail one
        # command after it is back (redis-py does not retry them): drop them now.
        task = asyncio.get_running_loop().create_task(self._drop_idle_connections())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drop_idle_connections(self) -> None:
        try:
            await self.client.connection_pool.disconnect(inuse_connections=False)
        except Exception as exc:
            log.debug("dropping idle connections failed: %r", exc)

    def _on_reconnect(self) -> None:
        if self._handler is not None:
            self._handler.handle_broker_reconnect()

    async def subscribe(self, channels: Sequence[str]) -> None:
        await self.pubsub.subscribe([self._pubsub_channel(c) for c in channels])

    async def unsubscribe(self, channels: Sequence[str]) -> None:
        await self.pubsub.unsubscribe([self._pubsub_channel(c) for c in channels])

    # Publishing --------------------------------------------------------------

    async def publish(
        self,
        channel: str,
        data: Any,
        options: HistoryOptions,
        info: ClientInfo | None = None,
        tags: dict[str, str] | None = None,
        idempotency_key: str | None = None,
        idempotency_window: float = 300.0,
        fence: Fence | None = None,
        delta: bool = False,
    ) -> StreamPosition:
        pub = Publication(data, 0, info, tags, delta=delta)
        body = encode(pub.to_broker_dict(), Encoding.MSGPACK)
        if options.size <= 0 and idempotency_key is None and fence is None:
            message = b"\x94" + _NO_POSITION + body
            await self._send(self._pubsub_channel(channel), message)
            return StreamPosition(0, "")
        keys: list[str | bytes] = [
            self._meta(channel),
            self._stream(channel),
            self._pubsub_channel(channel),
        ]
        if idempotency_key is None:
            keys.append(self._idempotency(channel, ""))
            window = 0
        else:
            keys.append(self._idempotency(channel, idempotency_key))
            window = _ms(idempotency_window)
        if fence is not None:
            keys.append(lease_key(self.prefix, channel, fence.name))
        offset, epoch = await self._publish(
            keys=keys,
            args=[
                body,
                max(options.size, 0),
                _ms(options.ttl),
                _ms(options.meta_ttl),
                new_epoch(),
                window,
                options.log_lag,
                self._publish_command,
                *([] if fence is None else [fence.token]),
            ],
        )
        if offset < 0:
            raise ReplyError(ErrorCode.INTERNAL, LOG_BEHIND if offset == -1 else FENCED)
        return StreamPosition(int(offset), epoch.decode())

    async def _publish_event(self, channel: str, kind: int, info: ClientInfo) -> None:
        message = msgpack.packb([kind, info.to_dict()], use_bin_type=True)
        await self._send(self._pubsub_channel(channel), message)

    async def publish_join(self, channel: str, info: ClientInfo) -> None:
        await self._publish_event(channel, KIND_JOIN, info)

    async def publish_leave(self, channel: str, info: ClientInfo) -> None:
        await self._publish_event(channel, KIND_LEAVE, info)

    # History -----------------------------------------------------------------

    async def history(
        self, channel: str, query: HistoryQuery, options: HistoryOptions
    ) -> HistoryResult:
        since = query.since
        top, epoch, length, messages = await self._history(
            keys=[self._meta(channel), self._stream(channel)],
            args=[
                new_epoch(),
                _ms(options.meta_ttl),
                -1 if since is None else since.offset,
                query.limit,
                1 if query.reverse else 0,
            ],
        )
        position = StreamPosition(int(top), epoch.decode())
        if since is not None:
            if since.epoch != position.epoch:
                raise ReplyError(ErrorCode.UNRECOVERABLE_POSITION)
            first = position.offset - int(length) + 1
            if not query.reverse and (since.offset > position.offset or since.offset + 1 < first):
                raise ReplyError(ErrorCode.UNRECOVERABLE_POSITION)
        publications = [_decode_publication(_unpack(m)) for m in messages]
        if query.reverse:
            publications.reverse()
        return HistoryResult(publications, position)

    async def remove_history(self, channel: str) -> None:
        await self.client.delete(self._stream(channel))

    # The durable log's checkpoint ----------------------------------------------

    async def log_stored(
        self, channel: str, epoch: str, runs: Sequence[tuple[int, int]], options: HistoryOptions
    ) -> int:
        args: list[Any] = [epoch, options.size, _ms(options.ttl), _ms(options.meta_ttl)]
        for first, last in runs:
            args += [first, last]
        keys = [self._meta(channel), self._stream(channel), self._logged_set(channel)]
        return int(await self._logged(keys=keys, args=args))

    async def log_lagging(self, prefixes: Sequence[str]) -> list[LogState]:
        start = f"{self.prefix}.meta.{{"
        found: list[LogState] = []
        for prefix in prefixes:
            match = _glob_escape(start + escape(prefix)) + "*"
            keys = [key async for key in self.client.scan_iter(match=match, count=1000)]
            for index in range(0, len(keys), 500):
                chunk = keys[index : index + 500]
                async with self.client.pipeline(transaction=False) as pipe:
                    for key in chunk:
                        pipe.hmget(key, "e", "s", "l")
                    answers = await pipe.execute()
                for key, (epoch, top, logged) in zip(chunk, answers, strict=True):
                    if epoch is None or logged is None or int(logged) >= int(top or 0):
                        continue
                    channel = untag(key.decode()[len(start) - 1 :])
                    found.append(LogState(channel, epoch.decode(), int(top), int(logged)))
        return found

    async def restart_epoch(
        self, channel: str, epoch: str, acknowledged: int, options: HistoryOptions
    ) -> str:
        keys = [self._meta(channel), self._stream(channel), self._logged_set(channel)]
        now = await self._new_epoch(keys=keys, args=[epoch, acknowledged, new_epoch()])
        return now.decode() if isinstance(now, bytes) else str(now or "")

    # Control -----------------------------------------------------------------

    async def publish_control(self, data: bytes) -> None:
        await self._send(self._control, data)

    async def _send(self, pubsub_channel: bytes, message: bytes) -> None:
        """Publish `message` on a pub/sub channel (no history, no offset)."""
        await self.client.publish(pubsub_channel, message)
