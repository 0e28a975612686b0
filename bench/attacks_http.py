#!/usr/bin/env python3
"""Hostile clients on the HTTP side of a real `run.py`, and what they cost it.

Scenarios (loopback only; each runs a few seconds and stops by itself):

- `slowloris`: ATTACKERS connections send a request head one header line at a
  time, slowly, and open a new connection whenever the server drops one.
- `fds`: the server runs under a low open-files limit (`ulimit -n`) while
  attackers open connections that send nothing, as many as the server accepts.
  Afterwards the attackers leave and a normal request must be served again.
- `nesting`: API bodies nested 100,000 deep (JSON and msgpack), and a `channels`
  pattern of 1,000 nested braces.

Meanwhile a normal client measures its round trips: a new connection with a
`GET /healthz`, and an `rpc` command on a WebSocket opened before the attack.
Figures: the server's RSS growth (VmRSS) and CPU time (from /proc), its log
lines and tracebacks (stderr), the normal client's p99 and failures.

    python bench/attacks_http.py                      # this checkout
    python bench/attacks_http.py --root /tmp/before   # another checkout's run.py

The same pieces serve tests/test_attack_http.py.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import http.client
import json
import os
import platform
import resource
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from wsfan.api.keys import DEVELOPMENT_KEY  # noqa: E402
from wsfan.embedded import free_port  # noqa: E402

from tests.attack import cpu_seconds, rss  # noqa: E402

__all__ = [
    "Attackers",
    "Probes",
    "Watch",
    "WsProbe",
    "api_post",
    "cpu_seconds",
    "http_round_trip",
    "log_lines",
    "open_files",
    "p99",
    "rss",
    "server_env",
    "start_server",
    "wait_ready",
]

# /proc ----------------------------------------------------------------------------


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class Watch:
    """What a process spends while the block runs: peak RSS growth, CPU seconds,
    and the lines (and tracebacks) its stderr file gained."""

    def __init__(self, pid: int, stderr: Path, interval: float = 0.02) -> None:
        self.pid, self.stderr, self.interval = pid, stderr, interval
        self.rss_before = self.rss_peak = 0
        self.cpu = self.seconds = 0.0
        self.log_lines = self.tracebacks = 0
        self.max_open_files = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @property
    def rss_growth(self) -> int:
        return self.rss_peak - self.rss_before

    @property
    def cpu_share(self) -> float:
        """CPU seconds per second of the block (1.0: one core busy all along)."""
        return self.cpu / self.seconds if self.seconds else 0.0

    def __enter__(self) -> Watch:
        self.rss_before = self.rss_peak = rss(self.pid)
        self._cpu0 = cpu_seconds(self.pid)
        self._t0 = time.monotonic()
        self._offset = self.stderr.stat().st_size
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        with contextlib.suppress(OSError, ValueError):
            self.rss_peak = max(self.rss_peak, rss(self.pid))
            self.cpu = cpu_seconds(self.pid) - self._cpu0
        self.seconds = time.monotonic() - self._t0
        self.log_lines, self.tracebacks = log_lines(self.stderr, self._offset)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.rss_peak = max(self.rss_peak, rss(self.pid))
                self.max_open_files = max(self.max_open_files, open_files(self.pid))
            except (OSError, ValueError):  # the process is gone
                return


def log_lines(path: Path, offset: int = 0) -> tuple[int, int]:
    """Lines (besides Tornado's access log) and tracebacks in a log file from byte
    `offset` on."""
    lines = tracebacks = 0
    with path.open("rb") as f:
        f.seek(offset)
        for line in f:
            if b" tornado.access: " not in line:
                lines += 1
            if line.startswith(b"Traceback (most recent call last)"):
                tracebacks += 1
    return lines, tracebacks


# The server -------------------------------------------------------------------------


def server_env(**settings: str) -> dict[str, str]:
    """This environment without backing-server URLs or WSFAN_ keys; one worker on the
    memory broker, nothing embedded; plus `settings` as WSFAN_ variables."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("REDIS_URL", "MONGO_URL") and not k.startswith("WSFAN_")
    }
    env.update(
        WSFAN_BROKER__TYPE="memory", WSFAN_EMBEDDED__ENABLED="false", WSFAN_SERVER__WORKERS="1"
    )
    env.update({f"WSFAN_{k.upper()}": v for k, v in settings.items()})
    return env


def _limit_open_files(limit: int | None) -> Callable[[], None] | None:
    if limit is None:
        return None

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    return apply


def start_server(
    env: dict[str, str],
    stderr: Path,
    port: int | None = None,
    open_files_limit: int | None = None,
    root: Path = ROOT,
) -> tuple[subprocess.Popen[bytes], int]:
    """`run.py` of checkout `root` on a free loopback port (stderr to a file), with
    `ulimit -n` of `open_files_limit`; not waited for (see `wait_ready`)."""
    port = port or free_port()
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, str(root / "run.py"), "--host", "127.0.0.1", "--port", str(port)],
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            preexec_fn=_limit_open_files(open_files_limit),
        )
    return proc, port


def wait_ready(proc: subprocess.Popen[bytes], port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"run.py exited with {proc.returncode}")
        if http_round_trip(port, "/readyz") is not None:
            return
        time.sleep(0.05)
    raise RuntimeError(f"run.py not ready within {timeout:g}s")


# A normal client --------------------------------------------------------------------


def http_round_trip(port: int, path: str = "/healthz", timeout: float = 2.0) -> float | None:
    """Seconds for a GET on a new connection answered 200, or None when it failed."""
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return time.perf_counter() - start if response.status == 200 else None
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def _masked(payload: bytes, opcode: int = 0x1) -> bytes:
    key = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode])
    head += bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack("!H", n)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class WsProbe:
    """A well-behaved WebSocket client (JSON protocol) on a blocking socket."""

    def __init__(self, port: int, timeout: float = 2.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self._buf = b""
        self._id = 0
        try:
            self._handshake(port)
        except BaseException:
            self.sock.close()
            raise

    def _handshake(self, port: int) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                "GET /connection/websocket HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        while b"\r\n\r\n" not in self._buf:
            self._fill()
        head, _, self._buf = self._buf.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(head[:80].decode(errors="replace"))
        self.command("connect", {})

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed by the server")
        self._buf += chunk

    def _frame(self) -> bytes:
        while True:
            while len(self._buf) < 2:
                self._fill()
            n, skip = self._buf[1] & 0x7F, 2
            if n == 126:
                while len(self._buf) < 4:
                    self._fill()
                n, skip = struct.unpack("!H", self._buf[2:4])[0], 4
            elif n == 127:
                while len(self._buf) < 10:
                    self._fill()
                n, skip = struct.unpack("!Q", self._buf[2:10])[0], 10
            while len(self._buf) < skip + n:
                self._fill()
            opcode = self._buf[0] & 0x0F
            payload, self._buf = self._buf[skip : skip + n], self._buf[skip + n :]
            if opcode == 0x8:
                raise ConnectionError("close frame")
            if opcode in (0x1, 0x2):
                return payload

    def command(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self._id += 1
        self.sock.sendall(_masked(json.dumps({"id": self._id, method: params}).encode()))
        while True:
            for line in self._frame().split(b"\n"):
                message = json.loads(line)
                if message.get("id") == self._id:
                    return dict(message)

    def round_trip(self) -> float | None:
        """Seconds for one command's reply (an `rpc` nobody handles), or None."""
        start = time.perf_counter()
        try:
            self.command("rpc", {"method": "probe"})
        except (OSError, ValueError):
            return None
        return time.perf_counter() - start

    def close(self) -> None:
        self.sock.close()


@dataclass
class Probes:
    """A normal client's round trips while something else goes on."""

    http: list[float | None] = field(default_factory=list)
    ws: list[float | None] = field(default_factory=list)

    def run(self, port: int, ws: WsProbe | None, seconds: float, pause: float = 0.02) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.http.append(http_round_trip(port))
            if ws is not None:
                self.ws.append(ws.round_trip())
            time.sleep(pause)

    @staticmethod
    def summary(values: list[float | None]) -> str:
        done = [v for v in values if v is not None]
        failed = len(values) - len(done)
        worst = p99(values)
        text = (
            "no answer"
            if not done
            else f"p50 {median(done) * 1e3:.0f} ms, p99 "
            + ("timed out" if worst == float("inf") else f"{worst * 1e3:.0f} ms")
        )
        return text + (f", {failed}/{len(values)} failed" if failed else "")


def p99(values: list[float | None], missing: float = float("inf")) -> float:
    """The 99th percentile, a failed round trip (None) counting as `missing`."""
    ordered = sorted(missing if v is None else v for v in values)
    if not ordered:
        return missing
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def api_post(
    port: int, method: str, body: bytes, msgpack: bool = False, timeout: float = 10.0
) -> tuple[int, bytes]:
    """(status, body) of POST /api/<method> with the development key."""
    kind = "application/msgpack" if msgpack else "application/json"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(
            "POST",
            f"/api/{method}",
            body,
            {"X-API-Key": DEVELOPMENT_KEY, "Content-Type": kind},
        )
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


# Attackers --------------------------------------------------------------------------

SLOW_HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"


class Attackers:
    """`count` connections kept open against the server by a process of their own
    (so its work does not slow the measuring client down).

    Each sends `head` (maybe nothing), then, every `period` seconds, one more header
    line of a head that never ends. A connection the server drops is replaced at
    once (at most `count` open). `open`: how many the server has not dropped;
    after the block, `lifetimes` says how long the server kept each it dropped.
    """

    def __init__(self, port: int, count: int, head: bytes = SLOW_HEAD, period: float = 0.5) -> None:
        self._args = json.dumps([port, count, head.hex(), period])
        self.open = self.opened = 0
        self.lifetimes: list[float] = []
        self._process: subprocess.Popen[str] | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)

    def __enter__(self) -> Attackers:
        self._process = subprocess.Popen(
            [sys.executable, __file__, "--attack", self._args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._reader.start()
        return self

    def __exit__(self, *exc: object) -> None:
        process = self._process
        assert process is not None and process.stdin is not None
        process.stdin.close()  # the attackers stop at the end of their input
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        self._reader.join(5)
        if process.stdout is not None:
            process.stdout.close()

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            report = json.loads(line)
            self.open, self.opened = report["open"], report["opened"]
            self.lifetimes = report.get("lifetimes", self.lifetimes)

    def wait_open(self, at_least: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.open < at_least and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.open >= at_least


def _attack(port: int, count: int, head: bytes, period: float) -> None:
    """The attackers' process: runs until its standard input ends, reporting on stdout."""
    lifetimes: list[float] = []
    state = {"open": 0, "opened": 0}
    stop = asyncio.Event()

    async def one(slots: asyncio.Semaphore) -> None:
        writer = None
        try:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                return
            state["opened"] += 1
            state["open"] += 1
            start = time.monotonic()
            try:
                if head:
                    writer.write(head)
                line = 0
                while not stop.is_set():
                    try:
                        if await asyncio.wait_for(reader.read(4096), period) == b"":
                            break  # dropped by the server
                    except TimeoutError:
                        if head:
                            line += 1
                            writer.write(b"X-%d: %d\r\n" % (line, line))
                    except OSError:
                        break
                else:
                    return  # stopped: not a lifetime the server chose
                lifetimes.append(time.monotonic() - start)
            finally:
                state["open"] -= 1
        finally:
            if writer is not None:
                writer.close()
            slots.release()

    async def report() -> None:
        while not stop.is_set():
            print(json.dumps(state), flush=True)
            await asyncio.sleep(0.05)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(sys.stdin.fileno(), lambda: sys.stdin.read() or stop.set())
        reporter = asyncio.ensure_future(report())
        slots = asyncio.Semaphore(count)
        tasks: set[asyncio.Task[None]] = set()
        while not stop.is_set():
            try:
                await asyncio.wait_for(slots.acquire(), 0.05)
            except TimeoutError:
                continue
            task = asyncio.ensure_future(one(slots))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks, reporter, return_exceptions=True)
        print(json.dumps({**state, "lifetimes": lifetimes}), flush=True)

    asyncio.run(main())


# Scenarios --------------------------------------------------------------------------

ATTACK_SECONDS = 6.0


def _served(
    env: dict[str, str], tmp: Path, name: str, root: Path, limit: int | None = None
) -> tuple[subprocess.Popen[bytes], int, Path]:
    stderr = tmp / f"{name}.stderr"
    proc, port = start_server(env, stderr, open_files_limit=limit, root=root)
    wait_ready(proc, port)
    return proc, port, stderr


@contextlib.contextmanager
def _stopped(proc: subprocess.Popen[bytes]) -> Iterator[None]:
    try:
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def slowloris(root: Path, tmp: Path, attackers: int = 1000) -> dict[str, str]:
    env = server_env(
        SERVER__HEAD_TIMEOUT="2", SERVER__MAX_PENDING_CONNECTIONS="256", LOG__REPEAT_INTERVAL="2"
    )
    proc, port, stderr = _served(env, tmp, "slowloris", root)
    with _stopped(proc):
        ws = WsProbe(port)
        probes = Probes()
        with Watch(proc.pid, stderr) as watch, Attackers(port, attackers) as attack:
            attack.wait_open(min(attackers, 256), 5.0)
            probes.run(port, ws, ATTACK_SECONDS)
            held = attack.open
        ws.close()
    kept = max(attack.lifetimes, default=0.0)
    return {
        "attack connections open at the end": str(held),
        "longest the server kept an attacker": f"{kept:.1f} s"
        if attack.lifetimes
        else f"never dropped one (> {ATTACK_SECONDS:g} s)",
        "RSS growth": f"{watch.rss_growth / 2**20:.1f} MB",
        "server CPU": f"{watch.cpu_share * 100:.0f}%",
        "log lines": str(watch.log_lines),
        "new request round trip": Probes.summary(probes.http),
        "WebSocket round trip": Probes.summary(probes.ws),
    }


def fds(root: Path, tmp: Path, limit: int = 256) -> dict[str, str]:
    env = server_env(
        SERVER__HEAD_TIMEOUT="2", SERVER__MAX_PENDING_CONNECTIONS="1024", LOG__REPEAT_INTERVAL="2"
    )
    proc, port, stderr = _served(env, tmp, "fds", root, limit)
    with _stopped(proc):
        ws = WsProbe(port)
        probes = Probes()
        with Watch(proc.pid, stderr) as watch:
            with Attackers(port, 4 * limit, head=b"") as attack:
                attack.wait_open(limit // 2, 5.0)
                probes.run(port, ws, ATTACK_SECONDS)
            # The attackers are gone: how long until a new request is served?
            start = time.monotonic()
            while http_round_trip(port) is None and time.monotonic() - start < 20:
                time.sleep(0.05)
            recovery = time.monotonic() - start
        ws.close()
    return {
        "open files at most": f"{watch.max_open_files} (limit {limit})",
        "server CPU": f"{watch.cpu_share * 100:.0f}%",
        "log lines": str(watch.log_lines),
        "tracebacks": str(watch.tracebacks),
        "RSS growth": f"{watch.rss_growth / 2**20:.1f} MB",
        "new request round trip": Probes.summary(probes.http),
        "WebSocket round trip": Probes.summary(probes.ws),
        "served again after the attack": f"{recovery:.2f} s",
    }


def nesting(root: Path, tmp: Path) -> dict[str, str]:
    proc, port, stderr = _served(server_env(), tmp, "nesting", root)
    deep = 100_000
    results = {}
    with _stopped(proc):
        with Watch(proc.pid, stderr) as watch:
            bodies = {
                "JSON body 100k deep": (b"[" * deep + b"]" * deep, False, "publish"),
                "msgpack body 100k deep": (
                    b"\x82\xa7channel\xa1a\xa4data" + b"\x91" * deep + b"\xc0",
                    True,
                    "publish",
                ),
                "channels pattern of 1,000 nested braces": (
                    json.dumps({"pattern": "{" * 1000 + "}" * 1000}).encode(),
                    False,
                    "channels",
                ),
            }
            for name, (body, packed, method) in bodies.items():
                status, answer = api_post(port, method, body, msgpack=packed)
                results[name] = f"HTTP {status}: {_error_of(answer, packed)}"
            # A pattern a backtracking matcher takes minutes over, with one long channel.
            ws = WsProbe(port)
            ws.command("subscribe", {"channel": "a" * 100})
            pattern = json.dumps({"pattern": "*a" * 8 + "b"}).encode()
            start = time.perf_counter()
            try:
                status, _ = api_post(port, "channels", pattern, timeout=10.0)
                took = f"HTTP {status} in {time.perf_counter() - start:.3f} s"
            except TimeoutError:
                took = "no answer in 10 s (the event loop is blocked)"
            ws.close()
            results["channels pattern *a*a*a*a*a*a*a*ab, one 100-character channel"] = took
        results["log lines"] = str(watch.log_lines)
        results["tracebacks"] = str(watch.tracebacks)
    return results


def redis_down(root: Path, tmp: Path, seconds: float = 20.0) -> dict[str, str]:
    """Not an attack: Redis stops for `seconds` under a node with default settings."""
    from wsfan.embedded import EmbeddedValkey

    with EmbeddedValkey(tmp / "valkey", persist=False) as valkey:
        env = server_env(BROKER__TYPE="redis")
        env["REDIS_URL"] = valkey.url
        proc, _, stderr = _served(env, tmp, "redis_down", root)
        with _stopped(proc):
            valkey.stop()
            start = stderr.stat().st_size
            time.sleep(seconds)
            down = stderr.read_bytes()[start:].decode(errors="replace").splitlines()
            valkey.start()
            time.sleep(8.0)
            after = stderr.read_bytes()[start:].decode(errors="replace").splitlines()[len(down) :]
    warnings = [line for line in down if " WARNING " in line]
    return {
        f"warning lines in {seconds:g} s down": str(len(warnings)),
        "distinct warnings": str(len({w.split(": ", 2)[1][:40] for w in warnings})),
        "lines once it is back": str(len([a for a in after if " tornado.access: " not in a])),
    }


def _error_of(answer: bytes, packed: bool) -> str:
    import msgpack

    try:
        value = msgpack.unpackb(answer, raw=False) if packed else json.loads(answer)
    except ValueError:
        return answer[:80].decode(errors="replace")
    error = value.get("error", value) if isinstance(value, dict) else value
    return json.dumps(error)[:100]


def slowloris_few(root: Path, tmp: Path) -> dict[str, str]:
    """Fewer slow heads than max_pending_connections: head_timeout closes them."""
    return slowloris(root, tmp, attackers=200)


SCENARIOS: dict[str, Callable[[Path, Path], dict[str, str]]] = {
    "slowloris_few": slowloris_few,
    "slowloris": slowloris,
    "fds": fds,
    "nesting": nesting,
    "redis_down": redis_down,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout whose run.py to attack")
    parser.add_argument("--only", choices=sorted(SCENARIOS), action="append")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--attack", help=argparse.SUPPRESS)  # Attackers' own process
    args = parser.parse_args(argv)
    if args.attack:
        port, count, head, period = json.loads(args.attack)
        _attack(port, count, bytes.fromhex(head), period)
        return 0
    import tempfile

    out: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="attacks-http-") as tmp:
        for name in args.only or SCENARIOS:
            out[name] = SCENARIOS[name](args.root.resolve(), Path(tmp))
            print(f"## {name}")
            for key, value in out[name].items():
                print(f"- {key}: {value}")
            sys.stdout.flush()
    if args.json:
        machine = f"{platform.machine()}, {os.cpu_count()} cores"
        args.json.write_text(json.dumps({"machine": machine, "results": out}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
