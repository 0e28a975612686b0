"""The coordinator: starts the worker processes, walks them through the phases,
collects what they measured and hands it to `results.build`.

Phases: connect (every subscriber worker opens its share and reports `ready`),
run (`go`; the publisher walks the rate ramp while subscribers count
deliveries), drain (until every expected delivery arrived, nothing arrived for
`drain` seconds, or `drain_max` passed), stop (final reports, connections
closed, processes gone).
Every wait is bounded; a worker that fails or dies ends the test with
`LoadTestError` carrying its stderr, and no worker outlives the coordinator.

Besides what the workers report, the coordinator reads /proc itself: the
server processes' resident memory before any client connects and once all are
subscribed (idle, before publishing), and the CPU time of the server and of
every load-test process every `CPU_SAMPLE` seconds from `go` to the end of the
drain, which `results.build` turns into CPU per ramp step.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .metrics import Histogram, cpu_seconds
from .options import Options
from .progress import Progress, Snapshot
from .results import CpuSample, build
from .targets import EMBEDDED, Measured, follow
from .worker import encode_options

__all__ = ["LoadTestError", "run", "run_async"]

TICK = 0.5  # seconds between progress updates
EXIT_TIMEOUT = 10.0  # seconds a worker gets to exit after stop before it is killed
STDERR_KEEP = 16 << 10
CPU_SAMPLE = 0.25  # seconds between CPU samples while publishing and draining
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def rss_bytes(pid: int) -> int | None:
    """Resident memory of a process from /proc; None when it is gone or unreadable."""
    try:
        fields = Path(f"/proc/{pid}/statm").read_text().split()
        return int(fields[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def machine_cpu_seconds() -> float | None:
    """Busy CPU seconds of the whole machine so far (every CPU, steal included),
    from /proc/stat; None where it cannot be read."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / _CLK_TCK


def generator_cores() -> int:
    """CPUs the load generator may run on (its worker processes inherit this affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class LoadTestError(RuntimeError):
    """The test could not run to the end (a worker failed, nothing could connect...)."""


class Worker:
    """One worker process and the latest of what it said."""

    def __init__(self, role: str, index: int, proc: asyncio.subprocess.Process) -> None:
        self.role = role
        self.index = index
        self.proc = proc
        self.ready: dict[str, Any] | None = None
        self.status: dict[str, Any] = {}
        self.done: dict[str, Any] | None = None
        self.final: dict[str, Any] | None = None
        self.failed: str | None = None
        self.cpu_ready = 0.0
        self.cpu = 0.0
        self.stderr = b""
        self.changed = asyncio.Event()

    @property
    def name(self) -> str:
        return self.role if self.role == "publisher" else f"worker {self.index}"

    def send(self, kind: str, **body: Any) -> None:
        stdin = self.proc.stdin
        if stdin is not None and not stdin.is_closing():
            body["t"] = kind
            stdin.write(json.dumps(body).encode() + b"\n")

    def problem(self) -> str | None:
        """Why this worker cannot go on, if it cannot."""
        if self.failed:
            return f"{self.name} failed: {self.failed}"
        if self.proc.returncode is not None and self.final is None:
            tail = self.stderr.decode(errors="replace")[-2000:]
            return f"{self.name} exited with {self.proc.returncode}:\n{tail}"
        return None


class Coordinator:
    def __init__(
        self,
        options: Options,
        progress: Progress | None,
        memory_pids: tuple[int, ...] | None = None,
    ) -> None:
        self.options = options
        # --server-pid followed to workers and embedded servers (targets.py)
        self.measured = follow(options.server_pids)
        self.measured += [
            Measured(pid, EMBEDDED, "broker", pid)
            for pid in options.broker_pids
            if pid not in {m.pid for m in self.measured}
        ]
        self.server_pids = tuple(m.pid for m in self.measured)
        if memory_pids is None:  # the server proper, not the embedded servers beside it
            memory_pids = tuple(m.pid for m in self.measured if m.role != EMBEDDED)
        self.memory_pids = memory_pids
        self.rss_before: dict[int, int | None] = {}
        self.rss_subscribed: dict[int, int | None] = {}
        self.cpu_samples: list[CpuSample] = []
        self._sampler: asyncio.Task[None] | None = None
        self.progress = progress
        self.subscribers: list[Worker] = []
        self.publisher: Worker | None = None
        self.timeline: dict[int, Histogram] = {}  # latency by second since go
        self.step_latency: dict[int, Histogram] = {}  # latency by ramp step
        self.published_timeline: dict[int, int] = {}
        self.samples: list[dict[str, Any]] = []
        self.start = time.monotonic()
        self.t0 = time.time_ns()  # second 0 of the timelines: the test's start
        self.t0_monotonic = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self.server_cpu_start: dict[int, float] = {}

    @property
    def workers(self) -> list[Worker]:
        return [*self.subscribers, *([self.publisher] if self.publisher else [])]

    # Processes ----------------------------------------------------------------------

    async def _spawn(self, role: str, index: int, job: dict[str, Any]) -> Worker:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "wsfan.loadtest.worker",
            self.options.loop,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=256 << 20,
        )
        worker = Worker(role, index, proc)
        loop = asyncio.get_running_loop()
        self._tasks += [
            loop.create_task(self._read(worker)),
            loop.create_task(self._read_stderr(worker)),
        ]
        worker.send(
            "job",
            role=role,
            index=index,
            options=encode_options(self.options),
            t0=self.t0,
            **job,
        )
        return worker

    async def _read(self, worker: Worker) -> None:
        assert worker.proc.stdout is not None
        while line := await worker.proc.stdout.readline():
            try:
                message = json.loads(line)
            except ValueError:  # not ours (a library printing?): keep it with stderr
                worker.stderr = (worker.stderr + line)[-STDERR_KEEP:]
                continue
            kind = message.get("t")
            worker.cpu = float(message.get("cpu", worker.cpu))
            if kind == "status":
                worker.status = message
                self._merge(worker, message)
            elif kind == "ready":
                worker.ready = message
                worker.cpu_ready = worker.cpu
            elif kind == "done":
                worker.done = message
            elif kind == "final":
                worker.final = message
                self._merge(worker, message)
            elif kind == "failed":
                worker.failed = str(message.get("error"))
            worker.changed.set()
        await worker.proc.wait()
        worker.changed.set()

    async def _read_stderr(self, worker: Worker) -> None:
        assert worker.proc.stderr is not None
        while chunk := await worker.proc.stderr.read(4096):
            worker.stderr = (worker.stderr + chunk)[-STDERR_KEEP:]

    def _merge(self, worker: Worker, message: dict[str, Any]) -> None:
        if worker.role == "publisher":
            for second, n in message.get("timeline", {}).items():
                key = int(second)
                self.published_timeline[key] = self.published_timeline.get(key, 0) + int(n)
            return
        for second, steps in message.get("latency", {}).items():
            per_second = self.timeline.setdefault(int(second), Histogram())
            for step, data in steps.items():
                h = Histogram.from_dict(data)
                per_second.merge(h)
                self.step_latency.setdefault(int(step), Histogram()).merge(h)

    async def _until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait until `condition()`, updating progress; LoadTestError on a worker problem
        or when `timeout` passes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not condition():
            for worker in self.workers:
                if problem := worker.problem():
                    raise LoadTestError(problem)
            if loop.time() >= deadline:
                raise LoadTestError(f"timed out after {timeout:.0f} s {what}")
            await asyncio.sleep(min(TICK, max(deadline - loop.time(), 0.01)))
            self._tick()

    async def _shutdown(self) -> None:
        for worker in self.workers:
            worker.send("stop")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + EXIT_TIMEOUT
        for worker in self.workers:
            try:
                await asyncio.wait_for(worker.proc.wait(), max(deadline - loop.time(), 0.1))
            except TimeoutError:
                worker.proc.kill()  # our own child, by its PID
                await worker.proc.wait()

    # Progress -------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        subs = self.subscribers
        pub = self.publisher.status if self.publisher else {}
        recent = [self.timeline[s] for s in sorted(self.timeline)[-2:]]
        p99 = Histogram.merged(recent).percentile(0.99)
        return Snapshot(
            elapsed=time.monotonic() - self.start,
            running=self.t0_monotonic > 0,
            since_go=time.monotonic() - self.t0_monotonic if self.t0_monotonic else 0.0,
            step=int(pub.get("step", 0)),
            steps=len(self.options.rates),
            rate=self.options.rates[int(pub.get("step", 0))],
            clients=self.options.clients,
            connected=sum(int(w.status.get("connected", 0)) for w in subs),
            subscribed=sum(int(w.status.get("subscribed", 0)) for w in subs),
            published=int(pub.get("acked", 0)),
            deliveries=sum(int(w.status.get("deliveries", 0)) for w in subs),
            gaps=sum(int(w.status.get("gaps", 0)) for w in subs),
            duplicates=sum(int(w.status.get("duplicates", 0)) for w in subs),
            errors=sum(int(w.status.get("errors", 0)) for w in subs)
            + sum(int(v) for v in pub.get("errors", {}).values()),
            p99_ms=None if p99 is None else p99 / 1000,
            generator_cpu=sum(w.cpu for w in self.workers) + (cpu_seconds() or 0.0),
            server_cpu=sum(self._server_cpu().values()),
        )

    def _tick(self) -> None:
        snap = self.snapshot()
        self.samples.append(
            {
                "t": round(snap.elapsed, 2),
                "connected": snap.connected,
                "subscribed": snap.subscribed,
                "deliveries": snap.deliveries,
                "published": snap.published,
                "generator_cpu": round(snap.generator_cpu, 3),
            }
        )
        if self.progress is not None:
            self.progress.update(snap)

    # The test -----------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        options = self.options
        shares = options.shares()
        self.server_cpu_start = self._server_cpu()
        self.rss_before = self._rss()
        try:
            publishes = any(options.rates)
            for index, share in enumerate(shares):
                job = {"clients": [share.start, share.stop], "workers": len(shares)}
                self.subscribers.append(await self._spawn("subscribers", index, job))
            if publishes:
                self.publisher = await self._spawn("publisher", 0, {})
            return await self._phases(publishes)
        finally:
            if self._sampler is not None:
                self._sampler.cancel()
            await self._shutdown()
            if self.progress is not None:
                self.progress.finish()

    async def _phases(self, publishes: bool) -> dict[str, Any]:
        options = self.options
        rounds = options.clients / (options.connect_concurrency * len(self.subscribers)) + 1
        connect_budget = (options.clients / options.ramp if options.ramp else 0) + 30
        connect_budget += rounds * options.connect_timeout
        await self._until(
            lambda: all(w.ready is not None for w in self.workers), connect_budget, "connecting"
        )
        connect_seconds = time.monotonic() - self.start
        per_channel: dict[str, int] = {}
        for w in self.subscribers:
            for channel, n in (w.ready or {}).get("per_channel", {}).items():
                per_channel[channel] = per_channel.get(channel, 0) + int(n)
        self.rss_subscribed = self._rss()
        cpu_own, server_cpu = cpu_seconds() or 0.0, self._server_cpu()
        server_cpu_connect = {
            pid: cpu - self.server_cpu_start.get(pid, 0.0) for pid, cpu in server_cpu.items()
        }
        self.t0_monotonic = time.monotonic()
        self._sample_cpu()
        go_at = self.cpu_samples[-1].t
        for worker in self.workers:
            worker.send("go", per_channel=per_channel)
        self._sampler = asyncio.get_running_loop().create_task(self._cpu_sampler())
        plan = options.total_seconds + options.connect_timeout + 30
        if self.publisher is not None:
            publisher = self.publisher
            await self._until(lambda: publisher.done is not None, plan, "publishing")
        else:
            await self._until(
                lambda: time.monotonic() - self.t0_monotonic >= options.total_seconds,
                plan,
                "holding connections",
            )
        publish_seconds = time.monotonic() - self.t0_monotonic
        publish_end = (time.time_ns() - self.t0) / 1e9
        for worker in self.subscribers:
            worker.send("calm")
        expected = 0
        if self.publisher is not None:
            publisher = self.publisher
            await self._until(
                lambda: publisher.final is not None,
                options.drain_max + 10,
                "waiting for acknowledgements",
            )
            expected = sum(int(s["expected"]) for s in (publisher.final or {})["steps"])
            subscribed = sum(int((w.ready or {}).get("subscribed", 0)) for w in self.subscribers)
            await self._drain(expected, subscribed, options.drain, options.drain_max)
        self._sampler.cancel()
        self._sample_cpu()
        server_cpu_end = self.cpu_samples[-1].server
        server_cpu_run = {pid: cpu - server_cpu[pid] for pid, cpu in server_cpu_end.items()}
        for worker in self.subscribers:
            worker.send("stop")
        await self._until(
            lambda: all(w.final is not None for w in self.subscribers),
            EXIT_TIMEOUT + 10,
            "collecting results",
        )
        self._tick()
        return build(
            options,
            subscribers=[w.final or {} for w in self.subscribers],
            readies=[w.ready or {} for w in self.subscribers],
            publisher=self.publisher.final if self.publisher else None,
            timeline=self.timeline,
            step_latency=self.step_latency,
            published_timeline=self.published_timeline,
            samples=self.samples,
            connect_seconds=connect_seconds,
            publish_seconds=publish_seconds,
            generator_cpu_connect=sum(w.cpu_ready for w in self.workers),
            generator_cpu_run={
                "subscribers": sum(w.cpu - w.cpu_ready for w in self.subscribers),
                "publisher": self.publisher.cpu - self.publisher.cpu_ready
                if self.publisher
                else 0.0,
                "coordinator": (cpu_seconds() or 0.0) - cpu_own,
            },
            server_cpu_run=server_cpu_run if options.server_pids else None,
            server_cpu_connect=server_cpu_connect,
            cpu_samples=self.cpu_samples,
            go_at=go_at,
            publish_end=publish_end,
            generator_cores=generator_cores(),
            memory_pids=self.memory_pids,
            server_processes=[m.to_dict() for m in self.measured],
            rss_before=self.rss_before,
            rss_subscribed=self.rss_subscribed,
        )

    async def _drain(self, expected: int, subscribed: int, quiet: float, longest: float) -> None:
        """Until every expected delivery arrived and every client subscribed at the
        start is back (churn), nothing arrived for `quiet` seconds, or `longest`
        seconds passed."""
        start = last_change = time.monotonic()
        seen = self.snapshot().deliveries

        def done() -> bool:
            nonlocal seen, last_change
            now, delivered = time.monotonic(), self.snapshot().deliveries
            if delivered != seen:
                seen, last_change = delivered, now
            complete = delivered >= expected and self.snapshot().subscribed >= subscribed
            return complete or now - last_change > quiet or now - start > longest

        await self._until(done, longest + 5, "draining")

    def _server_cpu(self) -> dict[int, float]:
        return {pid: cpu_seconds(pid) or 0.0 for pid in self.server_pids}

    def _rss(self) -> dict[int, int | None]:
        return {pid: rss_bytes(pid) for pid in self.memory_pids}

    def _generator_cpu(self) -> float:
        """CPU seconds so far of every load-test process, read from /proc (a worker
        already gone counts with what it last reported)."""
        own = cpu_seconds() or 0.0
        return own + sum(cpu_seconds(w.proc.pid) or w.cpu for w in self.workers)

    def _sample_cpu(self) -> None:
        self.cpu_samples.append(
            CpuSample(
                t=(time.time_ns() - self.t0) / 1e9,
                server=self._server_cpu(),
                generator=self._generator_cpu(),
                machine=machine_cpu_seconds(),
            )
        )

    async def _cpu_sampler(self) -> None:
        """A CPU sample every `CPU_SAMPLE` seconds after go, on a fixed grid (so step
        boundaries, whole multiples of the step length, fall on a sample)."""
        loop = asyncio.get_running_loop()
        start, n = loop.time(), 0
        while True:
            n += 1
            await asyncio.sleep(max(start + n * CPU_SAMPLE - loop.time(), 0.0))
            self._sample_cpu()


async def run_async(
    options: Options,
    progress: Progress | None = None,
    *,
    memory_pids: tuple[int, ...] | None = None,
) -> dict[str, Any]:
    """Run one load test in the running event loop and return its result (see results.py).

    The loop stays free while the test runs (the clients live in worker
    processes), so a server under test may share it. `options.server_pids` are
    followed to their workers and the embedded servers they use (targets.py).
    `memory_pids`: the server processes proper, whose resident memory is divided
    per connection (default: the followed processes but the embedded servers;
    leave out a broker such as Redis that runs beside them).
    """
    return await Coordinator(options.checked(), progress, memory_pids).run()


def run(options: Options, *, memory_pids: tuple[int, ...] | None = None) -> dict[str, Any]:
    """`run_async` in a fresh event loop, with a progress line when `options.progress`."""
    progress = Progress(sys.stderr) if options.progress else None
    return asyncio.run(run_async(options, progress, memory_pids=memory_pids))
