"""Prometheus metrics of one process, and their text exposition at `/metrics`.

The hot paths (every frame in and out) only add to plain integers; `sync()` moves
those into the Prometheus counters and reads the state gauges (subscriptions,
channels, the MongoDB queue) from the node. The scrape calls `sync()` first; with
several workers (multi-process mode, see `enable_multiprocess`) every worker also
calls it on a timer, so a scrape answered by one worker shows all of them, the
others at most `SYNC_INTERVAL` old.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

if TYPE_CHECKING:
    from .node import Node

__all__ = [
    "CONTENT_TYPE",
    "SYNC_INTERVAL",
    "Metrics",
    "enable_multiprocess",
    "mark_worker_dead",
    "multiprocess_dir",
]

CONTENT_TYPE = CONTENT_TYPE_LATEST
SYNC_INTERVAL = 1.0  # seconds between a worker's syncs in multi-process mode
_ENV = "PROMETHEUS_MULTIPROC_DIR"
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def enable_multiprocess(path: str) -> None:
    """Share metrics between the processes forked after this call (through files in `path`)."""
    os.environ[_ENV] = path
    values.ValueClass = values.MultiProcessValue()


def multiprocess_dir() -> str | None:
    return os.environ.get(_ENV) or None


def mark_worker_dead(pid: int) -> None:
    """Drop a dead worker's live gauges (its counters keep counting in the totals)."""
    path = multiprocess_dir()
    if path is not None:
        mark_process_dead(pid, path)


class Metrics:
    """One process's metrics; each instance has its own registry (tests run several nodes)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.open_connections = 0  # client connections open in this process (every transport)
        self.open_by_transport: dict[str, int] = {}
        self.opened_by_transport: dict[str, int] = {}
        self._opened_synced: dict[str, int] = {}
        self.messages_in = self.messages_out = self.bytes_in = self.bytes_out = 0
        self._synced = [0, 0, 0, 0]

        def gauge(name: str, doc: str, mode: str = "livesum") -> Gauge:
            return Gauge(name, doc, registry=r, multiprocess_mode=mode)  # type: ignore[arg-type]

        self.connections = gauge("wsfan_connections", "Open client connections (every transport).")
        self.transport_connections = Gauge(
            "wsfan_transport_connections",
            "Open client connections, by transport.",
            ["transport"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.transport_connects = Counter(
            "wsfan_transport_connects",
            "Client connections opened, by transport.",
            ["transport"],
            registry=r,
        )
        self.subscriptions = gauge("wsfan_subscriptions", "Channel subscriptions of connections.")
        self.channels = gauge("wsfan_channels", "Channels with a local subscriber.")
        self.commands = Counter(
            "wsfan_commands", "Client commands handled, by method.", ["method"], registry=r
        )
        self.command_errors = Counter(
            "wsfan_command_errors",
            "Error replies to client commands, by method and code.",
            ["method", "code"],
            registry=r,
        )
        self.disconnects = Counter(
            "wsfan_disconnects",
            "Connections closed by the server, by close code (3008 slow, 3013 rate limit).",
            ["code"],
            registry=r,
        )
        self.refused = Counter(
            "wsfan_connections_refused",
            "Handshakes refused with 503 (server.max_connections).",
            registry=r,
        )
        self.hook_calls = Counter(
            "wsfan_hook_calls",
            "Application hook calls, by point and implementation (python, proxy).",
            ["point", "implementation"],
            registry=r,
        )
        self.hook_failures = Counter(
            "wsfan_hook_failures",
            "Hook calls that failed (raised, timed out, or answered garbage): error 100.",
            ["point", "implementation"],
            registry=r,
        )
        self._messages_in = Counter("wsfan_messages_in", "Client messages received.", registry=r)
        self._messages_out = Counter("wsfan_messages_out", "Messages sent to clients.", registry=r)
        self._bytes_in = Counter("wsfan_bytes_in", "Frame bytes received.", registry=r)
        self._bytes_out = Counter("wsfan_bytes_out", "Frame bytes sent.", registry=r)
        self.fanout = Histogram(
            "wsfan_fanout_seconds",
            "Time to hand one publication to every local subscriber.",
            registry=r,
            buckets=_LATENCY_BUCKETS,
        )
        self.broker_publish = Histogram(
            "wsfan_broker_publish_seconds",
            "Broker publish latency (history append and pub/sub).",
            registry=r,
            buckets=_LATENCY_BUCKETS,
        )
        self.broker_reconnects = Counter(
            "wsfan_broker_reconnects", "Reconnections to the broker (Redis).", registry=r
        )
        self.persist_queued = gauge("wsfan_persist_queue", "Records queued for MongoDB.")
        self.persist_spill = gauge("wsfan_persist_spill_bytes", "Bytes in spill files.")
        self.persist_written = gauge("wsfan_persist_written", "Records written to MongoDB.")
        self.persist_failures = gauge("wsfan_persist_failures", "Failed MongoDB log writes.")
        self.persist_latency = gauge(
            "wsfan_persist_last_write_seconds", "Latency of the last MongoDB log write.", "livemax"
        )
        self.persist_healthy = gauge(
            "wsfan_persist_healthy", "1 while the MongoDB log's writes succeed.", "livemin"
        )

    # Hooks (cheap: called on hot paths) ----------------------------------------

    def connection_opened(self, transport: str = "websocket") -> None:
        self.open_connections += 1
        self.open_by_transport[transport] = self.open_by_transport.get(transport, 0) + 1
        self.opened_by_transport[transport] = self.opened_by_transport.get(transport, 0) + 1

    def connection_closed(self, transport: str = "websocket") -> None:
        self.open_connections -= 1
        self.open_by_transport[transport] -= 1

    def frame_in(self, messages: int, size: int) -> None:
        self.messages_in += messages
        self.bytes_in += size

    @contextmanager
    def timed(self, histogram: Histogram) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            histogram.observe(time.perf_counter() - start)

    # Exposition -----------------------------------------------------------------

    def sync(self, node: Node) -> None:
        """Bring the exported values up to date with this process's state."""
        totals = [self.messages_in, self.messages_out, self.bytes_in, self.bytes_out]
        counters = (self._messages_in, self._messages_out, self._bytes_in, self._bytes_out)
        for i, counter in enumerate(counters):
            if totals[i] > self._synced[i]:
                counter.inc(totals[i] - self._synced[i])
        self._synced = totals
        self.connections.set(self.open_connections)
        for transport, count in self.open_by_transport.items():
            self.transport_connections.labels(transport).set(count)
        for transport, opened in self.opened_by_transport.items():
            synced = self._opened_synced.get(transport, 0)
            if opened > synced:
                self.transport_connects.labels(transport).inc(opened - synced)
                self._opened_synced[transport] = opened
        self.subscriptions.set(node.hub.num_subscriptions)
        self.channels.set(node.hub.num_channels)
        if node.durable is not None:
            stats = node.durable.stats
            self.persist_queued.set(stats.queued)
            self.persist_spill.set(stats.spill_bytes)
            self.persist_written.set(stats.written)
            self.persist_failures.set(stats.failures)
            self.persist_latency.set(stats.last_latency)
            self.persist_healthy.set(1 if stats.healthy else 0)

    def expose(self, node: Node) -> bytes:
        """The text exposition: this process's, or every worker's in multi-process mode."""
        self.sync(node)
        path = multiprocess_dir()
        if path is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path)
        return generate_latest(registry)
