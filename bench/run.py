#!/usr/bin/env python3
"""Benchmark scenarios, run by the load tester: `python bench/run.py [NAME ...]`.

Each scenario starts its own embedded Valkey and one or two `run.py` processes
(one worker each, Redis broker, history and recovery on, join/leave and
presence off), drives them with `server.loadtest`, and writes
`bench/results/<name>.json` and `<name>.html`; then `bench/results/SUMMARY.md`
is rebuilt from every result present. Without names, every scenario runs.

Everything shares one machine: servers, Valkey and the load generator. The
figures are lower bounds for the server, and the generator's own CPU is in
each result so a saturated generator shows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from server.embedded import EmbeddedValkey, free_port  # noqa: E402
from server.loadtest import Options, run  # noqa: E402
from server.loadtest.report import format_table, write_html, write_json  # noqa: E402

RESULTS = ROOT / "bench" / "results"


@dataclass(frozen=True)
class Scenario:
    name: str
    about: str
    options: dict[str, Any]
    instances: int = 1
    env: dict[str, str] = field(default_factory=dict)


SCENARIOS = [
    Scenario(
        "broadcast_1k",
        "1,000 subscribers on one hot channel, ramp of publication rates",
        {"clients": 1000, "rates": (10.0, 20.0, 50.0, 100.0), "duration": 5.0},
    ),
    Scenario(
        "broadcast_10k",
        "10,000 subscribers on one hot channel, connected at 2,000/s",
        {"clients": 10000, "ramp": 2000.0, "rates": (1.0, 2.0, 5.0), "duration": 5.0},
    ),
    Scenario(
        "many_channels",
        "2,000 clients over 200 channels (10 each), publications round-robin",
        {
            "clients": 2000,
            "layout": "channels",
            "channels": 200,
            "rates": (200.0, 500.0, 1000.0),
            "duration": 5.0,
        },
    ),
    Scenario(
        "connection_storm",
        "5,000 clients connecting and subscribing as fast as they can, nothing published",
        {"clients": 5000, "connect_concurrency": 250, "rates": (0.0,), "duration": 2.0},
    ),
    Scenario(
        "churn",
        "1,000 subscribers, 50 per second disconnect and come back recovering",
        {
            "clients": 1000,
            "rates": (20.0,),
            "duration": 10.0,
            "churn": 50.0,
            "churn_downtime": 0.5,
        },
    ),
    Scenario(
        "cluster_fanout",
        "2 server processes on one Valkey, 1,000 subscribers split across them, "
        "publisher on the first: half the deliveries cross instances",
        {"clients": 1000, "rates": (10.0, 20.0, 50.0, 100.0), "duration": 5.0},
        instances=2,
    ),
]
BY_NAME = {s.name: s for s in SCENARIOS}


# Servers -----------------------------------------------------------------------------


def start_server(
    port: int, redis_url: str, log: Path, extra: dict[str, str]
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSFAN_")}
    env.pop("MONGO_URL", None)
    env.update(
        REDIS_URL=redis_url,
        WSFAN_EMBEDDED__ENABLED="false",
        WSFAN_LOG__LEVEL="warning",
        WSFAN_REDIS__PREFIX="bench",
        # A broadcast channel: history and recovery on, join/leave and presence off
        # (with them on, N subscribers joining cost N*N join pushes).
        WSFAN_CHANNELS__JOIN_LEAVE="false",
        WSFAN_CHANNELS__PRESENCE="false",
        # Load publishers send far more than a browser: no per-connection command
        # rate, and room for 10,000 subscribers plus publishers in one process.
        WSFAN_CLIENT__COMMAND_RATE="0",
        WSFAN_SERVER__MAX_CONNECTIONS="20000",
        **extra,
    )
    cmd = [sys.executable, str(ROOT / "run.py"), "--port", str(port), "--workers", "1"]
    with log.open("wb") as err:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)


def wait_healthy(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server on {port} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server on {port} not healthy within {timeout:g} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# Running -------------------------------------------------------------------------------


def run_scenario(scenario: Scenario, out_dir: Path, progress: bool) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"bench-{scenario.name}-"))
    with EmbeddedValkey(work / "valkey", persist=False) as valkey:
        ports = [free_port() for _ in range(scenario.instances)]
        servers = [
            start_server(port, valkey.url, work / f"server{i}.log", scenario.env)
            for i, port in enumerate(ports)
        ]
        try:
            for port, proc in zip(ports, servers, strict=True):
                wait_healthy(port, proc)
            options = replace(
                Options(),
                urls=tuple(f"ws://127.0.0.1:{p}/connection/websocket" for p in ports),
                channel_prefix="bench",
                server_pids=(*(s.pid for s in servers), valkey.pid or 0),
                progress=progress,
                label=scenario.name,
                extra={
                    "scenario": scenario.about,
                    "instances": scenario.instances,
                    "server_pids_are": "run.py instances, then Valkey",
                    "channel_options": "history 100, recovery on, join_leave off, presence off",
                },
                **scenario.options,
            )
            result = run(options.checked())
        finally:
            for proc in servers:
                stop(proc)
    write_json(result, out_dir / f"{scenario.name}.json")
    write_html(result, out_dir / f"{scenario.name}.html")
    return result


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def summary(out_dir: Path) -> str:
    """A Markdown table of every result in `out_dir`, one row per rate step."""
    rows = [
        "| scenario | clients | connect/s | connect p99 ms | pub/s | offered/s | delivered/s "
        "| loss | gaps/dups | p50 ms | p99 ms | max ms | generator us/deliv | server us/deliv |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    machine = None
    for path in sorted(out_dir.glob("*.json")):
        r = json.loads(path.read_text())
        if r.get("tool") != "wsfan loadtest":
            continue
        machine = machine or r["machine"]
        c, d = r["clients"], r["deliveries"]
        gen = r["generator"]["cpu_us_per_delivery"]
        srv = (r.get("server") or {}).get("cpu_us_per_delivery")
        head = (
            f"| {r['label']} | {c['subscribed']:,}/{c['target']:,} "
            f"| {c['connections_per_second']:,.0f} | {_ms(c['connect_ms']['p99'])} "
        )
        tail = f"| {_ms(gen)} | {_ms(srv)} |"
        for s in r["steps"] or [None]:
            if s is None or not s["rate"]:
                rows.append(
                    f"{head}| - | - | - | - | {d['gaps']}/{d['duplicates']} | - | - | - {tail}"
                )
                continue
            lat = s["latency_ms"]
            rows.append(
                f"{head}| {s['rate']:g} | {s['offered_per_second']:,.0f} "
                f"| {s['deliveries_per_second']:,.0f} | {s['loss']:,} "
                f"| {d['gaps']}/{d['duplicates']} | {_ms(lat['p50'])} | {_ms(lat['p99'])} "
                f"| {_ms(lat['max'])} {tail}"
            )
    text = "\n".join(rows) + "\n"
    if machine:
        text = (
            f"Machine: {machine.get('cpus')} CPUs ({machine.get('cpu_model', '?')}), "
            f"{machine.get('memory_gib', '?')} GiB, Python {machine.get('python')}, "
            f"{machine.get('platform')}.\n\n" + text
        )
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="scenarios to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("-q", "--quiet", action="store_true", help="no live progress line")
    args = parser.parse_args(argv)
    if args.list:
        for s in SCENARIOS:
            print(f"{s.name:18} {s.about}")
        return 0
    unknown = [n for n in args.names if n not in BY_NAME]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)} (see --list)")
    for name in args.names or list(BY_NAME):
        scenario = BY_NAME[name]
        print(f"== {name}: {scenario.about}", flush=True)
        result = run_scenario(scenario, args.out_dir, progress=not args.quiet)
        print(format_table(result) + "\n", flush=True)
    text = summary(args.out_dir)
    (args.out_dir / "SUMMARY.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
