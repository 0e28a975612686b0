#!/usr/bin/env python3
"""Never-reading clients asking for large answers: what they cost the server.

One `run.py --workers 1` process on loopback, with its own embedded Valkey and
SecantusDB. A channel gets COUNT publications of SIZE bytes (through the HTTP
API). Then ATTACKERS raw WebSocket connections (a 4 KB receive buffer) each send
connect and one `history` request with limit LIMIT, and never read. Meanwhile a
normal client measures its command round trips (a publish, awaited reply) and
the server's resident memory is sampled from /proc/<pid>/status.

Reported: RSS before, at peak and after (MB), the peak's growth, the normal
client's round-trip p50/p99/max (ms), and how each attacker ended (closed with
3008, got a history reply cut short, or got everything it asked for).

    python bench/attacks_replies.py                      # 20 attackers, 200 x 60 KB
    python bench/attacks_replies.py --attackers 5 --json

Loopback only; every loop is bounded in count and time, and the processes
started here are stopped by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wsfan.api.keys import DEVELOPMENT_KEY  # noqa: E402
from wsfan.embedded import EmbeddedSecantus, EmbeddedValkey, free_port  # noqa: E402

from tests.attack import rss  # noqa: E402
from tests.raw_ws import RawWebSocket  # noqa: E402

CHANNEL = "big"
READY_TIMEOUT = 30.0


@dataclass
class Outcome:
    rss_before_mb: float = 0.0
    rss_peak_mb: float = 0.0
    rss_after_mb: float = 0.0
    rtt_ms: dict[str, float] = field(default_factory=dict)
    attackers: dict[str, int] = field(default_factory=dict)  # closed_3008 / cut / full / other

    @property
    def growth_mb(self) -> float:
        return self.rss_peak_mb - self.rss_before_mb


def rss_mb(pid: int) -> float:
    """Resident memory of `pid` (VmRSS), in MB."""
    return rss(pid) / 2**20


def api_publish(port: int, channel: str, data: Any) -> None:
    body = json.dumps({"channel": channel, "data": data}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/publish",
        data=body,
        headers={"X-API-Key": DEVELOPMENT_KEY, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.loads(response.read())
    if "error" in answer:
        raise RuntimeError(f"publish failed: {answer}")


def wait_ready(proc: subprocess.Popen[bytes], port: int, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"run.py exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"run.py not ready within {timeout:g} s")


@contextmanager
def server(env: Mapping[str, str], log_path: Path) -> Iterator[tuple[int, int]]:
    """run.py --workers 1 on a free loopback port: (pid, port); stopped by PID after."""
    port = free_port()
    with log_path.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "run.py"), "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        wait_ready(proc, port)
        yield proc.pid, port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def server_env(redis_url: str, mongo_url: str, count: int, **extra: str) -> dict[str, str]:
    """The environment of the attacked server: its own key prefix, history of `count`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("REDIS_URL", "MONGO_URL") and not k.startswith("WSFAN_")
    }
    env.update(
        REDIS_URL=redis_url,
        MONGO_URL=mongo_url,
        WSFAN_SERVER__WORKERS="1",
        WSFAN_REDIS__PREFIX=f"attack-{uuid.uuid4().hex[:8]}:",
        WSFAN_CHANNELS__HISTORY_SIZE=str(count),
        WSFAN_CLIENT__COMMAND_RATE="0",
        WSFAN_STATS__INTERVAL="0",
    )
    env.update(extra)
    return env


class Reader(RawWebSocket):
    """A raw WebSocket whose reads stay linear in the frame's size (megabytes here)."""

    def __init__(self, sock: Any) -> None:
        super().__init__(sock)
        self._data = bytearray()

    async def _fill(self) -> bool:
        chunk = await self._loop.sock_recv(self.sock, 1 << 20)
        self._data += chunk
        return bool(chunk)

    async def _read_until(self, marker: bytes) -> bytes:
        while marker not in self._data:
            if not await self._fill():
                raise ConnectionError("closed during the handshake")
        end = self._data.index(marker)
        head = bytes(self._data[:end])
        del self._data[: end + len(marker)]
        return head

    async def _read_exact(self, n: int) -> bytes | None:
        while len(self._data) < n:
            if not await self._fill():
                return None
        out = bytes(self._data[:n])
        del self._data[:n]
        return out


async def attacker(port: int, limit: int) -> RawWebSocket:
    """Connects, asks for `limit` publications of CHANNEL in one frame, never reads."""
    ws = await Reader.open(port, rcvbuf=4096)
    commands = [
        {"id": 1, "connect": {}},
        {"id": 2, "history": {"channel": CHANNEL, "limit": limit}},
    ]
    await ws.send("\n".join(json.dumps(c) for c in commands).encode())
    return ws


async def ending(ws: RawWebSocket, available: int, timeout: float) -> str:
    """Read what the attacker was sent: "closed_3008", "cut" (a history reply with
    fewer than the `available` publications), "full", or "other"."""
    try:
        while True:
            frame = await asyncio.wait_for(ws.recv_frame(), timeout)
            if frame is None:
                return "other"
            opcode, payload = frame
            if opcode == 0x8:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 0
                return "closed_3008" if code == 3008 else f"closed_{code}"
            for line in payload.split(b"\n"):
                message = json.loads(line)
                if message.get("id") == 2:
                    got = len(message.get("history", {}).get("publications", []))
                    return "full" if got >= available else "cut"
    except (TimeoutError, ConnectionError):
        return "other"
    finally:
        ws.close()


async def round_trips(port: int, until: float, most: int = 5000) -> list[float]:
    """A normal client's publish round trips (seconds) until `until` (loop time)."""
    ws = await Reader.open(port)
    loop = asyncio.get_running_loop()
    try:
        await ws.send(b'{"id":1,"connect":{}}')
        await asyncio.wait_for(ws.recv_frame(), 10)
        times: list[float] = []
        for i in range(2, most):
            if loop.time() >= until:
                break
            started = time.perf_counter()
            await ws.send(json.dumps({"id": i, "publish": {"channel": "rtt", "data": i}}).encode())
            while True:
                frame = await asyncio.wait_for(ws.recv_frame(), 10)
                assert frame is not None
                if f'"id":{i}'.encode() in frame[1]:
                    break
            times.append(time.perf_counter() - started)
            await asyncio.sleep(0.005)
        return times
    finally:
        ws.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def attack(
    pid: int,
    port: int,
    attackers: int = 20,
    limit: int = 1000,
    available: int = 200,
    duration: float = 5.0,
    read_timeout: float = 20.0,
) -> Outcome:
    """The attack on a ready server whose CHANNEL holds `available` publications."""
    outcome = Outcome()
    loop = asyncio.get_running_loop()
    await round_trips(port, loop.time() + 0.5)  # warm up: first commands, first publish
    outcome.rss_before_mb = peak = rss_mb(pid)
    until = loop.time() + duration
    measuring = asyncio.ensure_future(round_trips(port, until))
    sockets = []
    for _ in range(attackers):
        sockets.append(await attacker(port, limit))
        peak = max(peak, rss_mb(pid))
    while loop.time() < until:
        await asyncio.sleep(0.05)
        peak = max(peak, rss_mb(pid))
    times = await measuring
    outcome.rss_peak_mb = max(peak, rss_mb(pid))
    outcome.rss_after_mb = rss_mb(pid)
    outcome.rtt_ms = {
        "count": len(times),
        "p50": round(percentile(times, 0.5) * 1000, 2),
        "p99": round(percentile(times, 0.99) * 1000, 2),
        "max": round(max(times) * 1000, 2),
    }
    wanted = min(limit, available)
    endings = await asyncio.gather(*(ending(ws, wanted, read_timeout) for ws in sockets))
    for end in endings:
        outcome.attackers[end] = outcome.attackers.get(end, 0) + 1
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--attackers", type=int, default=20)
    parser.add_argument("--count", type=int, default=200, help="publications in the channel")
    parser.add_argument("--size", type=int, default=60_000, help="bytes of each publication")
    parser.add_argument("--limit", type=int, default=1000, help="history limit asked for")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured")
    parser.add_argument("--json", action="store_true", help="print the outcome as JSON")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="wsfan-attack-") as tmp:
        base = Path(tmp)
        with (
            EmbeddedValkey(base / "valkey", persist=False) as valkey,
            EmbeddedSecantus(base / "secantus", persist=False) as secantus,
        ):
            env = server_env(valkey.url, secantus.url, args.count)
            with server(env, base / "run.stderr") as (pid, port):
                pad = "x" * args.size
                for i in range(args.count):
                    api_publish(port, CHANNEL, {"i": i, "pad": pad})
                outcome = asyncio.run(
                    attack(pid, port, args.attackers, args.limit, args.count, args.duration)
                )
    if args.json:
        print(json.dumps({**asdict(outcome), "growth_mb": round(outcome.growth_mb, 1)}))
    else:
        print(
            f"attackers {args.attackers}, {args.count} x {args.size} B, limit {args.limit}\n"
            f"RSS MB: before {outcome.rss_before_mb:.1f}, peak {outcome.rss_peak_mb:.1f} "
            f"(+{outcome.growth_mb:.1f}), after {outcome.rss_after_mb:.1f}\n"
            f"round trip ms: {outcome.rtt_ms}\n"
            f"attackers: {outcome.attackers}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
