"""One result dict from what the workers reported: the JSON file's content.

Definitions:
- `expected` deliveries: for every publication the server acknowledged (or
  left unanswered by the end of the drain: `unconfirmed`, also listed as "no
  answer" among the errors), the number of clients subscribed to its channel
  when publishing began. Publications refused or lost with their connection
  are `failed` and expect nothing.
- `deliveries`: publications received with our timestamp, recovered ones
  included, duplicates excluded; `loss` = expected - deliveries.
- per step, `offered_per_second`: expected deliveries over the step's seconds;
  `deliveries_per_second`: the step's deliveries over `delivery_seconds`, from
  the step's start to its last delivery (at least the step's length). Below
  the offered rate, the server did not keep up and delivered late.
- `gaps`: offsets a client never saw (live or after recovery);
  `duplicates`: offsets it saw again.
- latency: receive time minus the send time in the payload (one clock; across
  machines it is only as good as their clock sync).
- generator CPU: user+system time of every load-test process (workers,
  publisher, coordinator) while publishing and draining, per delivery.
- per step CPU (`server_cpu_seconds`, `generator_cpu_seconds`): CPU time over
  the step's window, from its start to the next step's start; the last step's
  window ends at its last delivery (or the end of publishing, if later), so it
  holds the drain of a backlog but not the idle wait after it. Read from
  samples every quarter second, interpolated at the window's ends. Per
  delivery, that CPU over the step's deliveries: meaningful for a step the
  server kept up with (a step it fell behind in leaves work to the next window).
  `*_busy` is CPU over the window's seconds: server cores busy, and the share
  of the generator's cores (`generator.cores`, its CPU affinity) busy, where
  near 1.0 says the generator, not the server, was the limit. `other_busy`:
  cores busy with anything else on the machine (from /proc/stat), which a
  shared machine's other work shows up in (the server too, without server PIDs).
- server CPU: of every process `--server-pid` leads to (targets.py): the given
  PIDs, their forked workers and the embedded Valkey / SecantusDB they use; the
  `processes` list says which, `cpu_seconds_run_by_role` splits "server" from
  "embedded". Per-delivery, per-connection and busy figures are the server's own
  processes' (role "server"); the embedded servers' (and a `--broker-pid`'s, such as
  a Valkey beside it) are reported apart as `embedded_*`. Results written before
  2026-12-02 counted them in the server's figures.
- server memory: resident memory of the `memory_pids` (the server proper,
  without a broker such as Redis beside it) before any client connected and
  once every client was subscribed, before publishing; `kb_per_connection` is
  the difference over the subscribed clients.
"""

from __future__ import annotations

import bisect
import datetime
import os
import platform
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .. import __version__
from .metrics import Histogram, merge_counts
from .options import Options
from .targets import EMBEDDED

__all__ = ["CpuSample", "build", "cpu_at", "machine", "step_windows"]


@dataclass(frozen=True)
class CpuSample:
    """Cumulative CPU seconds at `t` (seconds since the test's t0): per server PID,
    of all load-test processes together, and of the whole machine (None where
    /proc/stat cannot be read)."""

    t: float
    server: dict[int, float]
    generator: float
    machine: float | None = None


def machine() -> dict[str, Any]:
    """What the numbers ran on."""
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            info["memory_gib"] = round(kb / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return info


def _hist(parts: list[Mapping[str, Any]]) -> Histogram:
    return Histogram.merged(Histogram.from_dict(p) for p in parts if p)


def _per_second(n: float, seconds: float) -> float:
    return round(n / seconds, 1) if seconds > 0 else 0.0


def _per_connection(cpu: float, connections: int) -> float | None:
    return round(cpu / connections * 1e6, 1) if connections else None


def cpu_at(times: Sequence[float], values: Sequence[float], t: float) -> float:
    """A cumulative CPU figure at time `t`, linear between the samples around it
    (`times` ascending), the first or last value outside them."""
    if not times:
        return 0.0
    i = bisect.bisect_left(times, t)
    if i == 0:
        return values[0]
    if i >= len(times):
        return values[-1]
    t0, t1 = times[i - 1], times[i]
    if t1 <= t0:
        return values[i]
    return values[i - 1] + (values[i] - values[i - 1]) * (t - t0) / (t1 - t0)


def _split(cpu: Mapping[int, float], embedded: Collection[int]) -> tuple[float, float]:
    """CPU seconds by PID, summed: the server's own processes', then the `embedded` ones'."""
    own = beside = 0.0
    for pid, seconds in cpu.items():
        if pid in embedded:
            beside += seconds
        else:
            own += seconds
    return own, beside


def step_windows(
    samples: Sequence[CpuSample],
    bounds: Sequence[tuple[float, float]],
    cores: int,
    embedded: Collection[int] = (),
) -> list[dict[str, float | None]]:
    """Server, embedded-server and generator CPU over each (start, end) window, from
    the samples; the server's without the `embedded` PIDs (Valkey, SecantusDB)."""
    times = [s.t for s in samples]
    split = [_split(s.server, embedded) for s in samples]
    server = [own for own, _ in split]
    beside = [other for _, other in split]
    generator = [s.generator for s in samples]
    machine = [s.machine for s in samples]
    known = all(m is not None for m in machine)
    out: list[dict[str, float | None]] = []
    for start, end in bounds:
        seconds = max(end - start, 0.0)
        srv = cpu_at(times, server, end) - cpu_at(times, server, start)
        emb = cpu_at(times, beside, end) - cpu_at(times, beside, start)
        gen = cpu_at(times, generator, end) - cpu_at(times, generator, start)
        other = None
        if known and samples and seconds > 0:
            total = [m or 0.0 for m in machine]
            busy = cpu_at(times, total, end) - cpu_at(times, total, start)
            other = round(max(busy - srv - emb - gen, 0.0) / seconds, 3)
        out.append(
            {
                "window_seconds": round(seconds, 3),
                "server_cpu_seconds": round(srv, 3),
                "server_busy": round(srv / seconds, 3) if seconds > 0 else None,
                "embedded_cpu_seconds": round(emb, 3),
                "generator_cpu_seconds": round(gen, 3),
                "generator_busy": round(gen / seconds / max(cores, 1), 3) if seconds > 0 else None,
                "other_busy": other,
            }
        )
    return out


def _bounds(
    starts: list[float], go_at: float, publish_end: float, last_delivery: float
) -> list[tuple[float, float]]:
    """Each step's window: from its start to the next one's; the last to its last
    delivery or the end of publishing, whichever is later."""
    starts = [max(t, go_at) for t in starts]
    ends = [*starts[1:], max(publish_end, last_delivery)]
    # a step that never started (publishing stopped early) gets an empty window
    return [(start, max(start, end)) for start, end in zip(starts, ends, strict=True)]


def _memory(
    pids: Sequence[int],
    before: Mapping[int, int | None],
    subscribed: Mapping[int, int | None],
    clients: int,
) -> dict[str, Any]:
    known = [p for p in pids if before.get(p) is not None and subscribed.get(p) is not None]
    rss_before = sum(before[p] or 0 for p in known)
    rss_subscribed = sum(subscribed[p] or 0 for p in known)
    per = (rss_subscribed - rss_before) / clients / 1024 if clients and known else None
    return {
        "memory_pids": list(pids),
        "rss_bytes_before": rss_before if known else None,
        "rss_bytes_subscribed": rss_subscribed if known else None,
        "rss_bytes_by_pid": {
            str(p): {"before": before.get(p), "subscribed": subscribed.get(p)} for p in pids
        },
        "kb_per_connection": None if per is None else round(per, 2),
    }


def build(
    options: Options,
    *,
    subscribers: list[dict[str, Any]],
    readies: list[dict[str, Any]],
    publisher: dict[str, Any] | None,
    timeline: dict[int, Histogram],
    step_latency: dict[int, Histogram],
    published_timeline: dict[int, int],
    samples: list[dict[str, Any]],
    connect_seconds: float,
    publish_seconds: float,
    generator_cpu_connect: float,
    generator_cpu_run: dict[str, float],
    server_cpu_run: dict[int, float] | None,
    server_cpu_connect: Mapping[int, float] | None = None,
    cpu_samples: Sequence[CpuSample] = (),
    go_at: float = 0.0,
    publish_end: float = 0.0,
    generator_cores: int = 1,
    memory_pids: Sequence[int] = (),
    rss_before: Mapping[int, int | None] | None = None,
    rss_subscribed: Mapping[int, int | None] | None = None,
    server_processes: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    def total(key: str) -> int:
        return sum(int(s.get(key, 0)) for s in subscribers)

    errors: dict[str, int] = {}
    close_codes: dict[str, int] = {}
    unsubscribes: dict[str, int] = {}
    for s in subscribers:
        merge_counts(errors, s.get("errors", {}))
        merge_counts(close_codes, s.get("close_codes", {}))
        merge_counts(unsubscribes, s.get("unsubscribes", {}))
    if publisher is not None:
        merge_counts(errors, {f"publisher: {k}": v for k, v in publisher["errors"].items()})

    steps: list[dict[str, Any]] = []
    all_latency = Histogram()
    starts = [
        float(publisher["steps"][i]["start"]) if publisher else go_at + i * options.duration
        for i in range(len(options.rates))
    ]
    last_delivery = max(
        (float(t) for s in subscribers for t in s.get("last_delivery", {}).values()), default=0.0
    )
    roles = {int(p["pid"]): str(p["role"]) for p in server_processes}
    embedded = {pid for pid, role in roles.items() if role == EMBEDDED}
    windows = step_windows(
        cpu_samples, _bounds(starts, go_at, publish_end, last_delivery), generator_cores, embedded
    )
    for index, rate in enumerate(options.rates):
        latency = step_latency.get(index, Histogram())
        all_latency.merge(latency)
        pub = publisher["steps"][index] if publisher else {}
        expected = int(pub.get("expected", 0))
        seconds = float(pub.get("seconds", options.duration))
        # the step's deliveries over the time from its start to its last delivery
        # (at least the step's length): the rate the server actually delivered it at
        last = max(
            (float(s.get("last_delivery", {}).get(str(index), 0)) for s in subscribers), default=0.0
        )
        span = max(last - float(pub.get("start", 0.0)), seconds)
        steps.append(
            {
                "rate": rate,
                "seconds": seconds,
                "published": int(pub.get("acked", 0)),
                "failed": int(pub.get("failed", 0)),
                "unconfirmed": int(pub.get("unconfirmed", 0)),
                "expected_deliveries": expected,
                "deliveries": latency.count,
                "loss": expected - latency.count,
                "offered_per_second": _per_second(expected, seconds),
                "deliveries_per_second": _per_second(latency.count, span),
                "delivery_seconds": round(span, 3),
                "latency_ms": latency.summary(),
                **_step_cpu(windows[index], latency.count, bool(options.server_pids)),
            }
        )

    deliveries = total("deliveries")
    expected = sum(s["expected_deliveries"] for s in steps)
    publishing = sum(s["seconds"] for s in steps) or publish_seconds
    subscribed = sum(int(r.get("subscribed", 0)) for r in readies)
    # from the first connection attempt of any worker to the last worker's last answer
    began = min((int(r["began"]) for r in readies if "began" in r), default=0)
    ended = max((int(r["ended"]) for r in readies if "ended" in r), default=0)
    connecting = (ended - began) / 1e9 if ended > began else connect_seconds
    connect = _hist([r.get("connect", {}) for r in readies])
    subscribe = _hist([r.get("subscribe", {}) for r in readies])
    per_delivery = 1e6 / deliveries if deliveries else None
    generator_run = sum(generator_cpu_run.values())
    own_connect, beside_connect = _split(server_cpu_connect or {}, embedded)
    own_run, beside_run = _split(server_cpu_run or {}, embedded)

    chart = []
    known = set(timeline) | set(published_timeline)
    for second in range(min(known, default=0), max(known, default=-1) + 1):
        h = timeline.get(second, Histogram())
        summary = h.summary()
        chart.append(
            {
                "t": second,
                "deliveries": h.count,
                "published": published_timeline.get(second, 0),
                "p50_ms": summary["p50"],
                "p99_ms": summary["p99"],
                "max_ms": summary["max"],
            }
        )

    return {
        "tool": "wsfan loadtest",
        "version": __version__,
        "label": options.label,
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "options": options.to_dict(),
        "extra": options.extra,
        "clients": {
            "target": options.clients,
            "subscribed": subscribed,
            "failed": options.clients - subscribed,
            "connect_seconds": round(connecting, 3),
            "connections_per_second": _per_second(subscribed, connecting),
            "setup_seconds": round(connect_seconds, 3),  # with worker processes starting
            "connect_ms": connect.summary(),
            "subscribed_ms": subscribe.summary(),
            "at_end": total("subscribed"),
        },
        "publications": {
            "acked": sum(s["published"] for s in steps),
            "failed": sum(s["failed"] for s in steps),
            "unconfirmed": sum(s["unconfirmed"] for s in steps),
            "seconds": round(publishing, 3),
        },
        "deliveries": {
            "expected": expected,
            "received": deliveries,
            "loss": expected - deliveries if publisher is not None else 0,
            "per_second": _per_second(deliveries, publishing),
            "recovered_publications": total("recovered_publications"),
            "gaps": total("gaps"),
            "duplicates": total("duplicates"),
            "epoch_changes": total("epoch_changes"),
            "foreign": total("foreign"),
            "negative_latency": total("negative_latency"),
        },
        "latency_ms": all_latency.summary(),
        "churn": {
            "reconnects": total("reconnects"),
            "resubscribes": total("resubscribes"),
            "recovered": total("recovered"),
            "not_recovered": total("not_recovered"),
        },
        "steps": steps,
        "errors": errors,
        "close_codes": close_codes,
        "unsubscribe_codes": unsubscribes,
        "generator": {
            "processes": len(subscribers) + (1 if publisher is not None else 0) + 1,
            "cpu_seconds_connect": round(generator_cpu_connect, 3),
            # process start-up included
            "cpu_us_per_connection": _per_connection(generator_cpu_connect, subscribed),
            "cpu_seconds_run": round(generator_run, 3),
            "cpu_seconds_run_by_role": {k: round(v, 3) for k, v in generator_cpu_run.items()},
            "cores": generator_cores,
            "cpu_us_per_delivery": None
            if per_delivery is None
            else round(generator_run * per_delivery, 2),
        },
        "server": None
        if server_cpu_run is None
        else {
            "pids": list(options.server_pids),
            # what was measured: the given PIDs followed to workers and embedded servers
            "processes": [dict(p) for p in server_processes],
            "cpu_seconds_run_by_role": {
                role: round(sum(c for p, c in server_cpu_run.items() if roles.get(p) == role), 3)
                for role in sorted(set(roles.values()))
            },
            "cpu_seconds_connect": round(own_connect, 3),
            "cpu_us_per_connection": _per_connection(own_connect, subscribed),
            "embedded_cpu_us_per_connection": _per_connection(beside_connect, subscribed)
            if embedded
            else None,
            "cpu_seconds_run": round(own_run, 3),
            "cpu_seconds_run_by_pid": {str(p): round(c, 3) for p, c in server_cpu_run.items()},
            "cpu_us_per_delivery": None
            if per_delivery is None
            else round(own_run * per_delivery, 2),
            "embedded_cpu_us_per_delivery": None
            if per_delivery is None or not embedded
            else round(beside_run * per_delivery, 2),
            **_memory(memory_pids, rss_before or {}, rss_subscribed or {}, subscribed),
        },
        "timeline": chart,
        "samples": samples,
        "cpu_samples": [
            {
                "t": round(s.t, 3),
                "server": round(sum(s.server.values()), 3),  # embedded servers included
                "embedded": round(sum(c for p, c in s.server.items() if p in embedded), 3),
                "generator": round(s.generator, 3),
                "machine": None if s.machine is None else round(s.machine, 3),
            }
            for s in cpu_samples
        ],
    }


def _step_cpu(window: dict[str, float | None], deliveries: int, server: bool) -> dict[str, Any]:
    """A step's CPU fields; the server's are None without server PIDs."""

    def per(cpu: float | None) -> float | None:
        return round(cpu / deliveries * 1e6, 2) if deliveries and cpu is not None else None

    out = dict(window)
    if not server:
        out["server_cpu_seconds"] = out["server_busy"] = out["embedded_cpu_seconds"] = None
    out["server_cpu_us_per_delivery"] = per(out["server_cpu_seconds"])
    out["embedded_cpu_us_per_delivery"] = per(out["embedded_cpu_seconds"])
    out["generator_cpu_us_per_delivery"] = per(out["generator_cpu_seconds"])
    return out
