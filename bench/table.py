"""The field table: the issue's figures plus rows derived from our load-test results.

Pure functions over result dicts (the JSON `wsfan.loadtest` writes), so the
rules are tested apart from any run:

- a step **passes** when it published something, lost nothing (loss 0, no
  publication refused) and its p99 latency is under `P99_LIMIT_MS`, in a run
  without gaps or duplicates (those are counted per run, not per step, so any
  marks every step);
- **deliveries/s passing**: the highest delivered/s of a passing step;
- **capacity**: the highest delivered/s of a step without loss, any latency;
- **server CPU per delivery**: the steps at `CPU_RATE` publications/s after
  the first (the 1k ramps run four: the first is a warm-up that still carries
  the tail of the connect phase; one 3 s step varies by about 15%, so three
  are averaged), each its window's server CPU (every server PID, a broker's
  Valkey included) over its deliveries;
- **KB per idle connection**: server resident memory (the server processes
  proper) after every client subscribed minus before any connected, over the
  subscribed clients; from the 10k scenario when it ran, else the 1k one.

Beside the field table, once a msgpack or many-channel result is present,
`ENCODING_PAIRS`: the hot channel and the many-channel (Zipf) scenario, JSON and
msgpack side by side, step by step: delivered/s, p50 and p99 latency, server
CPU per delivery.

A figure's **limit step** is the first step from it upwards that shows the
limit: for passing, the first step above it that does not pass; for
capacity, the first from it upwards with loss or that did not keep up
(delivered/s under `KEPT_UP` of offered/s). A figure carries three flags:
`at_least` when there is no limit step (the ramp stopped before the server
did: the figure is a lower bound); `generator_limited` when the load
generator's cores were `SATURATED` busy in the figure's step or its limit
step, so the generator, not the server, may be what stopped the ramp; and
`disturbed` when other work on the machine kept at least `OTHER_LOAD` of a
core busy in one of those steps (a shared machine).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CPU_RATE",
    "ENCODING_PAIRS",
    "ISSUE_ROWS",
    "KEPT_UP",
    "MEASURED_ROWS",
    "OTHER_LOAD",
    "P99_LIMIT_MS",
    "SATURATED",
    "Figure",
    "RowSpec",
    "capacity",
    "cpu_per_delivery",
    "derive_row",
    "encoding_rows",
    "kb_per_connection",
    "passing",
    "render",
    "targets",
]

P99_LIMIT_MS = 100.0
CPU_RATE = 20.0  # publications per second of the step CPU per delivery is read from
SATURATED = 0.9  # generator busy share from which it counts as the limit
KEPT_UP = 0.9  # delivered/s over offered/s from which a step kept up
OTHER_LOAD = 0.25  # cores busy with other work from which a step counts as disturbed

HEAD = (
    "server",
    "deliveries/s passing",
    "capacity 1k / 10k subs (no loss, any latency)",
    "server CPU per delivery",
    "KB per idle connection",
)

ISSUE_ROWS: tuple[tuple[str, str, str, str, str], ...] = (
    ("raw picows broadcast (Cython, no framework)", "200k", "303k / 98k", "9.2 us", "28"),
    ("Node `ws` raw broadcast", "84k", "184k / 84k", "14.0 us", "6.5"),
    ("Node socket.io + Redis adapter (2 nodes)", "84k", "99k / 76k", "17.0 us", "12"),
    ("naive Tornado broadcast (`write_message` loop)", "20k", "32k / 18k", "34.7 us", "15"),
    ("naive Tornado + Redis (2 nodes)", "~1k, unstable", "27k / 14k", "41.3 us", "15"),
    (
        "python-socketio (aiohttp; with or without Redis)",
        "1k or none",
        "16k / 6k, with loss",
        "62 us",
        "30",
    ),
    ("Django Channels + channels_redis", "none", "2k / 1.4k, with loss", "342 us", "35"),
)


@dataclass(frozen=True)
class RowSpec:
    """One measured row: the scenario with 1,000 subscribers and the one with 10,000."""

    name: str
    one_k: str
    ten_k: str


MEASURED_ROWS = (
    RowSpec("raw picows broadcast (measured here)", "picows_1k", "picows_10k"),
    RowSpec("wsfan, 1 process, memory broker", "fanout_memory", "capacity_10k_memory"),
    RowSpec("wsfan, 1 process, Redis broker", "fanout_redis", "capacity_10k"),
    RowSpec("wsfan, 2 workers, Redis broker", "fanout_2workers", "capacity_10k_2workers"),
)


# (set-up, JSON scenario, msgpack scenario): the same ramp, one encoding each
ENCODING_PAIRS = (
    ("one hot channel, 1,000 subscribers", "fanout_redis", "fanout_redis_msgpack"),
    (
        "10,000 clients on 5 of 2,000 channels, Zipf 1.0",
        "many_channels_zipf",
        "many_channels_zipf_msgpack",
    ),
)
ENCODING_HEAD = (
    "set-up (Redis broker)",
    "pub/s",
    "delivered/s JSON / msgpack",
    "p50 ms JSON / msgpack",
    "p99 ms JSON / msgpack",
    "server us/delivery JSON / msgpack",
)


@dataclass(frozen=True)
class Figure:
    """A deliveries/s figure and how far it can be trusted."""

    value: float
    rate: float  # publications/s of the step it came from
    at_least: bool = False
    generator_limited: bool = False
    disturbed: bool = False

    def text(self) -> str:
        out = ("≥ " if self.at_least else "") + _k(self.value)
        out += " (gen)" if self.generator_limited else ""
        return out + (" (busy)" if self.disturbed else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "rate": self.rate,
            "at_least": self.at_least,
            "generator_limited": self.generator_limited,
            "disturbed": self.disturbed,
        }


Result = Mapping[str, Any]
Step = Mapping[str, Any]


def _publishing(step: Step) -> bool:
    return bool(step.get("rate")) and int(step.get("expected_deliveries", 0)) > 0


def _no_loss(step: Step) -> bool:
    return _publishing(step) and step["loss"] <= 0 and not step.get("failed", 0)


def _passes(step: Step, clean: bool) -> bool:
    p99 = step["latency_ms"].get("p99")
    return clean and _no_loss(step) and p99 is not None and p99 < P99_LIMIT_MS


def _clean(result: Result) -> bool:
    d = result.get("deliveries", {})
    return not d.get("gaps", 0) and not d.get("duplicates", 0)


def _kept_up(step: Step) -> bool:
    return step["deliveries_per_second"] >= KEPT_UP * step["offered_per_second"]


def _over(step: Step | None, key: str, level: float) -> bool:
    value = None if step is None else step.get(key)
    return value is not None and value >= level


def _best(
    result: Result, ok: Callable[[Step], bool], limited: Callable[[Step], bool]
) -> Figure | None:
    """The highest delivered/s of an `ok` step; its limit step is the lowest-rate
    step from it upwards that is `limited`."""
    steps = [s for s in result.get("steps", []) if _publishing(s)]
    good = [s for s in steps if ok(s)]
    if not good:
        return None
    best = max(good, key=lambda s: s["deliveries_per_second"])
    above = [s for s in steps if s["rate"] >= best["rate"] and limited(s)]
    limit = min(above, key=lambda s: s["rate"]) if above else None
    return Figure(
        value=float(best["deliveries_per_second"]),
        rate=float(best["rate"]),
        at_least=limit is None,
        generator_limited=any(_over(s, "generator_busy", SATURATED) for s in (best, limit)),
        disturbed=any(_over(s, "other_busy", OTHER_LOAD) for s in (best, limit)),
    )


def passing(result: Result) -> Figure | None:
    """The highest delivered/s of a step with no loss, no gaps and p99 under the limit."""
    clean = _clean(result)
    return _best(result, lambda s: _passes(s, clean), lambda s: not _passes(s, clean))


def capacity(result: Result) -> Figure | None:
    """The highest delivered/s of a step with no loss, whatever its latency."""
    return _best(result, _no_loss, lambda s: not _no_loss(s) or not _kept_up(s))


def cpu_per_delivery(result: Result, rate: float = CPU_RATE) -> float | None:
    """Server CPU us per delivery at `rate` publications/s: the mean of the steps
    at that rate after the first (a warm-up), or the only one there is."""
    values = [
        float(step["server_cpu_us_per_delivery"])
        for step in result.get("steps", [])
        if step.get("rate") == rate and step.get("server_cpu_us_per_delivery") is not None
    ]
    if len(values) > 1:
        values = values[1:]
    return round(sum(values) / len(values), 1) if values else None


def kb_per_connection(result: Result) -> float | None:
    value = (result.get("server") or {}).get("kb_per_connection")
    return None if value is None else float(value)


def derive_row(spec: RowSpec, results: Mapping[str, Result]) -> dict[str, Any]:
    """A measured row's figures from the results by scenario name (missing: None)."""
    one, ten = results.get(spec.one_k), results.get(spec.ten_k)
    kb = kb_per_connection(ten) if ten else None
    if kb is None and one:
        kb = kb_per_connection(one)
    return {
        "name": spec.name,
        "sources": [n for n, r in ((spec.one_k, one), (spec.ten_k, ten)) if r],
        "measured_1k": one is not None,
        "passing": passing(one) if one else None,
        "capacity_1k": capacity(one) if one else None,
        "capacity_10k": capacity(ten) if ten else None,
        "cpu_us_per_delivery": cpu_per_delivery(one) if one else None,
        "kb_per_connection": kb,
    }


def _k(value: float) -> str:
    if value >= 10_000:
        return f"{value / 1000:,.0f}k"
    if value >= 1000:
        return f"{value / 1000:,.1f}k"
    return f"{value:,.0f}"


def _figure(f: Figure | None) -> str:
    return "-" if f is None else f.text()


def _cells(row: Mapping[str, Any]) -> tuple[str, ...]:
    cap1, cap10 = row["capacity_1k"], row["capacity_10k"]
    passing_text = _figure(row["passing"])
    if row["passing"] is None and row["measured_1k"]:
        passing_text = "none"  # measured, and no step passed
    cpu, kb = row["cpu_us_per_delivery"], row["kb_per_connection"]
    return (
        row["name"],
        passing_text,
        f"{_figure(cap1)} / {_figure(cap10)}",
        "-" if cpu is None else f"{cpu:.1f} us",
        "-" if kb is None else f"{kb:.1f}",
    )


def _pair(a: Step | None, b: Step | None, read: Callable[[Step], Any], digits: int) -> str:
    def one(s: Step | None) -> str:
        value = None if s is None else read(s)
        return "-" if value is None else f"{value:,.{digits}f}"

    return f"{one(a)} / {one(b)}"


def encoding_rows(results: Mapping[str, Result]) -> list[list[str]]:
    """`ENCODING_PAIRS` step by step (steps paired by position: one ramp), for
    the pairs with at least one result present; none unless a result beyond the
    field table's (a msgpack or a many-channel one) is, so the table of the
    default set stays as it was."""
    beyond = {n for _, *names in ENCODING_PAIRS for n in names}
    beyond -= {n for spec in MEASURED_ROWS for n in (spec.one_k, spec.ten_k)}
    if not beyond & set(results):
        return []
    out: list[list[str]] = []
    for about, json_name, msgpack_name in ENCODING_PAIRS:
        a, b = results.get(json_name), results.get(msgpack_name)
        if a is None and b is None:
            continue
        steps_a = [s for s in (a or {}).get("steps", []) if _publishing(s)]
        steps_b = [s for s in (b or {}).get("steps", []) if _publishing(s)]
        for i in range(max(len(steps_a), len(steps_b))):
            sa = steps_a[i] if i < len(steps_a) else None
            sb = steps_b[i] if i < len(steps_b) else None
            rate = (sa or sb or {}).get("rate", 0)
            out.append(
                [
                    about,
                    f"{rate:g}",
                    _pair(sa, sb, lambda s: s.get("deliveries_per_second"), 0),
                    _pair(sa, sb, lambda s: s["latency_ms"].get("p50"), 2),
                    _pair(sa, sb, lambda s: s["latency_ms"].get("p99"), 2),
                    _pair(sa, sb, lambda s: s.get("server_cpu_us_per_delivery"), 1),
                ]
            )
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def targets(rows: Sequence[Mapping[str, Any]], results: Mapping[str, Result]) -> list[list[str]]:
    """The issue's targets against what was measured: (target, measured, met)."""
    by = {r["name"]: r for r in rows}
    picows, memory, redis, two = (by[s.name] for s in MEASURED_ROWS)
    out: list[list[str]] = []

    def add(target: str, measured: str, met: bool | None) -> None:
        out.append([target, measured, "-" if met is None else ("yes" if met else "no")])

    p = redis["passing"]
    add(
        "1k subs, Redis broker, 1 process: >= 150k deliveries/s passing",
        _cells(redis)[1],
        bool(p and p.value >= 150_000) if redis["measured_1k"] else None,
    )
    ours, ref = redis["capacity_10k"], picows["capacity_10k"]
    share = _ratio(ours and ours.value, ref and ref.value)
    add(
        "10k subs: capacity >= 80% of raw picows (measured here)",
        "-" if share is None else f"{share:.0%} ({_figure(ours)} of {_figure(ref)})",
        None if share is None else share >= 0.8,
    )
    cpu = redis["cpu_us_per_delivery"]
    add(
        f"server CPU per delivery at 1k subs, {CPU_RATE:g} pubs/s: <= 10 us (Redis broker)",
        "-" if cpu is None else f"{cpu:.1f} us",
        None if cpu is None else cpu <= 10,
    )
    kbs = [
        (label, r["kb_per_connection"])
        for label, r in (("memory", memory), ("Redis", redis), ("2 workers", two))
        if r["kb_per_connection"] is not None
    ]
    add(
        "<= 12 KB per idle subscribed connection",
        ", ".join(f"{label} {kb:.1f}" for label, kb in kbs) or "-",
        None if not kbs else max(kb for _, kb in kbs) <= 12,
    )
    storm = results.get("connection_storm")
    rate = storm["clients"]["connections_per_second"] if storm else None
    add(
        "connection storm: >= 2,000 connects + subscribes per second",
        "-" if rate is None else f"{rate:,.0f}/s",
        None if rate is None else rate >= 2000,
    )
    extra = _ratio(redis["cpu_us_per_delivery"], memory["cpu_us_per_delivery"])
    add(
        "Redis broker: <= 20% more server CPU per delivery than memory",
        "-" if extra is None else f"{extra - 1:+.0%}",
        None if extra is None else extra <= 1.2,
    )
    return out


def _markdown(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def render(results: Mapping[str, Result]) -> tuple[str, dict[str, Any]]:
    """The table as Markdown and as JSON-ready data, from results by scenario name."""
    rows = [derive_row(spec, results) for spec in MEASURED_ROWS]
    issue = [(f"{r[0]} *(issue's figures)*", *r[1:]) for r in ISSUE_ROWS]
    lines = _markdown(HEAD, [*issue, *(_cells(r) for r in rows)])
    check = targets(rows, results)
    used = sorted({n for r in rows for n in r["sources"]} | ({"connection_storm"} & set(results)))
    lines += [
        "",
        "Rows marked *(issue's figures)* are quoted from the issue (its author's 2-core "
        "machine); the others are measured here. `≥`: the ramp ended before the server "
        "failed a step; `(gen)`: the load generator's cores were at least "
        f"{SATURATED:.0%} busy at that step or the failing one above it, so the generator "
        "may be the limit; `(busy)`: other work on the machine kept at least "
        f"{OTHER_LOAD:.0%} of a core busy then; `-`: not measured.",
        "",
        *_markdown(("target (issue 9)", "measured", "met"), check),
        "",
        "Results used: " + ", ".join(f"{n} ({results[n].get('started', '?')})" for n in used) + ".",
    ]
    encodings = encoding_rows(results)
    if encodings:
        pairs = [n for _, *names in ENCODING_PAIRS for n in names if n in results]
        lines += [
            "",
            "Hot channel and many channels, JSON and msgpack (each step: JSON / msgpack; "
            "`-`: not measured):",
            "",
            *_markdown(ENCODING_HEAD, encodings),
            "",
            "Results used: "
            + ", ".join(f"{n} ({results[n].get('started', '?')})" for n in pairs)
            + ".",
        ]
    data = {
        "head": list(HEAD),
        "issue_rows": [list(r) for r in ISSUE_ROWS],
        "rows": [
            {k: (v.to_dict() if isinstance(v, Figure) else v) for k, v in r.items()} for r in rows
        ],
        "targets": check,
        "rules": {
            "p99_limit_ms": P99_LIMIT_MS,
            "cpu_rate": CPU_RATE,
            "generator_saturated": SATURATED,
            "kept_up": KEPT_UP,
            "other_load": OTHER_LOAD,
        },
    }
    if encodings:
        data["encodings"] = {"head": list(ENCODING_HEAD), "rows": encodings}
    return "\n".join(lines) + "\n", data
