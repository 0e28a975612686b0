#!/usr/bin/env python3
"""What one hostile WebSocket client costs the server: RSS growth and another
client's round trip while it attacks.

For each attack, a fresh `run.py --workers 1` (memory broker, no embedded
servers, loopback) is started; a normal client measures `publish` round trips
alone (baseline), then again while one attacker (a thread with a blocking
socket and a 4 KB receive buffer, never reading) sends for SECONDS:

- `none`: an idle connection, for comparison;
- `ping_flood`: 125-byte pings, back to back (issue 14, item 1);
- `empty_ping_flood`: empty pings (the most frames per byte);
- `fragment_flood`: a non-final text frame, then empty non-final continuations
  (item 2);
- `tiny_frames`: `{}` text frames (a message each, which the command limiter
  does not count: `{}` is the client's pong).

The server's RSS is sampled every 20 ms from /proc; the figures are the
growth from before the attack to the peak during it, the normal client's p99
round trip, the server's CPU use (from /proc, the normal client's share
included), and how the attacker ended (dropped by the server, or still
connected when time was up).

    python bench/attacks_ws.py                   # prints a markdown table
    python bench/attacks_ws.py --seconds 5 --only ping_flood

Run on demand, never in the test suite. The attack stops after SECONDS (and
at once if the server passes --max-rss MB), so an unfixed server cannot run
the machine out of memory.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import attack  # noqa: E402
from tests.processes import clean_env, running  # noqa: E402

ATTACKS: dict[str, Callable[[], tuple[bytes, bytes]]] = {
    "none": lambda: (b"", b""),  # an idle connection: the figures without an attack
    "ping_flood": lambda: (b"", attack.ping_flood_chunk()),
    "empty_ping_flood": lambda: (b"", attack.ping_flood_chunk(b"")),
    "fragment_flood": attack.fragment_flood,
    "tiny_frames": lambda: (b"", attack.tiny_frame_chunk()),
}

ENV = {
    "WSFAN_EMBEDDED__ENABLED": "false",
    "WSFAN_BROKER__TYPE": "memory",
    "WSFAN_LOG__LEVEL": "warning",
    "WSFAN_CLIENT__COMMAND_RATE": "0",  # the measuring client sends 200 commands a second
}


def measure(name: str, seconds: float, max_rss: int) -> dict[str, object]:
    prefix, chunk = ATTACKS[name]()
    with tempfile.TemporaryDirectory() as tmp, running(Path(tmp), clean_env(**ENV)) as server:
        server.wait_ready()
        pid = server.proc.pid
        baseline = attack.round_trips(server.port, min(seconds, 2.0))
        flood = attack.Flood(server.port, chunk, seconds, prefix=prefix)
        rtts: list[float] = []
        guard = threading.Event()

        def watch_memory() -> None:  # an unfixed server must not eat the machine
            while flood.is_alive() and not guard.wait(0.05):
                if attack.rss(pid) > max_rss:
                    server.proc.kill()
                    return

        with attack.RssWatch(pid) as memory:
            cpu = attack.cpu_seconds(pid)
            start = time.perf_counter()
            flood.start()
            threading.Thread(target=watch_memory, daemon=True).start()
            try:
                rtts = attack.round_trips(server.port, seconds)
            except (ConnectionError, OSError) as exc:
                print(f"{name}: the normal client failed: {exc!r}", file=sys.stderr)
            flood.join()
            guard.set()
            cpu = (attack.cpu_seconds(pid) - cpu) / (time.perf_counter() - start)
        dropped = "no"
        if flood.ended_at:
            dropped = f"{flood.outcome} after {flood.ended_at - start:.1f} s"
        flood.close()
        return {
            "attack": name,
            "seconds": seconds,
            "rss_before_mb": memory.before / 2**20,
            "rss_growth_mb": memory.growth / 2**20,
            "sent_mb": flood.sent / 2**20,
            "baseline_p99_ms": attack.p99(baseline) * 1000,
            "p99_ms": attack.p99(rtts) * 1000 if rtts else float("nan"),
            "round_trips": len(rtts),
            "server_cpu": cpu * 100,
            "dropped": dropped,
        }


def table(rows: list[dict[str, object]]) -> str:
    lines = [
        "| attack | s | RSS before MB | RSS growth MB | attacker sent MB "
        "| normal p99 alone ms | normal p99 during ms | round trips | server CPU % "
        "| attacker dropped |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['attack']} | {r['seconds']:g} | {r['rss_before_mb']:.0f} "
            f"| {r['rss_growth_mb']:.1f} | {r['sent_mb']:.0f} | {r['baseline_p99_ms']:.1f} "
            f"| {r['p99_ms']:.1f} | {r['round_trips']} | {r['server_cpu']:.0f} "
            f"| {r['dropped']} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--only", choices=sorted(ATTACKS), action="append")
    parser.add_argument("--max-rss", type=int, default=1500, help="MB; kill the server past it")
    args = parser.parse_args()
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    rows = [measure(name, args.seconds, args.max_rss * 2**20) for name in args.only or ATTACKS]
    print(
        f"{time.strftime('%Y-%m-%d')}, commit {commit}, {platform.machine()}, Python "
        f"{platform.python_version()}"
    )
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
