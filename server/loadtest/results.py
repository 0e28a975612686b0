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
"""

from __future__ import annotations

import datetime
import os
import platform
from collections.abc import Mapping
from typing import Any

from server import __version__
from server.loadtest.metrics import Histogram, merge_counts
from server.loadtest.options import Options

__all__ = ["build", "machine"]


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
    server_cpu_connect: float = 0.0,
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
            "cpu_us_per_delivery": None
            if per_delivery is None
            else round(generator_run * per_delivery, 2),
        },
        "server": None
        if server_cpu_run is None
        else {
            "pids": list(options.server_pids),
            "cpu_seconds_connect": round(server_cpu_connect, 3),
            "cpu_us_per_connection": _per_connection(server_cpu_connect, subscribed),
            "cpu_seconds_run": round(sum(server_cpu_run.values()), 3),
            "cpu_seconds_run_by_pid": {str(p): round(c, 3) for p, c in server_cpu_run.items()},
            "cpu_us_per_delivery": None
            if per_delivery is None
            else round(sum(server_cpu_run.values()) * per_delivery, 2),
        },
        "timeline": chart,
        "samples": samples,
    }
