"""Hostile clients against a real server process, and what they cost it.

Blocking sockets in threads, so an attacker that writes as fast as the kernel
takes its bytes does not share an event loop with the client whose round trips
are measured. Everything here stops by itself: floods run for a given time,
reads have timeouts.

- `rss(pid)`, `cpu_seconds(pid)`: a process's resident memory and CPU time, from /proc.
- `RssWatch`: the highest RSS of a process while a block runs.
- `Flood`: sends one chunk of whole frames over and over and never reads.
- `round_trips`: a well-behaved client's command round trips, in seconds.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import threading
import time
from types import TracebackType

from wsfan.loadtest.metrics import cpu_seconds as loadtest_cpu_seconds

from tests.raw_ws import mask_frame

__all__ = [
    "Flood",
    "RssWatch",
    "cpu_seconds",
    "handshake",
    "p99",
    "read_close_code",
    "round_trips",
    "rss",
]


def rss(pid: int) -> int:
    """Resident memory of process `pid` in bytes (VmRSS in /proc/<pid>/status)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise ValueError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) process `pid` has used, from /proc/<pid>/stat."""
    used = loadtest_cpu_seconds(pid)
    if used is None:
        raise ProcessLookupError(f"no process {pid}")
    return used


class RssWatch:
    """Samples a process's RSS every `interval` seconds while the block runs:
    `before` (at entry) and `peak`; `growth` is their difference."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid = pid
        self.interval = interval
        self.before = self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @property
    def growth(self) -> int:
        return self.peak - self.before

    def __enter__(self) -> RssWatch:
        self.before = self.peak = rss(self.pid)
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss(self.pid))

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.peak = max(self.peak, rss(self.pid))
            except (OSError, ValueError):  # the process is gone
                return


def handshake(port: int, rcvbuf: int | None = None, timeout: float = 5.0) -> socket.socket:
    """A blocking socket with the WebSocket handshake done (JSON encoding)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:  # before connect, so the window is small from the start
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(timeout)
    sock.connect(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            "GET /connection/websocket HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)  # byte by byte: nothing after the head is consumed
        if not chunk:
            raise ConnectionError("closed during the handshake")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        sock.close()
        raise ConnectionError(head.decode(errors="replace"))
    return sock


class _Frames:
    """Server frames from a blocking socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def next(self) -> tuple[int, bytes]:
        first, second = self._exact(2)
        n = second & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._exact(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._exact(8))[0]
        return first & 0x0F, self._exact(n)


def read_close_code(sock: socket.socket, timeout: float) -> int | str:
    """Read until the server's close frame: its code, or "reset" / "eof" / "timeout"."""
    sock.settimeout(timeout)
    frames = _Frames(sock)
    try:
        while True:
            opcode, payload = frames.next()
            if opcode == 0x8:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
    except ConnectionResetError:
        return "reset"
    except ConnectionError:
        return "eof"
    except TimeoutError:
        return "timeout"


class Flood(threading.Thread):
    """Sends `prefix`, then `chunk` (whole frames) over and over for `seconds`,
    never reading (an empty `chunk`: sends nothing more). `sent` counts bytes;
    `outcome` is "running", "done" (time up), "reset" or "closed" (the server
    dropped it)."""

    def __init__(
        self, port: int, chunk: bytes, seconds: float, prefix: bytes = b"", rcvbuf: int = 4096
    ) -> None:
        super().__init__(daemon=True)
        self.sock = handshake(port, rcvbuf=rcvbuf)
        self.chunk = chunk
        self.prefix = prefix
        self.seconds = seconds
        self.sent = 0
        self.outcome = "running"
        self.ended_at = 0.0  # perf_counter when the server dropped it, if it did

    def run(self) -> None:
        sock = self.sock
        sock.settimeout(0.1)
        deadline = time.perf_counter() + self.seconds
        try:
            sock.sendall(self.prefix)
            if not self.chunk:  # an idle connection, for comparison
                time.sleep(self.seconds)
            view, offset = memoryview(self.chunk), 0
            while self.chunk and time.perf_counter() < deadline:
                try:
                    n = sock.send(view[offset:])
                except TimeoutError:
                    continue  # the server is not reading now
                self.sent += n
                offset = (offset + n) % len(self.chunk)  # stays on the frame boundaries
            self.outcome = "done"
        except (ConnectionResetError, BrokenPipeError):
            self.outcome = "reset"
            self.ended_at = time.perf_counter()
        except OSError:
            self.outcome = "closed"
            self.ended_at = time.perf_counter()

    def close(self) -> None:
        self.sock.close()


def repeated(frame: bytes, size: int = 65536) -> bytes:
    """`frame` repeated to about `size` bytes (whole frames only)."""
    return frame * max(1, size // len(frame))


def ping_flood_chunk(payload: bytes = b"x" * 125) -> bytes:
    return repeated(mask_frame(payload, opcode=0x9))


def fragment_flood() -> tuple[bytes, bytes]:
    """(prefix, chunk): a non-final text frame, then empty non-final continuations."""
    return mask_frame(b"", opcode=0x1, fin=False), repeated(mask_frame(b"", opcode=0x0, fin=False))


def tiny_frame_chunk() -> bytes:
    """`{}` text frames: a command-less message (the client's pong) each."""
    return repeated(mask_frame(b"{}", opcode=0x1))


def round_trips(port: int, seconds: float, interval: float = 0.005) -> list[float]:
    """A normal client: connect, then a `publish` every `interval` seconds for
    `seconds`; each reply's round trip in seconds. A reply (or handshake) not
    there within 5 s ends the run with a sample of the time waited."""
    start = time.perf_counter()
    try:
        sock = handshake(port)
    except TimeoutError:
        return [time.perf_counter() - start]
    frames = _Frames(sock)
    times: list[float] = []

    def call(command_id: int, body: dict[str, object]) -> None:
        sock.sendall(mask_frame(json.dumps({"id": command_id, **body}).encode()))
        while True:
            opcode, payload = frames.next()
            if opcode == 0x8:
                raise ConnectionError(f"closed: {payload[:2].hex()}")
            for line in payload.split(b"\n"):
                if line and json.loads(line).get("id") == command_id:
                    return

    try:
        call(1, {"connect": {}})
        deadline = time.perf_counter() + seconds
        command_id = 1
        while time.perf_counter() < deadline:
            command_id += 1
            start = time.perf_counter()
            call(command_id, {"publish": {"channel": "rtt", "data": command_id}})
            times.append(time.perf_counter() - start)
            time.sleep(interval)
    except TimeoutError:
        times.append(time.perf_counter() - start)
    finally:
        sock.close()
    return times


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
