#!/usr/bin/env python3
"""Benchmark scenarios, run by the load tester: `python bench/run.py [NAME ...]`.

Each scenario starts its own servers (one or two `run.py` processes with the
memory or the Redis broker, an embedded Valkey for the latter, or the raw
picows baseline `bench/baseline_picows.py`), drives them with
`wsfan.loadtest`, and writes `bench/results/<name>.json` and `<name>.html`.
Then `bench/results/SUMMARY.md` (every step of every result present) and
`TABLE.md` / `TABLE.json` (the issue's field table with our rows, and its
targets) are rebuilt from the results present. Without names, the default
set runs (`--list` shows which).

Pinning, as in the issue's set-up: the servers and Valkey on the first half of
the CPUs (CPU 0 of 2), the load generator on the rest (CPU 1); `--no-pin` to
share every CPU. The machine's other work still shares them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wsfan.embedded import EmbeddedValkey, free_port  # noqa: E402
from wsfan.loadtest import Options, run  # noqa: E402
from wsfan.loadtest.report import format_table, write_html, write_json  # noqa: E402

from bench.summary import summary  # noqa: E402
from bench.table import render  # noqa: E402

RESULTS = ROOT / "bench" / "results"
# publications/s to 1,000 subscribers; the first step warms up (see bench/table.py)
RAMP_1K = (20.0, 20.0, 20.0, 20.0, 50.0, 100.0, 125.0, 150.0, 175.0, 200.0, 250.0)
RAMP_10K = (2.0, 5.0, 10.0, 20.0, 30.0)  # publications/s, 10,000 subscribers
QUICK = {"duration": 1.0, "drain": 1.0, "drain_max": 10.0}  # --quick: shorter steps
FANOUT = {"clients": 1000, "rates": RAMP_1K, "duration": 3.0, "drain_max": 30.0}
# Every stream subscriber sends its subscribe (and its pongs) through /emulation
# from one address, loopback: no per-address rate for them.
STREAM_ENV = {"WSFAN_TRANSPORTS__EMULATION_RATE": "0"}
CAPACITY = {
    "clients": 10000,
    "ramp": 2000.0,
    "rates": RAMP_10K,
    "duration": 3.0,
    "drain_max": 30.0,
}

# 5,000 clients connecting and subscribing, 250 at a time, nothing published.
STORM = {"clients": 5000, "connect_concurrency": 250, "rates": (0.0,), "duration": 2.0}

# An application's shape (issue 20): each client on 5 of 2,000 channels drawn
# uniformly (about 25 subscribers a channel), publications Zipf-skewed over the
# channels so channel 0 takes about 12% of them (1/H(2000), s = 1.0). Rates are
# publications/s in total, each delivered to its channel's subscribers: about
# 25 deliveries a publication, so 1,000/s is about 25,000 deliveries/s.
MANY_ZIPF = {
    "clients": 10000,
    "ramp": 2000.0,
    "layout": "zipf",
    "channels": 2000,
    "channels_per_client": 5,
    "zipf": 1.0,
    "rates": (200.0, 500.0, 1000.0),
    "duration": 5.0,
    "drain_max": 30.0,
}


@dataclass(frozen=True)
class Scenario:
    name: str
    about: str
    options: dict[str, Any]
    server: str = "wsfan"  # or "picows": bench/baseline_picows.py
    broker: str = "redis"  # wsfan's broker.type
    instances: int = 1
    default: bool = True  # in the set run without names
    env: dict[str, str] = field(default_factory=dict)
    # bench/proxy_backend.py runs beside the server (on the generator's CPUs), and
    # these [proxy] endpoints point at it: ("connect", "publish", ...).
    proxied: tuple[str, ...] = ()


SCENARIOS = [
    Scenario("picows_1k", "raw picows broadcast, 1,000 subscribers, one channel", FANOUT, "picows"),
    Scenario(
        "fanout_memory",
        "1 process, memory broker, 1,000 subscribers, one channel",
        FANOUT,
        broker="memory",
    ),
    Scenario("fanout_redis", "1 process, Redis broker, 1,000 subscribers, one channel", FANOUT),
    Scenario(
        "fanout_sse_1k",
        "fanout_redis with the subscribers on SSE (GET /connection/sse, subscribe and "
        "pongs through POST /emulation); publishers on WebSocket",
        {**FANOUT, "transport": "sse"},
        default=False,
        env=STREAM_ENV,
    ),
    Scenario(
        "fanout_http_stream_1k",
        "fanout_redis with the subscribers on HTTP-streaming (POST /connection/http_stream, "
        "subscribe and pongs through POST /emulation); publishers on WebSocket",
        {**FANOUT, "transport": "http_stream"},
        default=False,
        env=STREAM_ENV,
    ),
    Scenario(
        "fanout_2workers",
        "2 server processes on one Valkey, 1,000 subscribers split across them, "
        "publishers on the first: half the deliveries cross instances",
        FANOUT,
        instances=2,
    ),
    Scenario(
        "picows_10k", "raw picows broadcast, 10,000 subscribers, one channel", CAPACITY, "picows"
    ),
    Scenario("capacity_10k", "1 process, Redis broker, 10,000 subscribers, one channel", CAPACITY),
    Scenario(
        "capacity_10k_memory",
        "1 process, memory broker, 10,000 subscribers, one channel",
        CAPACITY,
        broker="memory",
    ),
    Scenario(
        "capacity_10k_2workers",
        "2 server processes on one Valkey, 10,000 subscribers split across them",
        CAPACITY,
        instances=2,
        default=False,
    ),
    Scenario(
        "connection_storm",
        "5,000 clients connecting and subscribing as fast as they can, nothing published",
        STORM,
    ),
    Scenario(
        "picows_storm",
        "the connection storm against the raw picows broadcast server (its baseline)",
        STORM,
        "picows",
        default=False,
    ),
    Scenario(
        "connection_storm_hook",
        "the connection storm, every connect answered by a Python connecting hook",
        STORM,
        default=False,
        env={"WSFAN_APP__HANDLERS": "bench.hook_app:connecting_app"},
    ),
    Scenario(
        "connection_storm_proxy",
        "the connection storm, every connect sent to an HTTP connect proxy on loopback",
        STORM,
        default=False,
        proxied=("connect",),
    ),
    Scenario(
        "fanout_publish_hook",
        "fanout_redis with every client publication allowed by a Python publishing hook",
        FANOUT,
        default=False,
        env={"WSFAN_APP__HANDLERS": "bench.hook_app:publishing_app"},
    ),
    Scenario(
        "many_channels",
        "2,000 clients over 200 channels (10 each), publications round-robin",
        {
            "clients": 2000,
            "layout": "channels",
            "channels": 200,
            "rates": (200.0, 500.0, 1000.0),
            "duration": 3.0,
        },
    ),
    Scenario(
        "fanout_redis_msgpack",
        "fanout_redis over the msgpack subprotocol (subscribers and publishers)",
        {**FANOUT, "encoding": "msgpack"},
        default=False,
    ),
    Scenario(
        "many_channels_zipf",
        "1 process, Redis broker, 10,000 clients each on 5 of 2,000 channels (one "
        "connection each), publications Zipf-skewed (s = 1.0) over the channels; JSON",
        MANY_ZIPF,
        default=False,
    ),
    Scenario(
        "many_channels_zipf_msgpack",
        "many_channels_zipf over the msgpack subprotocol",
        {**MANY_ZIPF, "encoding": "msgpack"},
        default=False,
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
]
BY_NAME = {s.name: s for s in SCENARIOS}
ALIASES = {  # earlier names of the same set-ups
    "broadcast_1k": "fanout_redis",
    "broadcast_10k": "capacity_10k",
    "cluster_fanout": "fanout_2workers",
}


# Pinning ------------------------------------------------------------------------------


def cpu_split(pin: bool) -> tuple[set[int] | None, set[int] | None]:
    """(server CPUs, generator CPUs): the first half and the rest of this process's
    CPUs; (None, None) without pinning or with a single CPU."""
    cpus = sorted(os.sched_getaffinity(0))
    if not pin or len(cpus) < 2:
        return None, None
    half = len(cpus) // 2
    return set(cpus[:half]), set(cpus[half:])


def pin_process(pid: int, cpus: set[int] | None) -> None:
    """Every thread of `pid` onto `cpus` (a thread started before the call keeps its
    own affinity otherwise)."""
    if cpus is None:
        return
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):  # a thread that just ended
            os.sched_setaffinity(int(tid), cpus)


# Servers ------------------------------------------------------------------------------


def _spawn(
    cmd: list[str], env: dict[str, str], log: Path, cpus: set[int] | None
) -> subprocess.Popen[bytes]:
    pin: Callable[[], None] | None = None
    if cpus is not None:
        pin = lambda: os.sched_setaffinity(0, cpus)  # noqa: E731
    with log.open("wb") as err:
        return subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err, preexec_fn=pin
        )


def start_wsfan(
    port: int, broker: str, redis_url: str, log: Path, extra: dict[str, str], cpus: set[int] | None
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSFAN_")}
    env.pop("MONGO_URL", None)
    env.pop("REDIS_URL", None)
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update(
        WSFAN_BROKER__TYPE=broker,
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
    return _spawn(cmd, env, log, cpus)


def start_picows(port: int, log: Path, cpus: set[int] | None) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, str(ROOT / "bench" / "baseline_picows.py"), "--port", str(port)]
    return _spawn(cmd, dict(os.environ), log, cpus)


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


@contextmanager
def servers(
    scenario: Scenario, work: Path, cpus: set[int] | None
) -> Iterator[tuple[list[int], tuple[int, ...], tuple[int, ...]]]:
    """Start the scenario's servers; yields (ports, server PIDs, the Valkey's PIDs: its
    CPU is reported apart from the server's). Everything started here is stopped on exit."""
    with ExitStack() as stack:
        redis_url, valkey_pid = "", 0
        if scenario.server == "wsfan" and scenario.broker == "redis":
            valkey = stack.enter_context(EmbeddedValkey(work / "valkey", persist=False))
            redis_url, valkey_pid = valkey.url, valkey.pid or 0
            pin_process(valkey_pid, cpus)
        env = dict(scenario.env)
        if scenario.proxied:
            backend_port = free_port()
            cmd = [sys.executable, str(ROOT / "bench" / "proxy_backend.py")]
            cmd += ["--port", str(backend_port)]
            backend = _spawn(cmd, dict(os.environ), work / "backend.log", None)
            stack.callback(stop, backend)
            for point in scenario.proxied:
                env[f"WSFAN_PROXY__{point.upper()}_ENDPOINT"] = (
                    f"http://127.0.0.1:{backend_port}/{point}"
                )
        ports = [free_port() for _ in range(scenario.instances)]
        procs = []
        for i, port in enumerate(ports):
            log = work / f"server{i}.log"
            if scenario.server == "picows":
                proc = start_picows(port, log, cpus)
            else:
                proc = start_wsfan(port, scenario.broker, redis_url, log, env, cpus)
            stack.callback(stop, proc)
            procs.append(proc)
        for port, proc in zip(ports, procs, strict=True):
            wait_healthy(port, proc)
        own = tuple(p.pid for p in procs)
        yield ports, own, ((valkey_pid,) if valkey_pid else ())


# Running ------------------------------------------------------------------------------


def scenario_options(scenario: Scenario, quick: bool) -> dict[str, Any]:
    values = dict(scenario.options)
    if quick:
        values.update(QUICK)
    return values


def run_scenario(
    scenario: Scenario, out_dir: Path, progress: bool, quick: bool, cpus: set[int] | None
) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"bench-{scenario.name}-"))
    with servers(scenario, work, cpus) as (ports, pids, beside):
        options = replace(
            Options(),
            urls=tuple(f"ws://127.0.0.1:{p}/connection/websocket" for p in ports),
            channel_prefix="bench",
            server_pids=pids,
            broker_pids=beside,
            progress=progress,
            label=scenario.name,
            extra={
                "scenario": scenario.about,
                "server": scenario.server,
                "broker": scenario.broker if scenario.server == "wsfan" else None,
                "instances": scenario.instances,
                "transport": scenario.options.get("transport", "websocket"),
                "server_pids_are": "server processes (CPU and memory)",
                "broker_pids_are": "Valkey, when it ran (CPU reported as embedded)",
                "server_cpus": sorted(cpus) if cpus else None,
                "generator_cpus": sorted(os.sched_getaffinity(0)),
                "quick": quick,
                "channel_options": "history 100, recovery on, join_leave off, presence off"
                if scenario.server == "wsfan"
                else "no history",
            },
            **scenario_options(scenario, quick),
        )
        result = run(options.checked())
    write_json(result, out_dir / f"{scenario.name}.json")
    write_html(result, out_dir / f"{scenario.name}.html")
    return result


def load_results(out_dir: Path) -> dict[str, dict[str, Any]]:
    """Every load-test result in `out_dir`, by its scenario label."""
    out = {}
    for path in sorted(out_dir.glob("*.json")):
        try:
            r = json.loads(path.read_text())
        except ValueError:
            continue
        if isinstance(r, dict) and r.get("tool") == "wsfan loadtest":
            out[r.get("label") or path.stem] = r
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("names", nargs="*", help="scenarios to run (default: the default set)")
    parser.add_argument("--all", action="store_true", help="every scenario, not only the default")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--quick", action="store_true", help="1 s steps: a smoke run")
    parser.add_argument("--no-pin", action="store_true", help="no CPU pinning")
    parser.add_argument("-q", "--quiet", action="store_true", help="no live progress line")
    args = parser.parse_args(argv)
    if args.list:
        for s in SCENARIOS:
            print(f"{s.name:26} {'default' if s.default else 'extra  '}  {s.about}")
        return 0
    names = [ALIASES.get(n, n) for n in args.names]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)} (see --list)")
    if not names:
        names = [s.name for s in SCENARIOS if s.default or args.all]
    server_cpus, generator_cpus = cpu_split(not args.no_pin)
    if generator_cpus is not None:
        os.sched_setaffinity(0, generator_cpus)  # the generator's processes inherit it
        print(
            f"pinned: servers on CPUs {sorted(server_cpus or ())}, "
            f"load generator on {sorted(generator_cpus)}"
        )
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        scenario = BY_NAME[name]
        print(f"== {name}: {scenario.about}", flush=True)
        result = run_scenario(scenario, args.out_dir, not args.quiet, args.quick, server_cpus)
        print(format_table(result) + "\n", flush=True)
    results = load_results(args.out_dir)
    (args.out_dir / "SUMMARY.md").write_text(summary(results))
    table, data = render(results)
    (args.out_dir / "TABLE.md").write_text(table)
    (args.out_dir / "TABLE.json").write_text(json.dumps(data, indent=2) + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
