"""What a run leaves behind: a text table, the JSON result, a self-contained HTML report.

The HTML needs nothing from the network: charts are inline SVG drawn here,
styles are inline, and every value is escaped.
"""

from __future__ import annotations

import html
import itertools
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .targets import describe

__all__ = ["format_table", "nice_ticks", "svg_chart", "write_html", "write_json"]

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def format_table(result: dict[str, Any]) -> str:
    """The end-of-run summary: one row per rate step, then totals and problems."""
    c, d, g = result["clients"], result["deliveries"], result["generator"]
    lines = [
        f"clients: {c['subscribed']:,}/{c['target']:,} subscribed in {c['connect_seconds']:.1f} s "
        f"({c['connections_per_second']:,.0f}/s) "
        f"(connect p50 {_ms(c['connect_ms']['p50'])} ms, p99 {_ms(c['connect_ms']['p99'])} ms)",
        "",
        f"{'rate/s':>8} {'published':>10} {'expected':>11} {'delivered':>11} {'loss':>8} "
        f"{'offered/s':>10} {'deliv/s':>10} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} "
        f"{'p99.9 ms':>9} {'max ms':>9} {'srv us/d':>9} {'srv busy':>9} {'gen busy':>9} "
        f"{'other':>6}",
    ]
    for s in result["steps"]:
        lat = s["latency_ms"]
        lines.append(
            f"{s['rate']:>8g} {s['published']:>10,} {s['expected_deliveries']:>11,} "
            f"{s['deliveries']:>11,} {s['loss']:>8,} {s['offered_per_second']:>10,.0f} "
            f"{s['deliveries_per_second']:>10,.0f} "
            f"{_ms(lat['p50']):>9} {_ms(lat['p90']):>9} {_ms(lat['p99']):>9} "
            f"{_ms(lat['p99.9']):>9} {_ms(lat['max']):>9} "
            f"{_num(s.get('server_cpu_us_per_delivery')):>9} {_pct(s.get('server_busy')):>9} "
            f"{_pct(s.get('generator_busy')):>9} {_pct(s.get('other_busy')):>6}"
        )
    lines += [
        "",
        f"deliveries {d['received']:,} of {d['expected']:,} expected ({d['per_second']:,.0f}/s), "
        f"loss {d['loss']:,}, gaps {d['gaps']:,}, duplicates {d['duplicates']:,}, "
        f"recovered {d['recovered_publications']:,}",
        f"generator: {g['processes']} processes, {g['cpu_seconds_run']:.2f} CPU s while "
        f"publishing, {_us(g['cpu_us_per_delivery'])} per delivery, "
        f"{_us(g['cpu_us_per_connection'])} per connection",
    ]
    if result.get("server"):
        s = result["server"]
        per = _us(s["cpu_us_per_delivery"])
        lines.append(
            f"server: {s['cpu_seconds_run']:.2f} CPU s, {per} per delivery, "
            f"{_us(s['cpu_us_per_connection'])} per connection"
        )
        if s.get("embedded_cpu_us_per_delivery") is not None:
            lines.append(
                f"embedded servers and brokers beside it: "
                f"{_us(s['embedded_cpu_us_per_delivery'])} per delivery, "
                f"{_us(s.get('embedded_cpu_us_per_connection'))} per connection"
            )
        lines.append(f"server processes measured: {measured(s)}")
        if s.get("kb_per_connection") is not None:
            lines.append(
                f"server memory: {_mib(s['rss_bytes_before'])} before connecting, "
                f"{_mib(s['rss_bytes_subscribed'])} with every client subscribed, "
                f"{s['kb_per_connection']:,.1f} KB per connection "
                f"(PIDs {', '.join(map(str, s['memory_pids']))})"
            )
    else:
        lines.append(f"server: {NOT_MEASURED}")
    churn = result["churn"]
    if churn["reconnects"] or churn["resubscribes"]:
        lines.append(
            f"recovery: {churn['reconnects']:,} reconnects, {churn['resubscribes']:,} "
            f"resubscribes, {churn['recovered']:,} recovered, "
            f"{churn['not_recovered']:,} not recovered"
        )
    if result["errors"]:
        lines.append("errors: " + ", ".join(f"{k} x{v}" for k, v in result["errors"].items()))
    for key, name in (("close_codes", "close codes"), ("unsubscribe_codes", "unsubscribes")):
        if result.get(key):
            lines.append(f"{name}: " + ", ".join(f"{k} x{v}" for k, v in result[key].items()))
    return "\n".join(lines)


NOT_MEASURED = "CPU and memory not measured (no --server-pid given)"


def measured(server: dict[str, Any]) -> str:
    """Which processes the server figures come from, with the CPU of each role."""
    processes = server.get("processes") or [{"pid": p, "name": "server"} for p in server["pids"]]
    text = describe(processes)
    by_role = server.get("cpu_seconds_run_by_role") or {}
    if len(by_role) > 1:
        text += " (CPU s: " + ", ".join(f"{r} {c:.2f}" for r, c in by_role.items()) + ")"
    return text


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} us"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _pct(value: float | None) -> str:
    """A busy fraction (1.0: one core, or all of the generator's) as a percentage."""
    return "-" if value is None else f"{value * 100:,.0f}%"


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:,.1f} MiB"


def write_json(result: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")


# Charts ------------------------------------------------------------------------------


def nice_step(span: float, target: int = 5) -> float:
    """The round tick step (1, 2 or 5 times a power of ten) nearest to `span` / `target`."""
    if span <= 0:
        return 1.0
    raw = span / target
    magnitude = 10 ** math.floor(math.log10(raw))
    steps = [m * magnitude for m in (1, 2, 5, 10)]
    return min(steps, key=lambda step: abs(math.log(step / raw)))


def nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Round values from `lo` to `hi` (both included when round), one `nice_step` apart."""
    step = nice_step(hi - lo, target)
    first = math.ceil(lo / step - 1e-9)
    last = math.floor(hi / step + 1e-9)
    return [round(i * step, 12) for i in range(first, last + 1)]


def tick_label(value: float, step: float) -> str:
    """A tick's text with as many decimals as its step needs ("0.5", "1,000", "2.5")."""
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step > 0 else 0
    return f"{value:,.{decimals}f}"


def svg_chart(
    title: str,
    series: Sequence[tuple[str, Sequence[tuple[float, float | None]]]],
    x_label: str = "seconds",
    y_label: str = "",
    width: int = 760,
    height: int = 260,
) -> str:
    """A line chart as inline SVG; points with a None value break the line."""
    left, right, top, bottom = 70, 20, 30, 40
    xs = [x for _, pts in series for x, y in pts if y is not None]
    ys = [y for _, pts in series for _, y in pts if y is not None]
    esc = html.escape
    out = [
        f'<svg width="{width}" height="{height}" '
        f'role="img" aria-label="{esc(title)}" font-family="sans-serif" font-size="11">',
        f'<text x="{left}" y="18" font-size="13" font-weight="bold">{esc(title)}</text>',
    ]
    if not xs:
        out.append(f'<text x="{left}" y="{height // 2}">no data</text></svg>')
        return "".join(out)
    x0, x1 = min(xs), max(xs)
    x1 = x1 if x1 > x0 else x0 + 1
    y_step = nice_step(max(max(ys), 0.0) or 1.0)
    y1 = max(math.ceil(max(ys) / y_step - 1e-9), 1) * y_step  # the axis ends on a tick
    x_step = nice_step(x1 - x0)
    plot_w, plot_h = width - left - right, height - top - bottom

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * plot_w

    def py(y: float) -> float:
        return top + plot_h - y / y1 * plot_h

    for gy in nice_ticks(0.0, y1):
        out.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{py(gy):.1f}" y2="{py(gy):.1f}" '
            f'stroke="#ddd"/><text x="{left - 6}" y="{py(gy) + 4:.1f}" text-anchor="end" '
            f'class="tick-y">{tick_label(gy, y_step)}</text>'
        )
    for gx in nice_ticks(x0, x1):
        out.append(
            f'<text x="{px(gx):.1f}" y="{top + plot_h + 16}" text-anchor="middle" '
            f'class="tick-x">{tick_label(gx, x_step)}</text>'
        )
    out.append(
        f'<text x="{left + plot_w / 2}" y="{height - 4}" text-anchor="middle">{esc(x_label)}</text>'
        f'<text x="14" y="{top + plot_h / 2}" text-anchor="middle" '
        f'transform="rotate(-90 14 {top + plot_h / 2})">{esc(y_label)}</text>'
    )
    for k, (name, points) in enumerate(series):
        color = COLORS[k % len(COLORS)]
        runs: list[list[str]] = [[]]
        for x, y in points:
            if y is None:
                runs.append([])
            else:
                runs[-1].append(f"{px(x):.1f},{py(y):.1f}")
        for run in runs:
            if len(run) == 1:
                cx, cy = run[0].split(",")
                out.append(f'<circle cx="{cx}" cy="{cy}" r="2" fill="{color}"/>')
            elif run:
                out.append(
                    f'<polyline fill="none" stroke="{color}" stroke-width="1.5" '
                    f'points="{" ".join(run)}"/>'
                )
        lx = left + 10 + k * 120
        out.append(
            f'<rect x="{lx}" y="{top + 4}" width="10" height="10" fill="{color}"/>'
            f'<text x="{lx + 14}" y="{top + 13}">{esc(name)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


# HTML ---------------------------------------------------------------------------------


def _table(rows: Sequence[Sequence[Any]], head: Sequence[str] | None = None) -> str:
    esc = html.escape
    parts = ["<table>"]
    if head:
        parts.append("<tr>" + "".join(f"<th>{esc(str(h))}</th>" for h in head) + "</tr>")
    for row in rows:
        parts.append("<tr>" + "".join(f"<td>{esc(_cell(v))}</td>" for v in row) + "</tr>")
    parts.append("</table>")
    return "".join(parts)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".")
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


STYLE = """
body{font-family:sans-serif;margin:24px;color:#222;max-width:1000px}
table{border-collapse:collapse;margin:8px 0 20px}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;font-size:13px}
th{background:#f3f3f3}
td:first-child{text-align:left}
pre{background:#f7f7f7;padding:8px;font-size:12px;overflow-x:auto}
.note{color:#555;font-size:13px;margin:0 0 16px}
"""


def render_html(result: dict[str, Any]) -> str:
    esc = html.escape
    tl = result["timeline"]
    c, d, g = result["clients"], result["deliveries"], result["generator"]
    title = f"Load test {result.get('label') or ''}".strip()
    summary = [
        ("subscribed clients", f"{c['subscribed']:,} of {c['target']:,}"),
        ("connect time (s)", c["connect_seconds"]),
        ("connections per second", c["connections_per_second"]),
        ("connect ms p50 / p99 / max", _trio(c["connect_ms"])),
        ("publications acknowledged", result["publications"]["acked"]),
        ("deliveries / expected", f"{d['received']:,} / {d['expected']:,}"),
        ("loss, gaps, duplicates", f"{d['loss']:,}, {d['gaps']:,}, {d['duplicates']:,}"),
        ("deliveries per second", d["per_second"]),
        ("latency ms p50 / p99 / max", _trio(result["latency_ms"])),
        ("generator CPU us per delivery", g["cpu_us_per_delivery"]),
        ("generator CPU us per connection", g["cpu_us_per_connection"]),
    ]
    server = result.get("server")
    summary.append(("server processes measured", measured(server) if server else NOT_MEASURED))
    if server:
        summary.append(("server CPU us per delivery", server["cpu_us_per_delivery"]))
        summary.append(("server CPU us per connection", server["cpu_us_per_connection"]))
        if server.get("embedded_cpu_us_per_delivery") is not None:
            summary.append(
                ("embedded/broker CPU us per delivery", server["embedded_cpu_us_per_delivery"])
            )
        if server.get("kb_per_connection") is not None:
            summary.append(
                (
                    "server memory before / subscribed",
                    f"{_mib(server['rss_bytes_before'])} / {_mib(server['rss_bytes_subscribed'])}",
                )
            )
            summary.append(("server KB per idle connection", server["kb_per_connection"]))
    steps = [
        (
            s["rate"],
            s["published"],
            s["expected_deliveries"],
            s["deliveries"],
            s["loss"],
            s["offered_per_second"],
            s["deliveries_per_second"],
            s["latency_ms"]["p50"],
            s["latency_ms"]["p90"],
            s["latency_ms"]["p99"],
            s["latency_ms"]["p99.9"],
            s["latency_ms"]["max"],
            s.get("server_cpu_us_per_delivery"),
            _pct(s.get("server_busy")),
            _pct(s.get("generator_busy")),
            _pct(s.get("other_busy")),
        )
        for s in result["steps"]
    ]
    step_head = ["rate/s", "published", "expected", "delivered", "loss", "offered/s", "deliv/s"]
    step_head += ["p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"]
    step_head += ["server CPU us/delivery", "server busy", "generator busy", "other busy"]
    charts = [
        svg_chart(
            "Deliveries per second",
            [("deliveries", [(p["t"], p["deliveries"]) for p in tl])],
            y_label="deliveries/s",
        ),
        svg_chart(
            "Publications per second",
            [("published", [(p["t"], p["published"]) for p in tl])],
            y_label="publications/s",
        ),
        svg_chart(
            "Delivery latency",
            [
                ("p50", [(p["t"], p["p50_ms"]) for p in tl]),
                ("p99", [(p["t"], p["p99_ms"]) for p in tl]),
                ("max", [(p["t"], p["max_ms"]) for p in tl]),
            ],
            y_label="ms",
        ),
        svg_chart("CPU busy (100% = one core)", _cpu_series(result), y_label="%"),
        svg_chart(
            "Subscribed clients (from the start, connecting included)",
            [("subscribed", [(s["t"], s["subscribed"]) for s in result["samples"]])],
            y_label="clients",
        ),
    ]
    cpu_note = (
        ""
        if server
        else f"<p class='note'>Server: {esc(NOT_MEASURED)}; its CPU is in &ldquo;other&rdquo;.</p>"
    )
    problems = [(k, v) for k, v in result["errors"].items()]
    problems += [(f"close code {k}", v) for k, v in result["close_codes"].items()]
    problems += [(f"unsubscribe code {k}", v) for k, v in result["unsubscribe_codes"].items()]
    return "".join(
        [
            f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(title)}</title>",
            f"<style>{STYLE}</style></head><body><h1>{esc(title)}</h1>",
            f"<p>{esc(result['started'])} &middot; {esc(_machine(result['machine']))}</p>",
            _table(summary),
            "<h2>Steps</h2>",
            _table(steps, step_head),
            "<h2>Over time</h2>",
            *(f"<div>{chart}</div>" for chart in charts[:3]),
            f"<div>{charts[3]}</div>",
            cpu_note,
            f"<div>{charts[4]}</div>",
            "<h2>Errors and close codes</h2>",
            _table(problems, ["kind", "count"]) if problems else "<p>none</p>",
            "<h2>Churn</h2>",
            _table(list(result["churn"].items())),
            "<h2>Options</h2>",
            f"<pre>{esc(json.dumps(result['options'], indent=2))}</pre>",
            "</body></html>\n",
        ]
    )


Series = list[tuple[float, float | None]]


def _cpu_series(result: dict[str, Any]) -> list[tuple[str, Series]]:
    """The CPU chart's lines: the server's (without the embedded servers) and the
    embedded servers' only when measured, then the generator and the rest."""
    samples = result.get("cpu_samples", [])
    lines: list[tuple[str, Series]] = []
    server = result.get("server")
    if server:
        lines.append(("server", _busy(samples, "server_proper")))
        if any(p.get("role") == "embedded" for p in server.get("processes", [])):
            lines.append(("embedded", _busy(samples, "embedded")))
    lines.append(("generator", _busy(samples, "generator")))
    lines.append(("other", _busy(samples, "other")))
    return lines


def _busy(samples: list[dict[str, Any]], key: str) -> Series:
    """Percent of a core busy between consecutive cumulative CPU samples; "other" is
    the machine's busy time less the server's (embedded servers included) and the
    generator's (never below 0); "server_proper" is the server's less its embedded
    servers'."""

    def cpu(sample: dict[str, Any]) -> float | None:
        if key == "server_proper":
            return float(sample["server"]) - float(sample.get("embedded", 0.0))
        if key != "other":
            return float(sample.get(key, 0.0))
        machine = sample.get("machine")
        return None if machine is None else machine - sample["server"] - sample["generator"]

    out: list[tuple[float, float | None]] = []
    for a, b in itertools.pairwise(samples):
        seconds, before, after = b["t"] - a["t"], cpu(a), cpu(b)
        if seconds > 0:
            busy = None if before is None or after is None else (after - before) / seconds * 100
            # /proc/stat and the processes' own figures tick apart: "other" can dip below 0
            out.append((b["t"], None if busy is None else max(busy, 0.0)))
    return out


def _trio(summary: dict[str, Any]) -> str:
    return " / ".join(_ms(summary[k]) for k in ("p50", "p99", "max"))


def _machine(m: dict[str, Any]) -> str:
    parts = [f"{m.get('cpus')} CPUs", m.get("cpu_model", ""), f"Python {m.get('python')}"]
    if "memory_gib" in m:
        parts.append(f"{m['memory_gib']} GiB")
    return ", ".join(p for p in parts if p)


def write_html(result: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(result))
