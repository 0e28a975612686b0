#!/usr/bin/env python3
"""What the MongoDB log costs: persisted publications per second, and fan-out with
persistence on versus off.

In one process, on embedded Valkey (the Redis broker) and SecantusDB:

1. `persisted`: publishers call `Node.publish` on a persisted namespace as fast
   as they can; the figure is publications per second until every one is stored
   in MongoDB (batches written by the log writer).
2. `fanout`: SUBSCRIBERS in-process sessions (real `Session` objects with a
   transport that only counts bytes) on one channel; publications as fast as
   the node takes them, once on a persisted channel and once on a plain one.
   Deliveries per second and process CPU per delivery, on versus off (runs
   alternate; the best of each is kept).

    python bench/persist.py --out bench/results/persist.json

Loopback only; every loop is bounded by its count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wsfan.channel_log import ChannelLog  # noqa: E402
from wsfan.compose import build_node  # noqa: E402
from wsfan.config import load_settings  # noqa: E402
from wsfan.embedded import EmbeddedSecantus, EmbeddedValkey  # noqa: E402
from wsfan.errors import ReplyError  # noqa: E402
from wsfan.frames import WEBSOCKET  # noqa: E402
from wsfan.node import Node  # noqa: E402
from wsfan.protocol import Encoding  # noqa: E402
from wsfan.session import Session  # noqa: E402
from wsfan.store.mongo import MongoStore  # noqa: E402
from wsfan.transport import Frame, variant  # noqa: E402

OPEN = {"allow_anonymous": True, "allow_publish": True, "history_size": 1000}


class CountingTransport:
    """Counts delivered publications (newline-delimited JSON: one per line)."""

    __slots__ = ("messages",)

    sends_close_frame = True
    variant = variant(Encoding.JSON, WEBSOCKET)

    def __init__(self) -> None:
        self.messages = 0

    def write(self, messages: Sequence[bytes], framed: Frame | None = None) -> int:
        self.messages += len(messages)
        return sum(map(len, messages))

    def unsent_bytes(self) -> int:
        return 0

    def close(self, code: int, reason: str) -> None:
        pass


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def persisted(node: Node, count: int, concurrency: int) -> dict[str, Any]:
    per = count // concurrency
    refused = 0

    async def publisher(index: int) -> None:
        # A publish refused as temporary (the log trails by persist.max_lag) is
        # retried after a pause, as a client would: it was not acknowledged.
        nonlocal refused
        for n in range(per):
            while True:
                try:
                    await node.publish("log:persisted", {"p": index, "n": n})
                    break
                except ReplyError as exc:
                    if not exc.temporary:
                        raise
                    refused += 1
                    await asyncio.sleep(0.01)

    started, cpu0 = time.perf_counter(), cpu()
    await asyncio.gather(*(publisher(i) for i in range(concurrency)))
    accepted = time.perf_counter() - started
    assert node.durable is not None
    await node.durable.writer.flush()
    elapsed = time.perf_counter() - started
    stats = node.durable.stats
    return {
        "publications": per * concurrency,
        "accepted_per_s": round(per * concurrency / accepted),
        "persisted_per_s": round(per * concurrency / elapsed),
        "cpu_us_per_publication": round((cpu() - cpu0) / (per * concurrency) * 1e6, 1),
        "batches": stats.batches,
        "max_batch": stats.max_batch,
        "max_write_latency_ms": round(stats.max_latency * 1000, 1),
        "refused_while_the_log_trailed": refused,
    }


async def fanout(node: Node, channel: str, subscribers: int, count: int) -> dict[str, Any]:
    transports = [CountingTransport() for _ in range(subscribers)]
    sessions = []  # closed by node.close() at the end
    for t in transports:
        s = Session(node, t, settings=node.settings, metrics=node.metrics, tokens=node.tokens)
        await s.handle_frame(b'{"id":1,"connect":{}}')
        await s.handle_frame(f'{{"id":2,"subscribe":{{"channel":"{channel}"}}}}'.encode())
        sessions.append(s)
    await asyncio.sleep(0.2)
    base = sum(t.messages for t in transports)
    expected = base + subscribers * count
    started, cpu0 = time.perf_counter(), cpu()
    payload = {"text": "x" * 80}
    for _ in range(count // 20):
        await asyncio.gather(*(node.publish(channel, payload) for _ in range(20)))
    deadline = time.monotonic() + 60
    while sum(t.messages for t in transports) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - started
    delivered = sum(t.messages for t in transports) - base
    used = cpu() - cpu0
    return {
        "channel": channel,
        "subscribers": subscribers,
        "publications": count,
        "deliveries": delivered,
        "lost": subscribers * count - delivered,
        "deliveries_per_s": round(delivered / elapsed),
        "cpu_us_per_delivery": round(used / max(delivered, 1) * 1e6, 2),
    }


async def run(args: argparse.Namespace, redis_url: str, mongo_url: str) -> dict[str, Any]:
    settings = load_settings(env={}).with_overrides(
        broker={"type": "redis"},
        redis={"url": redis_url, "prefix": "bench"},
        namespaces={"log": {**OPEN, "persist": True}, "plain": OPEN},
        persist={"batch_size": args.batch_size, "max_lag": args.max_lag},
    )
    store = MongoStore(mongo_url, "bench")
    with tempfile.TemporaryDirectory() as spill:
        node = build_node(settings, durable=ChannelLog(store, settings.persist, Path(spill)))
        await node.start()
        try:
            result = {"persisted": await persisted(node, args.publications, args.concurrency)}
            runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
            for round_ in range(args.rounds):  # alternated, so drift hits both alike
                for mode, ns in (("off", "plain"), ("on", "log")):
                    channel = f"{ns}:fan{round_}"
                    n = args.fanout_publications
                    runs[mode].append(await fanout(node, channel, args.subscribers, n))
                    await node.durable.writer.flush()  # type: ignore[union-attr]
            off = max(runs["off"], key=lambda r: r["deliveries_per_s"])
            on = max(runs["on"], key=lambda r: r["deliveries_per_s"])
            result["fanout_off"], result["fanout_on"] = off, on
            result["fanout_cost_pct"] = round(
                (1 - on["deliveries_per_s"] / off["deliveries_per_s"]) * 100, 1
            )
        finally:
            await node.close()
            await store.close()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--publications", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--max-lag", type=int, default=10000, help="persist.max_lag")
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--fanout-publications", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3, help="fan-out runs per mode; best kept")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/persist.json")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmbeddedValkey(Path(tmp) / "valkey") as redis,
        EmbeddedSecantus(Path(tmp) / "mongo", persist=False) as mongo,
    ):
        result = asyncio.run(run(args, redis.url, mongo.url))
    result["machine"] = {
        "python": platform.python_version(),
        "cpus": __import__("os").cpu_count(),
        "platform": platform.platform(),
        "mongo": "SecantusDB (embedded)",
        "redis": "Valkey (embedded)",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
