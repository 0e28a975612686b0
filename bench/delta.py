#!/usr/bin/env python3
"""Delta compression: bytes per delivery with and without `delta: "fossil"`.

One in-process server (memory broker, the shipped defaults plus a `doc`
namespace with `allowed_delta_types = ["fossil"]` and `delta_publish`), four
subscribers over real WebSockets on loopback: JSON and msgpack, each with and
without delta. The server publishes a 2 KB JSON document `--publications`
times, each version changing about 1% of it (three values). Every delivery is
checked: the delta subscribers apply the patches with server/protocol/fossil.py
and must surface exactly the published document.

Figures per subscriber: bytes per delivery (the WebSocket message payload of a
publication push, first one excluded: it is full by design), bytes of `data`
alone, and the share saved against the same encoding without delta. Also the
server's time to make one patch of this document (server/protocol/fossil.py,
pure Python: the CPU a delta channel costs per publication and encoding).

    bench/delta.py                    # writes bench/results/delta/{delta.json,DELTA.md}
    bench/delta.py --quick --out DIR  # a smoke run (the test suite's)
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
from tornado.websocket import WebSocketClientConnection, websocket_connect

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wsfan import build  # noqa: E402
from wsfan.config import load_settings  # noqa: E402
from wsfan.protocol import fossil  # noqa: E402

OUT = ROOT / "bench" / "results" / "delta"
CHANNEL = "doc:state"
NAMESPACE = {
    "history_size": 10,
    "allow_anonymous": True,
    "allowed_delta_types": ["fossil"],
    "delta_publish": True,
}


def document(version: int, items: int = 36) -> dict[str, Any]:
    """About 2 KB of compact JSON (36 items); each version changes three values,
    about 1% of its bytes."""
    doc: dict[str, Any] = {
        "items": [
            {"id": i, "name": f"item-{i}", "price": (i * 37 + 3) % 1000 / 10, "tags": ["a", "b"]}
            for i in range(items)
        ],
        "ts": 1700000000 + version,
    }
    doc["items"][(version * 7) % items]["price"] = version / 100
    doc["items"][(version * 11) % items]["name"] = f"item-v{version}"
    return doc


@dataclass
class Subscriber:
    """One connection: what it received, as an SDK would surface it."""

    name: str
    encoding: str  # json | msgpack
    delta: bool
    conn: WebSocketClientConnection | None = None
    kept: bytes = b""
    message_bytes: list[int] = field(default_factory=list)
    data_bytes: list[int] = field(default_factory=list)
    patched: int = 0
    values: list[Any] = field(default_factory=list)

    def encode(self, message: dict[str, Any]) -> str | bytes:
        if self.encoding == "json":
            return json.dumps(message)
        return msgpack.packb(message, use_bin_type=True)

    def encode_data(self, data: Any) -> bytes:
        """`data` as the server encodes it (compact JSON, or msgpack)."""
        if self.encoding == "json":
            return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
        return msgpack.packb(data, use_bin_type=True)

    def decode(self, frame: str | bytes) -> list[Any]:
        if self.encoding == "json":
            text = frame if isinstance(frame, str) else frame.decode()
            return [json.loads(line) for line in text.split("\n") if line]
        unpacker = msgpack.Unpacker(raw=False)
        unpacker.feed(frame if isinstance(frame, bytes) else frame.encode())
        return list(unpacker)

    async def open(self, port: int) -> None:
        url = f"ws://127.0.0.1:{port}/connection/websocket"
        subprotocols = ["msgpack"] if self.encoding == "msgpack" else None
        self.conn = await websocket_connect(url, subprotocols=subprotocols)
        await self.call(1, "connect", {})
        params: dict[str, Any] = {"channel": CHANNEL}
        if self.delta:
            params["delta"] = "fossil"
        result = await self.call(2, "subscribe", params)
        assert result.get("delta", False) is self.delta, result

    async def call(self, cmd_id: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
        assert self.conn is not None
        await self.conn.write_message(
            self.encode({"id": cmd_id, method: params}), binary=self.encoding == "msgpack"
        )
        while True:
            for message in self.decode(await self.conn.read_message()):
                if message.get("id") == cmd_id:
                    assert "error" not in message, message
                    return dict(message[method])

    async def receive(self, count: int) -> None:
        assert self.conn is not None
        while len(self.values) < count:
            frame = await self.conn.read_message()
            assert frame is not None, f"{self.name}: closed"
            messages = self.decode(frame)
            pubs = [m["push"]["pub"] for m in messages if "pub" in m.get("push", {})]
            if len(messages) == 1 and pubs:  # one push per frame: its size is the delivery's
                size = len(frame.encode()) if isinstance(frame, str) else len(frame)
                self.message_bytes.append(size)
            for pub in pubs:
                self.take(pub)

    def take(self, pub: dict[str, Any]) -> None:
        data = pub["data"]
        if not self.delta:
            self.data_bytes.append(len(self.encode_data(data)))
            self.values.append(data)
            return
        raw = data.encode() if isinstance(data, str) else data
        self.data_bytes.append(len(raw))
        if pub.get("delta"):
            self.patched += 1
            self.kept = fossil.apply(self.kept, raw)
        else:
            self.kept = raw
        self.values.append(
            json.loads(self.kept) if self.encoding == "json" else msgpack.unpackb(self.kept)
        )


def _after_first(values: list[int]) -> float:
    rest = values[1:] or values
    return round(statistics.mean(rest), 1)


def patch_time_us(publications: int) -> float:
    """Median time of one `fossil.create` between consecutive versions (JSON, utf8_safe)."""
    docs = [
        json.dumps(document(v), separators=(",", ":")).encode() for v in range(publications + 1)
    ]
    times = []
    for before, after in itertools.pairwise(docs):
        start = time.perf_counter()
        fossil.create(before, after, utf8_safe=True)
        times.append((time.perf_counter() - start) * 1e6)
    return round(statistics.median(times), 1)


async def measure(publications: int) -> dict[str, Any]:
    settings = load_settings(env={}).with_overrides(
        broker={"type": "memory"}, namespaces={"doc": NAMESPACE}, stats={"interval": 0}
    )
    server = build(settings)
    await server.start()
    port = server.listen(address="127.0.0.1")
    subscribers = [
        Subscriber("json", "json", False),
        Subscriber("json + delta", "json", True),
        Subscriber("msgpack", "msgpack", False),
        Subscriber("msgpack + delta", "msgpack", True),
    ]
    try:
        for sub in subscribers:
            await sub.open(port)
        readers = [asyncio.create_task(s.receive(publications)) for s in subscribers]
        for version in range(publications):
            await server.publish(CHANNEL, document(version))
            await asyncio.sleep(0.005)  # one delivery per frame, as in a quiet channel
        await asyncio.wait_for(asyncio.gather(*readers), 30)
    finally:
        for sub in subscribers:
            if sub.conn is not None:
                sub.conn.close()
        await server.close()
    expected = [document(v) for v in range(publications)]
    rows = []
    for sub in subscribers:
        assert sub.values == expected, (
            f"{sub.name}: the data surfaced differs from what was published"
        )
        rows.append(
            {
                "subscriber": sub.name,
                "encoding": sub.encoding,
                "delta": sub.delta,
                "deliveries": len(sub.values),
                "patched": sub.patched,
                "bytes_per_delivery": _after_first(sub.message_bytes),
                "data_bytes_per_delivery": _after_first(sub.data_bytes),
                "first_delivery_bytes": sub.message_bytes[0] if sub.message_bytes else None,
            }
        )
    for row in rows:
        if row["delta"]:
            plain = next(r for r in rows if r["encoding"] == row["encoding"] and not r["delta"])
            row["saved_percent"] = round(
                (1 - row["bytes_per_delivery"] / plain["bytes_per_delivery"]) * 100, 1
            )
    doc_bytes = len(json.dumps(document(0), separators=(",", ":")).encode())
    return {
        "scenario": "a 2 KB JSON document, about 1% changed per publication",
        "document_bytes": doc_bytes,
        "publications": publications,
        "patch_us": patch_time_us(min(publications, 200)),
        "subscribers": rows,
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def report(result: dict[str, Any]) -> str:
    lines = [
        "# Delta compression: bytes per delivery",
        "",
        f"{result['scenario']}: {result['document_bytes']} bytes of compact JSON, "
        f"{result['publications']} publications, one subscriber per row (bench/delta.py, "
        "one in-process server, memory broker, loopback WebSockets). Bytes per delivery: "
        "the WebSocket message of one publication push, after the first (which is full "
        "by design); every delivery was checked against what was published.",
        "",
        "| subscriber | bytes per delivery | `data` bytes | patched | saved |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in result["subscribers"]:
        saved = f"{row['saved_percent']}%" if "saved_percent" in row else "-"
        patched = f"{row['patched']} of {row['deliveries']}"
        lines.append(
            f"| {row['subscriber']} | {row['bytes_per_delivery']} | "
            f"{row['data_bytes_per_delivery']} | {patched} | {saved} |"
        )
    machine = result["machine"]
    lines += [
        "",
        f"Making one patch of this document (pure-Python Fossil, `utf8_safe`): "
        f"{result['patch_us']} us median; the hub makes one per publication per encoding "
        "in a channel with delta subscribers, whatever their number.",
        "",
        f"Machine: {machine['platform']}, {machine['cpus']} CPUs, Python {machine['python']}; "
        f"{result['when']}.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--publications", type=int, default=500)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 20 publications")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    count = 20 if args.quick else args.publications
    result = asyncio.run(measure(count))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "delta.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "DELTA.md").write_text(report(result))
    print(report(result))
    return result


if __name__ == "__main__":
    main()
