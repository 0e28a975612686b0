"""A load-test worker process: `python -m wsfan.loadtest.worker`, driven over its pipes.

The coordinator writes JSON lines to the worker's stdin: first the job
(`{"role": "subscribers" | "publisher", "index", "options", "t0", ...}`, t0 being
the test's start in ns since the epoch, second 0 of every timeline), later
`{"t": "go", "per_channel": {...}}`, `{"t": "calm"}` (publishing is over: stop churning)
and `{"t": "stop"}`. The worker answers with JSON
lines on stdout: `status` every `STATUS_INTERVAL`, `ready` once connected,
`final` with everything it measured when told to stop. End of stdin means the
coordinator is gone: the worker closes its connections and exits, so no worker
outlives its test. Each worker has its own event loop and its own share of the
open-files limit.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from ..loops import loop_factory
from .options import Options

__all__ = ["STATUS_INTERVAL", "WorkerIO", "decode_options", "encode_options", "main"]

STATUS_INTERVAL = 0.5  # seconds between status lines


def encode_options(options: Options) -> dict[str, Any]:
    """Options as JSON for a worker, secrets included (they go down a private pipe)."""
    d = asdict(options)
    d["out"] = d["report"] = None
    d["extra"] = {}
    return d


def decode_options(d: dict[str, Any]) -> Options:
    names = {f.name for f in fields(Options)}
    values = {k: v for k, v in d.items() if k in names}
    for key in ("urls", "rates", "server_pids"):
        values[key] = tuple(values.get(key, ()))
    for key in ("out", "report"):
        values[key] = Path(values[key]) if values.get(key) else None
    return Options(**values)


def own_cpu() -> float:
    t = os.times()
    return t.user + t.system


class WorkerIO:
    """JSON lines on stdout, commands from stdin; `stopped` is set by stop or EOF."""

    def __init__(self) -> None:
        self.go: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.stopped = asyncio.Event()
        self.calm = asyncio.Event()
        self._reader: asyncio.StreamReader | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> dict[str, Any]:
        """Attach to stdin and return the job (the first line)."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=64 << 20)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        self._reader = reader
        line = await reader.readline()
        if not line:
            raise SystemExit(0)
        job: dict[str, Any] = json.loads(line)
        self._task = loop.create_task(self._commands())
        return job

    async def _commands(self) -> None:
        assert self._reader is not None
        while True:
            line = await self._reader.readline()
            if not line:
                break
            command = json.loads(line)
            if command.get("t") == "go" and not self.go.done():
                self.go.set_result(command)
            elif command.get("t") == "calm":
                self.calm.set()
            elif command.get("t") == "stop":
                break
        self.calm.set()
        self.stopped.set()
        if not self.go.done():
            self.go.cancel()

    @staticmethod
    def emit(kind: str, **body: Any) -> None:
        body["t"] = kind
        body["cpu"] = own_cpu()
        sys.stdout.write(json.dumps(body, separators=(",", ":")) + "\n")
        sys.stdout.flush()

    async def wait_go(self) -> dict[str, Any] | None:
        """The go command, or None when told to stop first."""
        try:
            return await self.go
        except asyncio.CancelledError:
            if self.stopped.is_set():
                return None
            raise


async def _main() -> int:
    io = WorkerIO()
    job = await io.start()
    options = decode_options(job["options"])
    try:
        if job["role"] == "publisher":
            from .publisher import run_publisher

            await run_publisher(options, io, job["t0"])
        else:
            from .subscribers import run_subscribers

            await run_subscribers(options, io, range(*job["clients"]), job["workers"], job["t0"])
    except Exception as exc:  # the coordinator reports it; the traceback goes to stderr
        io.emit("failed", error=f"{type(exc).__name__}: {exc}")
        raise
    return 0


def main(argv: list[str]) -> int:
    """`python -m wsfan.loadtest.worker [LOOP]`: LOOP as `wsfan.loops` knows them."""
    factory = loop_factory(argv[0] if argv else "auto")
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(_main())
    except KeyboardInterrupt:  # the coordinator's terminal got Ctrl-C too
        return 130
    except BrokenPipeError:  # the coordinator is gone
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
