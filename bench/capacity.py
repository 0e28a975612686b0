#!/usr/bin/env python3
"""The capacity model: what a deployment needs, from measured per-operation costs.

    bench/capacity.py measure     # Valkey's CPU per operation, into measured.json
    bench/capacity.py project     # the table, from measured.json, into CAPACITY.md
    bench/capacity.py             # both

`measure` starts a fresh embedded Valkey (no persistence) and reads its own CPU
(`INFO cpu`: used_cpu_user + used_cpu_sys) around each of:

- publications with history (size 100, ~100-byte data) to 1,000 channels that
  no node subscribes to: Valkey's CPU **per publication**;
- the same with `--nodes` brokers each subscribed to every channel: the extra
  CPU per publication, divided by the nodes, is the CPU **per message
  delivered to a node** (pub/sub fan-out to the nodes, not to clients);
- presence refreshes, entry by entry and in one pipeline per batch of 1,000:
  Valkey's CPU **per presence entry refreshed**.

A node's CPU per delivery to a client is not measured here: it is read from
the transports benchmark (`bench/results/issue17_transports/transports.json`,
the WebSocket median at 20 publications/s with 1,000 subscribers and Redis in
the path), and idle connections per core from the 10k-connection capacity
scenario (`bench/results/capacity_10k.json`).

`project` writes the projections for the workloads in WORKLOADS (and any
given with --workload); the assumptions are written next to the table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from redis.asyncio import Redis  # noqa: E402
from wsfan.broker.base import HistoryOptions  # noqa: E402
from wsfan.broker.redis import RedisBroker, RedisPresence  # noqa: E402
from wsfan.broker.redis_connection import redis_client  # noqa: E402
from wsfan.embedded import EmbeddedValkey  # noqa: E402
from wsfan.protocol import ClientInfo  # noqa: E402

from tests.broker_fixtures import RecordingHandler  # noqa: E402

OUT = ROOT / "bench" / "results" / "capacity"
TRANSPORTS = ROOT / "bench" / "results" / "issue17_transports" / "transports.json"
CONNECTIONS = ROOT / "bench" / "results" / "capacity_10k.json"
KEEP = HistoryOptions(size=100, ttl=300.0, meta_ttl=3600.0)
DATA = {"text": "x" * 80, "sent": 0.0}
CHANNELS = [f"room:{n}" for n in range(1000)]
CONCURRENCY = 64
UTILISATION = 0.6
"""The share of a core (node or Valkey) the model plans to use, keeping headroom."""


async def redis_cpu(client: Redis) -> float:
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def spread(count: int, one: Callable[[int], Awaitable[Any]]) -> None:
    """`one(i)` for i in range(count), CONCURRENCY at a time."""
    queue = iter(range(count))

    async def worker() -> None:
        for i in queue:
            await one(i)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


async def cpu_per(client: Redis, count: int, one: Callable[[int], Awaitable[Any]]) -> float:
    """Valkey's CPU, in microseconds, per call of `one` (count calls)."""
    before = await redis_cpu(client)
    await spread(count, one)
    return (await redis_cpu(client) - before) * 1e6 / count


async def measure(publications: int, nodes: int, entries: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, EmbeddedValkey(Path(tmp), persist=False) as valkey:
        client = Redis.from_url(valkey.url)
        publisher = RedisBroker(redis_client(valkey.url, max_connections=CONCURRENCY), "cap")
        await publisher.start(RecordingHandler())

        async def publish(i: int) -> None:
            await publisher.publish(CHANNELS[i % len(CHANNELS)], DATA, KEEP)

        await cpu_per(client, publications // 10, publish)  # warm-up: scripts loaded
        alone = await cpu_per(client, publications, publish)
        listeners = [RedisBroker(redis_client(valkey.url), "cap") for _ in range(nodes)]
        for listener in listeners:
            await listener.start(RecordingHandler())
            await listener.subscribe(CHANNELS)
        watched = await cpu_per(client, publications, publish)
        for listener in listeners:
            await listener.close()

        presence = RedisPresence(redis_client(valkey.url, max_connections=CONCURRENCY), "cap")
        info = ClientInfo("user-1", "client-1", {"name": "someone"})

        async def refresh(i: int) -> None:
            await presence.add_presence(CHANNELS[i % len(CHANNELS)], f"client-{i}", info)

        one_by_one = await cpu_per(client, entries, refresh)
        batched = await pipelined_presence(client, presence, entries, info)
        await publisher.close()
        await client.aclose()
    return {
        "measured": time.strftime("%Y-%m-%d %H:%M:%S"),
        "publications": publications,
        "nodes": nodes,
        "presence_entries": entries,
        "redis_us_per_publication": round(alone, 2),
        "redis_us_per_node_delivery": round((watched - alone) / nodes, 2),
        "redis_us_per_presence_entry": round(one_by_one, 2),
        "redis_us_per_presence_entry_pipelined": round(batched, 2) if batched else None,
    }


async def pipelined_presence(
    client: Redis, presence: RedisPresence, entries: int, info: ClientInfo
) -> float | None:
    """Per-entry CPU of the batch refresh, where the presence manager has one."""
    many = getattr(presence, "add_presence_many", None)
    if many is None:
        return None
    batch = [(CHANNELS[i % len(CHANNELS)], f"client-{i}", info) for i in range(entries)]
    before = await redis_cpu(client)
    for start in range(0, entries, 1000):
        await many(batch[start : start + 1000])
    return (await redis_cpu(client) - before) * 1e6 / entries


# Projection -----------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    name: str
    connections: int
    channels_per_connection: int
    channels: int
    publications_per_second: int
    presence: bool = False
    presence_interval: float = 25.0


WORKLOADS = [
    Workload("1M connections, 100k pub/s", 1_000_000, 5, 200_000, 100_000),
    Workload("1M connections, 100k pub/s, presence on", 1_000_000, 5, 200_000, 100_000, True),
    Workload("100k connections, 10k pub/s", 100_000, 5, 20_000, 10_000),
    Workload("10k connections, one hot channel at 100 pub/s", 10_000, 1, 1, 100),
]


def node_figures() -> dict[str, float]:
    """A node's CPU per delivery and idle connections per core, from results files."""
    transports = json.loads(TRANSPORTS.read_text())
    per_delivery = transports["server CPU per delivery, 20 pubs/s"]["websocket"]["median"]
    capacity = json.loads(CONNECTIONS.read_text())
    connections = int(capacity["clients"]["subscribed"])
    return {"node_us_per_delivery": float(per_delivery), "connections_per_core": connections}


def project(workload: Workload, measured: dict[str, Any], node: dict[str, float]) -> dict[str, Any]:
    subscriptions = workload.connections * workload.channels_per_connection
    per_channel = subscriptions / workload.channels
    deliveries = workload.publications_per_second * per_channel
    delivery_cores = deliveries * node["node_us_per_delivery"] / 1e6 / UTILISATION
    connection_cores = workload.connections / node["connections_per_core"]
    cores = max(1, math.ceil(max(delivery_cores, connection_cores)))
    # Each core is one worker process, one node: a channel's publication reaches
    # every node holding one of its subscribers (subscribers spread at random).
    nodes_per_channel = cores * (1 - (1 - 1 / cores) ** per_channel)
    redis_us = workload.publications_per_second * (
        measured["redis_us_per_publication"]
        + nodes_per_channel * measured["redis_us_per_node_delivery"]
    )
    if workload.presence:
        entry = (
            measured["redis_us_per_presence_entry_pipelined"]
            or measured["redis_us_per_presence_entry"]
        )
        redis_us += subscriptions / workload.presence_interval * entry
    redis_cores = redis_us / 1e6
    hottest = per_channel * workload.publications_per_second / workload.channels
    return {
        **asdict(workload),
        "subscribers_per_channel": round(per_channel, 1),
        "deliveries_per_second": round(deliveries),
        "node_cores": cores,
        "bound_by": "deliveries" if delivery_cores >= connection_cores else "connections",
        "nodes_per_publication": round(nodes_per_channel, 1),
        "redis_cores": round(redis_cores, 3),
        "shards": max(1, math.ceil(redis_cores / UTILISATION)),
        "channel_rate": round(hottest, 2),
    }


def write_table(
    measured: dict[str, Any], rows: list[dict[str, Any]], node: dict[str, float]
) -> str:
    lines = [
        "# Capacity model",
        "",
        f"Measured {measured['measured']} by `bench/capacity.py measure` (raw: measured.json).",
        "",
        "| figure | value | from |",
        "|---|---|---|",
        f"| Valkey CPU per publication (history on) | {measured['redis_us_per_publication']} µs"
        " | measured.json |",
        f"| Valkey CPU per message delivered to a node | {measured['redis_us_per_node_delivery']}"
        f" µs | measured.json ({measured['nodes']} nodes) |",
        f"| Valkey CPU per presence entry refreshed, one by one |"
        f" {measured['redis_us_per_presence_entry']} µs | measured.json |",
        f"| the same, pipelined 1,000 at a time |"
        f" {measured['redis_us_per_presence_entry_pipelined'] or 'n/a'} µs | measured.json |",
        f"| node CPU per delivery to a client | {node['node_us_per_delivery']} µs |"
        f" {TRANSPORTS.relative_to(ROOT)} (WebSocket median) |",
        f"| idle subscribed connections per core (tested) | {node['connections_per_core']:,} |"
        f" {CONNECTIONS.relative_to(ROOT)} |",
        "",
        "| workload | subscribers/channel | deliveries/s | node cores (bound by) |"
        " nodes per publication | Valkey cores | shards |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['name']} | {row['subscribers_per_channel']:,} |"
            f" {row['deliveries_per_second']:,} | {row['node_cores']:,} ({row['bound_by']}) |"
            f" {row['nodes_per_publication']:,} | {row['redis_cores']} | {row['shards']} |"
        )
    lines += [
        "",
        "Assumptions:",
        f"- every core runs at {UTILISATION:.0%} at most (node processes and Valkey shards"
        " alike), leaving headroom for bursts, reconnect storms and pings;",
        "- one worker process per core, each its own node; subscribers spread over nodes at"
        " random, publications spread evenly over channels (no channel hotter than one"
        " shard and one node can carry: `channel_rate` in projection.json);",
        "- node CPU per delivery as measured with 1,000 subscribers at 20 publications/s"
        " (few publications coalesced: a pessimistic figure for hot channels);",
        "- connections per core limited to what was tested (10,000), not to memory;",
        "- Valkey shards scale linearly (Redis Cluster or client-side sharding, channels"
        " spread evenly); replicas not counted; join/leave off; presence, where on,"
        " refreshed once per `presence_update_interval` (25 s) per subscription.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", nargs="?", choices=["measure", "project", "all"], default="all")
    parser.add_argument("--publications", type=int, default=20000)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--entries", type=int, default=20000)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    raw = args.out / "measured.json"
    if args.step in ("measure", "all"):
        measured = asyncio.run(measure(args.publications, args.nodes, args.entries))
        raw.write_text(json.dumps(measured, indent=2) + "\n")
    measured = json.loads(raw.read_text())
    node = node_figures()
    rows = [project(w, measured, node) for w in WORKLOADS]
    (args.out / "projection.json").write_text(json.dumps(rows, indent=2) + "\n")
    table = write_table(measured, rows, node)
    (args.out / "CAPACITY.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
