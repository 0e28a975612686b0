"""`bench/results/SUMMARY.md`: every step of every result, one Markdown row each."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["summary"]

HEAD = (
    "scenario",
    "clients",
    "connect/s",
    "connect p99 ms",
    "KB/conn",
    "pub/s",
    "offered/s",
    "delivered/s",
    "loss",
    "gaps/dups",
    "p50 ms",
    "p99 ms",
    "max ms",
    "server us/deliv",
    "server busy",
    "generator busy",
    "other busy",
)


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def summary(results: Mapping[str, Mapping[str, Any]]) -> str:
    """A Markdown table of every result, one row per rate step, machine first."""
    rows = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    machine = None
    for label in sorted(results):
        r = results[label]
        machine = machine or r.get("machine")
        c, d = r["clients"], r["deliveries"]
        kb = (r.get("server") or {}).get("kb_per_connection")
        head = (
            f"| {label} | {c['subscribed']:,}/{c['target']:,} "
            f"| {c['connections_per_second']:,.0f} | {_num(c['connect_ms']['p99'])} | {_num(kb)} "
        )
        gaps = f"{d['gaps']}/{d['duplicates']}"
        for s in r["steps"]:
            busy = (
                f"| {_pct(s.get('server_busy'))} | {_pct(s.get('generator_busy'))} "
                f"| {_pct(s.get('other_busy'))} |"
            )
            if not s["rate"]:
                rows.append(f"{head}| - | - | - | - | {gaps} | - | - | - | - {busy}")
                continue
            lat = s["latency_ms"]
            rows.append(
                f"{head}| {s['rate']:g} | {s['offered_per_second']:,.0f} "
                f"| {s['deliveries_per_second']:,.0f} | {s['loss']:,} | {gaps} "
                f"| {_num(lat['p50'])} | {_num(lat['p99'])} | {_num(lat['max'])} "
                f"| {_num(s.get('server_cpu_us_per_delivery'))} {busy}"
            )
    text = "\n".join(rows) + "\n"
    if machine:
        text = (
            f"Machine: {machine.get('cpus')} CPUs ({machine.get('cpu_model', '?')}), "
            f"{machine.get('memory_gib', '?')} GiB, Python {machine.get('python')}, "
            f"{machine.get('platform')}.\n\n" + text
        )
    return text
