"""The live progress line: one line rewritten in place on a terminal, a line every
few seconds otherwise (so logs stay readable)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TextIO

__all__ = ["Progress", "Snapshot", "format_line"]

PLAIN_INTERVAL = 5.0  # seconds between lines when the output is not a terminal


@dataclass(frozen=True)
class Snapshot:
    """Totals across all workers at one moment."""

    elapsed: float
    running: bool  # publishing has started
    since_go: float
    step: int
    steps: int
    rate: float
    clients: int
    connected: int
    subscribed: int
    published: int
    deliveries: int
    gaps: int
    duplicates: int
    errors: int
    p99_ms: float | None
    generator_cpu: float  # CPU seconds so far, all load-test processes
    server_cpu: float  # CPU seconds so far of the --server-pid processes


def _rate(now: float, before: float, seconds: float) -> float:
    return (now - before) / seconds if seconds > 0 else 0.0


def format_line(snap: Snapshot, last: Snapshot | None) -> str:
    """One status line; rates are over the time since `last`."""
    seconds = snap.elapsed - last.elapsed if last else 0.0
    gen = _rate(snap.generator_cpu, last.generator_cpu if last else 0.0, seconds) * 100
    head = f"[{snap.elapsed:6.1f}s] subscribed {snap.subscribed:,}/{snap.clients:,}"
    if not snap.running:
        conn_rate = _rate(snap.subscribed, last.subscribed if last else 0, seconds)
        return f"{head} ({conn_rate:,.0f}/s) errors {snap.errors:,} gen CPU {gen:.0f}%"
    delivered = _rate(snap.deliveries, last.deliveries if last else 0, seconds)
    p99 = "-" if snap.p99_ms is None else f"{snap.p99_ms:,.1f}ms"
    line = (
        f"{head} step {snap.step + 1}/{snap.steps} @{snap.rate:g}/s "
        f"pub {snap.published:,} deliv {delivered:,.0f}/s p99 {p99} "
        f"gaps {snap.gaps:,} dups {snap.duplicates:,} errors {snap.errors:,} gen CPU {gen:.0f}%"
    )
    if snap.server_cpu:
        srv = _rate(snap.server_cpu, last.server_cpu if last else 0.0, seconds) * 100
        line += f" server CPU {srv:.0f}%"
    return line


class Progress:
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.last: Snapshot | None = None
        self.printed_at = 0.0
        self.width = 0

    def update(self, snap: Snapshot) -> None:
        line = format_line(snap, self.last)
        self.last = snap
        if self.tty:
            pad = max(self.width - len(line), 0)
            self.stream.write("\r" + line + " " * pad)
            self.width = len(line)
        elif time.monotonic() - self.printed_at >= PLAIN_INTERVAL:
            self.printed_at = time.monotonic()
            self.stream.write(line + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty and self.width:
            self.stream.write("\n")
            self.stream.flush()
