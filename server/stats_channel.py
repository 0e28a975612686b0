"""Each node publishes its own numbers into a system channel (`sys:stats`) every second.

The /dashboard page subscribes to that channel like any client, so a cluster's view
needs nothing but the channels the server already has: every node's message reaches
every viewer through the broker, whichever instance the viewer is connected to.

Fan-out latency is measured end to end on the real path: the time from this node
starting to publish its stats message (broker script, Redis pub/sub or the memory
broker) until it reaches its own node, just before the hub hands it to the
channel's subscribers: the stats channel observes it there (`Node.observe`),
without being a subscriber of its own.
A message that never comes back leaves the next report's latency empty (`null`).

One message (JSON object, keys stable):
`id` (unique per process), `node` (name), `version`, `ts` (Unix seconds), `interval`,
`uptime`, `connections`, `users`, `subscriptions` and `channels` (of clients on this
node), `messages_in_per_sec` / `messages_out_per_sec` (protocol messages from / to
this node's clients), `fanout_latency_ms` (float or null), `seq`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from .logs import Repeated
from .protocol import Publication

if TYPE_CHECKING:
    from .node import Node

__all__ = ["NodeStats"]

log = logging.getLogger(__name__)

PENDING_LIMIT = 16  # stats messages awaiting their return; older ones count as lost


class NodeStats:
    """Publishes `node`'s numbers every `settings.stats.interval` seconds while started.

    Does nothing (and says so once in the log) when the interval is 0 or the
    channel's namespace is not declared. A failed publish is logged and the next
    tick tries again; ticks never pile up behind a slow broker.
    """

    def __init__(self, node: Node) -> None:
        self.node = node
        self.id = uuid.uuid4().hex[:12]
        self.interval = node.settings.stats.interval
        self.channel = node.settings.stats.channel
        self.latency: float | None = None  # seconds, of the last message that returned
        self._pending: dict[int, float] = {}
        self._seq = 0
        self._task: asyncio.Task[None] | None = None
        self._observing = False
        self._started_at = time.monotonic()
        self._last: tuple[float, int, int] | None = None  # (monotonic, in, out)
        self._failing = False
        self._closing = False
        self._subscribe_failures = Repeated(log, node.settings.log.repeat_interval)

    @property
    def enabled(self) -> bool:
        return self.interval > 0 and self.node.settings.channel_options(self.channel) is not None

    async def start(self) -> None:
        if self._task is not None:
            return
        if not self.enabled:
            log.info("stats publishing off (interval 0 or no namespace for %r)", self.channel)
            return
        self._last = (
            time.monotonic(),
            self.node.metrics.messages_in,
            self.node.metrics.messages_out,
        )
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        """Stop publishing; returns within about interval + redis.command_timeout."""
        self._closing = True
        if self._task is not None:
            task, self._task = self._task, None
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.interval + self.node.settings.redis.command_timeout + 1
            # Cancel again until it takes: redis-py can lose a cancellation in connect.
            # The loop also checks _closing, so a lost one ends it at the next tick.
            while not task.done() and loop.time() < deadline:
                task.cancel()
                await asyncio.wait([task], timeout=0.2)
            if not task.done():
                log.warning("stats task did not stop in time")
            elif not task.cancelled() and task.exception() is not None:
                log.error("stats task failed", exc_info=task.exception())
        # Also undoes an observe cut short by the cancellation (a no-op otherwise).
        self._observing = False
        await self.node.unobserve(self.channel)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while not self._closing:
            next_at += self.interval
            if not self._observing:
                await self._subscribe()
            await self.publish_once()
            # Skip ticks missed behind a slow publish instead of bursting to catch up.
            now = loop.time()
            if next_at < now:
                next_at = now
            await asyncio.sleep(next_at - now)

    async def _subscribe(self) -> None:
        """Listen for our own messages; if the broker refuses, publish without timing."""
        try:
            await self.node.observe(self.channel, self._returned)
        except Exception as exc:
            self._subscribe_failures(
                "stats: cannot subscribe to %r (%s); retrying next tick", self.channel, exc
            )
            return
        self._subscribe_failures.recovered("stats: subscribed to %r", self.channel)
        self._observing = True

    def sample(self) -> dict[str, Any]:
        """This node's numbers now; rates cover the time since the previous sample."""
        hub = self.node.hub
        now = time.monotonic()
        msgs_in, msgs_out = self.node.metrics.messages_in, self.node.metrics.messages_out
        last = self._last or (self._started_at, 0, 0)
        elapsed = max(now - last[0], 1e-9)
        self._last = (now, msgs_in, msgs_out)
        self._seq += 1
        return {
            "id": self.id,
            "node": self.node.name,
            "version": self.node.version,
            "ts": round(time.time(), 3),
            "interval": self.interval,
            "uptime": round(now - self._started_at, 1),
            "connections": hub.num_clients,
            "users": hub.num_users,
            "subscriptions": hub.num_subscriptions,
            "channels": hub.num_channels,
            "messages_in_per_sec": round((msgs_in - last[1]) / elapsed, 1),
            "messages_out_per_sec": round((msgs_out - last[2]) / elapsed, 1),
            "fanout_latency_ms": None if self.latency is None else round(self.latency * 1e3, 3),
            "seq": self._seq,
        }

    async def publish_once(self) -> None:
        """Publish one sample; failures are logged (once per run of failures)."""
        data = self.sample()
        self.latency = None
        self._pending[data["seq"]] = time.perf_counter()
        while len(self._pending) > PENDING_LIMIT:
            del self._pending[next(iter(self._pending))]
        try:
            await self.node.publish(self.channel, data)
        except Exception as exc:
            self._pending.pop(data["seq"], None)
            if not self._failing:
                log.warning("stats publish to %r failed: %s", self.channel, exc)
            self._failing = True
            return
        if self._failing:
            log.info("stats publishing to %r works again", self.channel)
        self._failing = False

    def _returned(self, pub: Publication) -> None:
        self.returned(pub.data)

    def returned(self, data: Any) -> None:
        """A stats publication reached this node; time it if it is one of ours."""
        if not isinstance(data, dict) or data.get("id") != self.id:
            return
        sent = self._pending.pop(data.get("seq", -1), None)
        if sent is not None:
            self.latency = time.perf_counter() - sent
