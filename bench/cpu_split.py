#!/usr/bin/env python3
"""Where a delivery's CPU goes: user and kernel time of the server, per delivery.

    bench/cpu_split.py [--out bench/results/NAME/cpu_split.json] [--rounds 2]

For each server (the raw picows broadcast server, then this one with the Redis
broker) and each round, in one sitting: the server pinned to one core (an
embedded Valkey beside it), 1,000 subscribers on one channel and 20
publications/s from the load tester on the other core, and the server's user
and system CPU seconds (/proc/PID/stat) over a 15 s window after a 10 s
warm-up, divided by the deliveries expected in it (1,000 x 20/s; the load
tester's own result says whether any was lost). Kernel time is mostly the
socket writes, which both servers make alike; user time is each server's own
work around them. The figures are the server's own process, never Valkey's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wsfan.embedded import EmbeddedValkey, free_port  # noqa: E402
from wsfan.loadtest.metrics import cpu_times  # noqa: E402

from bench.run import cpu_split, pin_process, start_picows, start_wsfan, wait_healthy  # noqa: E402

CLIENTS, RATE = 1000, 20.0
WARM_UP, WINDOW = 10.0, 15.0


def server_times(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of the server so far (it must be running)."""
    times = cpu_times(pid)
    if times is None:
        raise RuntimeError(f"server {pid} is gone")
    return times


def measure(server: str, work: Path, cpus: set[int] | None) -> dict[str, Any]:
    """One round against `server` ("picows" or "wsfan")."""
    with EmbeddedValkey(work / "valkey", persist=False) as valkey:
        pin_process(valkey.pid or 0, cpus)
        port = free_port()
        log = work / f"{server}.log"
        if server == "picows":
            proc = start_picows(port, log, cpus)
        else:
            proc = start_wsfan(port, "redis", valkey.url, log, {}, cpus)
        try:
            wait_healthy(port, proc)
            out = work / f"{server}.json"
            command = [sys.executable, str(ROOT / "run.py"), "loadtest", "-q"]
            command += ["--url", f"ws://127.0.0.1:{port}/connection/websocket"]
            command += ["--clients", str(CLIENTS), "--rate", str(RATE), "--drain", "2"]
            command += ["--duration", str(WARM_UP + WINDOW + 5), "--channel-prefix", "bench"]
            command += ["--out", str(out)]
            tester = subprocess.Popen(command, stdout=subprocess.DEVNULL)
            time.sleep(WARM_UP)
            user0, system0 = server_times(proc.pid)
            started = time.monotonic()
            time.sleep(WINDOW)
            user1, system1 = server_times(proc.pid)
            seconds = time.monotonic() - started
            tester.wait()
            result = json.loads(out.read_text())
        finally:
            proc.terminate()
            proc.wait()
    deliveries = CLIENTS * RATE * seconds
    return {
        "server": server,
        "window_seconds": round(seconds, 3),
        "user_us_per_delivery": round((user1 - user0) / deliveries * 1e6, 2),
        "system_us_per_delivery": round((system1 - system0) / deliveries * 1e6, 2),
        "loss": result["deliveries"]["loss"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON result file")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    server_cpus, generator_cpus = cpu_split(True)
    if generator_cpus is not None:
        os.sched_setaffinity(0, generator_cpus)
    rounds = []
    for i in range(args.rounds):
        for server in ("picows", "wsfan") if i % 2 == 0 else ("wsfan", "picows"):
            with tempfile.TemporaryDirectory(prefix="cpu-split-") as work:
                row = measure(server, Path(work), server_cpus)
            rounds.append(row)
            print(json.dumps(row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "about": (__doc__ or "").strip(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "clients": CLIENTS,
                "rate": RATE,
                "rounds": rounds,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
