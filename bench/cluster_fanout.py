#!/usr/bin/env python3
"""Cross-instance fan-out: 2 server processes on one Redis, one hot channel.

Starts an embedded Valkey and two `run.py` processes (one worker each), connects
SUBSCRIBERS clients split evenly across both instances (loader processes using
the picows client), then publishes through instance A at each rate of a ramp.
Half the deliveries cross instances through Redis. For every step it reports
deliveries per second, latency percentiles (from the send timestamp in each
payload), loss, gaps and duplicates (from offsets), and server CPU per delivery.

    python bench/cluster_fanout.py --subscribers 1000 --rates 20,50,100 --out bench/results/x.json

Loopback only; every loop is bounded by the step durations.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from server.embedded import EmbeddedValkey, free_port  # noqa: E402

CHANNEL = "bench"
HELLO = b'{"id":1,"connect":{}}\n{"id":2,"subscribe":{"channel":"bench"}}'
QUANTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))
CONNECT_CONCURRENCY = 200


# -- latency histogram: 1 us .. ~100 s in log-linear buckets --------------------------


def bucket(us: float) -> int:
    if us < 1:
        return 0
    exp = int(us).bit_length() - 1
    return exp * 8 + ((int(us) >> max(exp - 3, 0)) & 7)


def bucket_floor(index: int) -> float:
    exp, sub = divmod(index, 8)
    return float((8 + sub) << exp >> 3) if exp >= 3 else float(1 << exp)


def percentile(hist: dict[int, int], q: float) -> float:
    total = sum(hist.values())
    if not total:
        return float("nan")
    seen, rank = 0, q * total
    for index in sorted(hist):
        seen += hist[index]
        if seen >= rank:
            return bucket_floor(index) / 1000.0  # ms
    return bucket_floor(max(hist)) / 1000.0


# -- subscribers (run in loader processes) --------------------------------------------


def loader(urls: list[str], count: int, ready: Any, control: Any, results: Any) -> None:
    """Holds `count` subscribed connections; reports per-step counts when told to stop."""
    from picows import WSListener, WSMsgType, ws_connect

    steps: dict[int, dict[str, Any]] = {}
    offsets: list[int] = [0] * count
    gaps = [0]
    dups = [0]

    class Sub(WSListener):
        def __init__(self, index: int) -> None:
            self.index = index
            self.subscribed = asyncio.get_running_loop().create_future()

        def on_ws_connected(self, transport: Any) -> None:
            transport.send(WSMsgType.TEXT, HELLO)

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type != WSMsgType.TEXT:
                return
            now = time.time_ns()
            for line in frame.get_payload_as_bytes().split(b"\n"):
                message = json.loads(line)
                push = message.get("push")
                if push is None:
                    if message.get("id") == 2 and not self.subscribed.done():
                        if "error" in message:
                            self.subscribed.set_exception(RuntimeError(f"subscribe: {message}"))
                        else:
                            self.subscribed.set_result(message)
                    elif not message:
                        transport.send(WSMsgType.TEXT, b"{}")  # pong
                    continue
                pub = push.get("pub")
                if pub is None:
                    continue
                data, offset = pub["data"], pub.get("offset", 0)
                last = offsets[self.index]
                if last and offset != last + 1:
                    if offset <= last:
                        dups[0] += 1
                    else:
                        gaps[0] += offset - last - 1
                offsets[self.index] = max(last, offset)
                step = steps.setdefault(data["step"], {"count": 0, "hist": {}})
                step["count"] += 1
                b = bucket((now - data["ts"]) / 1000.0)
                step["hist"][b] = step["hist"].get(b, 0) + 1

    async def main() -> None:
        sem = asyncio.Semaphore(CONNECT_CONCURRENCY)
        transports = []

        async def one(i: int) -> None:
            async with sem:
                transport, listener = await ws_connect(
                    lambda: Sub(i), urls[i % len(urls)], enable_auto_pong=True
                )
                transports.append(transport)
                await asyncio.wait_for(listener.subscribed, 30)

        await asyncio.gather(*(one(i) for i in range(count)))
        ready.put(count)
        while control.empty():
            await asyncio.sleep(0.1)
        results.put({"steps": steps, "gaps": gaps[0], "duplicates": dups[0]})
        for t in transports:
            t.disconnect()

    asyncio.run(main())


# -- publisher -----------------------------------------------------------------------


async def publish_ramp(url: str, rates: list[int], step_seconds: float, pad: int) -> list[dict]:
    from picows import WSListener, WSMsgType, ws_connect

    class Pub(WSListener):
        def __init__(self) -> None:
            self.acked = 0
            self.errors = 0
            self.connected = asyncio.get_running_loop().create_future()

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            for line in frame.get_payload_as_bytes().split(b"\n"):
                message = json.loads(line)
                if message.get("id") == 1 and not self.connected.done():
                    self.connected.set_result(None)
                elif "error" in message:
                    self.errors += 1
                elif "publish" in message:
                    self.acked += 1
                elif not message:
                    transport.send(WSMsgType.TEXT, b"{}")

    transport, listener = await ws_connect(Pub, url)
    transport.send(WSMsgType.TEXT, b'{"id":1,"connect":{}}')
    await listener.connected
    loop = asyncio.get_running_loop()
    steps, cmd_id = [], 1
    padding = "x" * pad
    for index, rate in enumerate(rates):
        sent, start = 0, loop.time()
        while (elapsed := loop.time() - start) < step_seconds:
            due = int(elapsed * rate) + 1
            lines = []
            while sent < due:
                cmd_id += 1
                data = {"ts": time.time_ns(), "step": index, "p": padding}
                command = {"id": cmd_id, "publish": {"channel": CHANNEL, "data": data}}
                lines.append(json.dumps(command))
                sent += 1
            if lines:
                transport.send(WSMsgType.TEXT, "\n".join(lines).encode())
            await asyncio.sleep(0.002)
        steps.append({"rate": rate, "published": sent, "seconds": loop.time() - start})
    await asyncio.sleep(2.0)  # drain
    transport.disconnect()
    return steps


# -- orchestration -------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(port: int, redis_url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSFAN_")}
    env.update(
        REDIS_URL=redis_url,
        WSFAN_EMBEDDED__ENABLED="false",
        WSFAN_LOG__LEVEL="warning",
        WSFAN_REDIS__PREFIX="bench",
        # A broadcast channel: history and recovery on, join/leave and presence off
        # (with them on, N subscribers joining cost N*N join pushes).
        WSFAN_CHANNELS__JOIN_LEAVE="false",
        WSFAN_CHANNELS__PRESENCE="false",
        # The one publisher sends up to hundreds of commands a second: no rate limit.
        WSFAN_CLIENT__COMMAND_RATE="0",
    )
    env.pop("MONGO_URL", None)
    cmd = [sys.executable, str(ROOT / "run.py"), "--port", str(port), "--workers", "1"]
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb")
    )


def wait_healthy(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server on {port} not healthy")


def run(args: argparse.Namespace) -> dict[str, Any]:
    rates = [int(r) for r in args.rates.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    with EmbeddedValkey(work / "valkey") as valkey:
        ports = [free_port(), free_port()]
        servers = [
            start_server(p, valkey.url, work / f"server{i}.log") for i, p in enumerate(ports)
        ]
        try:
            for port in ports:
                wait_healthy(port)
            urls = [f"ws://127.0.0.1:{p}/connection/websocket" for p in ports]
            ctx = mp.get_context("spawn")
            ready, control, results = ctx.Queue(), ctx.Queue(), ctx.Queue()
            shares = [args.subscribers // args.loaders] * args.loaders
            shares[0] += args.subscribers - sum(shares)
            loaders = [
                ctx.Process(target=loader, args=(urls, n, ready, control, results)) for n in shares
            ]
            t0 = time.monotonic()
            for p in loaders:
                p.start()
            connected = sum(ready.get(timeout=300) for _ in loaders)
            connect_seconds = time.monotonic() - t0
            cpu_before = [cpu_seconds(s.pid) for s in servers] + [cpu_seconds(valkey.pid or 0)]
            steps = asyncio.run(publish_ramp(urls[0], rates, args.step, args.pad))
            cpu_after = [cpu_seconds(s.pid) for s in servers] + [cpu_seconds(valkey.pid or 0)]
            for _ in loaders:
                control.put("stop")
            reports = [results.get(timeout=60) for _ in loaders]
            for p in loaders:
                p.join(30)
        finally:
            for s in servers:
                s.terminate()
                s.wait(10)
    out_steps = []
    for index, step in enumerate(steps):
        count = sum(r["steps"].get(index, {}).get("count", 0) for r in reports)
        hist: dict[int, int] = {}
        for r in reports:
            for b, n in r["steps"].get(index, {}).get("hist", {}).items():
                hist[int(b)] = hist.get(int(b), 0) + n
        expected = step["published"] * connected
        out_steps.append(
            {
                "publish_rate": step["rate"],
                "published": step["published"],
                "expected_deliveries": expected,
                "deliveries": count,
                "loss": expected - count,
                "deliveries_per_second": round(count / step["seconds"]),
                "latency_ms": {name: percentile(hist, q) for name, q in QUANTILES},
            }
        )
    total = sum(s["deliveries"] for s in out_steps)
    cpu = [round(a - b, 2) for a, b in zip(cpu_after, cpu_before, strict=True)]
    return {
        "scenario": "cluster_fanout",
        "subscribers": connected,
        "instances": 2,
        "payload_pad": args.pad,
        "channel_options": "history 100, recovery on, join_leave off, presence off",
        "note": "servers, Valkey, subscriber loaders and publisher share the machine's cores",
        "connect_seconds": round(connect_seconds, 2),
        "steps": out_steps,
        "gaps": sum(r["gaps"] for r in reports),
        "duplicates": sum(r["duplicates"] for r in reports),
        "server_cpu_seconds": cpu[:2],
        "valkey_cpu_seconds": cpu[2],
        "server_cpu_us_per_delivery": round(sum(cpu[:2]) / total * 1e6, 2) if total else None,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--rates", default="10,20,50,100", help="publications per second, per step")
    parser.add_argument("--step", type=float, default=5.0, help="seconds per step")
    parser.add_argument("--loaders", type=int, default=2, help="subscriber processes")
    parser.add_argument("--pad", type=int, default=40, help="padding bytes (~100-byte payload)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    count, seconds = result["subscribers"], result["connect_seconds"]
    print(f"{count} subscribers on 2 instances, connected in {seconds} s")
    print(f"{'rate/s':>7} {'deliv/s':>9} {'loss':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for s in result["steps"]:
        lat = s["latency_ms"]
        print(
            f"{s['publish_rate']:>7} {s['deliveries_per_second']:>9} {s['loss']:>7} "
            f"{lat['p50']:>8.2f} {lat['p99']:>8.2f} {lat['max']:>8.2f}"
        )
    print(
        f"gaps {result['gaps']}, duplicates {result['duplicates']}, "
        f"server CPU {result['server_cpu_us_per_delivery']} us/delivery"
    )


if __name__ == "__main__":
    main()
