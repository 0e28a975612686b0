"""The publisher role of a worker process: publish at each rate of the ramp.

Over WebSocket it is `publisher_connections` more clients sending `publish`
commands round-robin (several per frame, under the server's frame limit; a
server handles one connection's commands in order, so one client caps the
rate); over HTTP it POSTs `{api}/api/publish` with `X-API-Key` on as many
keep-alive connections (the cent library's contract).
Publications go round-robin over the channels, or for layout "zipf" to channels
drawn with a Zipf skew (`Options.channel_picker`, seeded).
A publication counts as published when the server acknowledged it; the
deliveries it should cause are its channel's subscriber count, summed as the
acknowledgements come in.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from typing import Any
from urllib.parse import urlsplit

from picows import WSListener, WSMsgType, WSTransport, ws_connect

from ..errors import NO_CLOSE_FRAME
from .options import Options
from .wire import CONNECT_ID, Codec, mint_token, padding, payload
from .worker import STATUS_INTERVAL, WorkerIO

__all__ = ["read_response", "run_publisher"]

MAX_BATCH_BYTES = 32 << 10  # under the server's default 64 KiB frame limit
TICK = 0.005  # seconds between publishing rounds at high rates
RECONNECT_DELAY = 0.5  # seconds


class Ledger:
    """Publications sent, acknowledged and failed, per step and per second."""

    def __init__(self, steps: int, t0: int) -> None:
        self.steps = [
            {
                "sent": 0,
                "acked": 0,
                "failed": 0,
                "unconfirmed": 0,
                "expected": 0,
                "start": 0.0,
                "seconds": 0.0,
            }
            for _ in range(steps)
        ]
        # command id -> (step, channel, connection index)
        self.pending: dict[int, tuple[int, int, int]] = {}
        self.subscribers: dict[int, int] = {}  # channel -> subscriber count
        self.errors: dict[str, int] = {}
        self.t0 = t0
        self._second = 0
        self._count = 0
        self._closed: dict[str, int] = {}

    def sent(self, key: int, step: int, channel: int, connection: int) -> None:
        self.pending[key] = (step, channel, connection)
        self.steps[step]["sent"] += 1
        second = (time.time_ns() - self.t0) // 1_000_000_000
        if second != self._second:
            if self._count:
                self._closed[str(self._second)] = self._count
            self._second, self._count = second, 0
        self._count += 1

    def acked(self, key: int, error: str | None = None) -> None:
        entry = self.pending.pop(key, None)
        if entry is None:
            return
        step = self.steps[entry[0]]
        if error is None:
            step["acked"] += 1
            step["expected"] += self.subscribers.get(entry[1], 0)
        else:
            step["failed"] += 1
            self.errors[error] = self.errors.get(error, 0) + 1

    def unconfirmed(self, key: int) -> None:
        """No answer by the end: counted as published (a saturated server usually
        delivers it late), and listed as "no answer" among the errors."""
        entry = self.pending.pop(key, None)
        if entry is not None:
            step = self.steps[entry[0]]
            step["unconfirmed"] += 1
            step["expected"] += self.subscribers.get(entry[1], 0)
            self.error("no answer")

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def take_timeline(self, final: bool = False) -> dict[str, int]:
        closed, self._closed = self._closed, {}
        if final and self._count:
            closed[str(self._second)] = self._count
            self._count = 0
        return closed

    def totals(self) -> dict[str, int]:
        return {k: sum(int(s[k]) for s in self.steps) for k in ("sent", "acked", "failed")}


class _WSPublisher(WSListener):
    """The publishing client. A dropped connection is reopened after `RECONNECT_DELAY`;
    publications in flight on it count as failed ("publisher disconnected")."""

    def __init__(
        self, options: Options, codec: Codec, ledger: Ledger, token: str, index: int
    ) -> None:
        super().__init__()
        self.index = index
        self.options = options
        self.codec = codec
        self.ledger = ledger
        self.token = token
        self.msg_type = WSMsgType.BINARY if codec.binary else WSMsgType.TEXT
        self.connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: WSTransport | None = None
        self.closing = False

    async def connect(self) -> None:
        """Open the connection and wait for the connect reply; raises on failure."""
        self.connected = asyncio.get_running_loop().create_future()
        await ws_connect(
            lambda: self,
            self.options.publish_url,
            extra_headers=self.codec.subprotocol_headers,
            websocket_handshake_timeout=self.options.connect_timeout,
        )
        await asyncio.wait_for(self.connected, self.options.connect_timeout)

    async def _reconnect(self) -> None:
        while not self.closing:
            await asyncio.sleep(RECONNECT_DELAY)
            try:
                await self.connect()
                return
            except Exception as exc:
                self.ledger.error(f"publisher reconnect {type(exc).__name__}")

    def send(self, frame: bytes) -> bool:
        if self.transport is None or not self.connected.done():
            return False
        self.transport.send(self.msg_type, frame)
        return True

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.disconnect()

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        transport.send(self.msg_type, self.codec.connect_only(self.token))

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.transport = None
        if not self.connected.done():
            self.connected.set_exception(ConnectionError("publisher closed before connect"))
            self.connected.exception()
        if self.closing:
            return
        handshake = transport.close_handshake
        code = handshake.recv.code.value if handshake and handshake.recv else NO_CLOSE_FRAME
        self.ledger.error(f"publisher closed {code}")
        for key, entry in list(self.ledger.pending.items()):
            if entry[2] == self.index:
                self.ledger.acked(key, "publisher disconnected")
        asyncio.get_running_loop().create_task(self._reconnect())

    def on_ws_frame(self, transport: WSTransport, frame: Any) -> None:
        if frame.msg_type is WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        if frame.msg_type is not self.msg_type:
            return
        for message in self.codec.decode(frame.get_payload_as_bytes()):
            if not message:
                transport.send(self.msg_type, self.codec.pong)
                continue
            cmd_id = message.get("id")
            error = message.get("error")
            if cmd_id == CONNECT_ID:
                if error is not None:
                    self.connected.set_exception(ConnectionError(f"connect error {error}"))
                    self.connected.exception()
                elif not self.connected.done():
                    self.connected.set_result(None)
            elif cmd_id:
                failure = None if error is None else f"publish error {error.get('code')}"
                self.ledger.acked(cmd_id, failure)


class _WSPublishers:
    """Several publishing clients; publication `key` goes out on connection key mod N,
    batched per connection until `flush()` (or the batch nears the frame limit)."""

    def __init__(self, options: Options, codec: Codec, ledger: Ledger, token: str) -> None:
        count = options.publisher_connections
        self.codec = codec
        self.ledger = ledger
        self.conns = [_WSPublisher(options, codec, ledger, token, i) for i in range(count)]
        self.batches: list[list[tuple[int, bytes]]] = [[] for _ in range(count)]
        self.sizes = [0] * count

    async def connect(self) -> None:
        await asyncio.gather(*(c.connect() for c in self.conns))

    def connection(self, key: int) -> int:
        return key % len(self.conns)

    def submit(self, key: int, channel: str, data: Any) -> None:
        i = key % len(self.conns)
        encoded = self.codec.publish(key, channel, data)
        self.batches[i].append((key, encoded))
        self.sizes[i] += len(encoded) + 1
        if self.sizes[i] >= MAX_BATCH_BYTES:
            self._flush(i)

    def flush(self) -> None:
        for i, batch in enumerate(self.batches):
            if batch:
                self._flush(i)

    def _flush(self, i: int) -> None:
        batch, self.batches[i], self.sizes[i] = self.batches[i], [], 0
        if not self.conns[i].send(self.codec.join([encoded for _, encoded in batch])):
            for key, _ in batch:
                self.ledger.acked(key, "publisher disconnected")

    def close(self) -> None:
        for conn in self.conns:
            conn.close()


class _HTTPPublisher:
    """POST /api/publish on keep-alive HTTP/1.1 connections, one request at a time each."""

    def __init__(self, options: Options, ledger: Ledger) -> None:
        self.ledger = ledger
        base = urlsplit(options.http_api_url)
        self.host = base.hostname or "127.0.0.1"
        self.secure = base.scheme == "https"
        self.port = base.port or (443 if self.secure else 80)
        path = (base.path.rstrip("/") or "") + "/api/publish"
        self.head = (
            f"POST {path} HTTP/1.1\r\nHost: {base.netloc}\r\n"
            f"Content-Type: application/json\r\nX-API-Key: {options.api_key}\r\n"
        ).encode("latin-1")
        self.queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
        self.busy = 0
        self.tasks = [
            asyncio.get_running_loop().create_task(self._connection())
            for _ in range(options.publisher_connections)
        ]

    def connection(self, key: int) -> int:
        return -1  # any free one

    def submit(self, key: int, channel: str, data: Any) -> None:
        self.queue.put_nowait((key, json.dumps({"channel": channel, "data": data}).encode()))

    def flush(self) -> None:
        pass

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        context = ssl.create_default_context() if self.secure else None
        return await asyncio.open_connection(self.host, self.port, ssl=context)

    async def _connection(self) -> None:
        stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        while True:
            key, body = await self.queue.get()
            self.busy += 1
            try:
                if stream is None:
                    stream = await self._open()
                reader, writer = stream
                writer.write(self.head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
                status, keep, answer = await read_response(reader)
                if not keep:
                    writer.close()
                    stream = None
                self.ledger.acked(key, _api_error(status, answer))
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                self.ledger.acked(key, f"http {type(exc).__name__}")
                if stream is not None:
                    stream[1].close()
                stream = None
                await asyncio.sleep(0.1)  # do not spin against a server that is down
            finally:
                self.busy -= 1

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    """(status, keep-alive, body) of one HTTP/1.1 response."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip().lower()
    if "chunked" in headers.get("transfer-encoding", ""):
        parts = []
        while size := int((await reader.readline()).split(b";")[0], 16):
            parts.append(await reader.readexactly(size))
            await reader.readline()
        await reader.readline()
        body = b"".join(parts)
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers.get("connection") != "close", body


def _api_error(status: int, body: bytes) -> str | None:
    if status != 200:
        return f"http {status}"
    try:
        answer = json.loads(body)
    except ValueError:
        return "http bad body"
    error = answer.get("error") if isinstance(answer, dict) else None
    return None if error is None else f"publish error {error.get('code')}"


async def _report(io: WorkerIO, ledger: Ledger, step: list[int]) -> None:
    while True:
        await asyncio.sleep(STATUS_INTERVAL)
        io.emit("status", step=step[0], timeline=ledger.take_timeline(), **ledger.totals())


async def run_publisher(options: Options, io: WorkerIO, t0: int) -> None:
    """Publish the plan once told to go; `t0` (ns) is second 0 of the timeline."""
    loop = asyncio.get_running_loop()
    codec = Codec(options.encoding if options.publisher == "ws" else "json")
    ledger = Ledger(len(options.rates), t0)
    token = (
        mint_token(options.token_secret, "loadtest-publisher", options.token_ttl)
        if (options.token_secret)
        else ""
    )
    publishers: _WSPublishers | _HTTPPublisher
    if options.publisher == "ws":
        publishers = _WSPublishers(options, codec, ledger, token)
        await publishers.connect()
    else:
        publishers = _HTTPPublisher(options, ledger)
    io.emit("ready")
    go = await io.wait_go()
    step_now = [0]
    reporter = loop.create_task(_report(io, ledger, step_now))
    try:
        if go is not None:
            ledger.subscribers = {int(k): int(v) for k, v in go["per_channel"].items()}
            await _publish_plan(options, io, ledger, publishers, step_now)
            io.emit("done", **ledger.totals())
            await _await_answers(options, io, ledger)
    finally:
        reporter.cancel()
        for key in list(ledger.pending):
            ledger.unconfirmed(key)
        io.emit(
            "final",
            steps=ledger.steps,
            errors=ledger.errors,
            timeline=ledger.take_timeline(final=True),
            **ledger.totals(),
        )
        publishers.close()


async def _await_answers(options: Options, io: WorkerIO, ledger: Ledger) -> None:
    """Wait for the answers still due while they keep coming (a saturated server
    answers late): until none came for `drain` seconds, or `drain_max` passed."""
    loop = asyncio.get_running_loop()
    start = last = loop.time()
    waiting = len(ledger.pending)
    while ledger.pending and not io.stopped.is_set():
        now = loop.time()
        if len(ledger.pending) != waiting:
            waiting, last = len(ledger.pending), now
        if now - last > max(options.drain, 1.0) or now - start > options.drain_max:
            return
        await asyncio.sleep(0.02)


async def _publish_plan(
    options: Options,
    io: WorkerIO,
    ledger: Ledger,
    publishers: _WSPublishers | _HTTPPublisher,
    step_now: list[int],
) -> None:
    loop = asyncio.get_running_loop()
    pad = padding(options.size)
    names = [options.channel_name(i) for i in range(options.channel_count)]
    pick = options.channel_picker()
    key = CONNECT_ID
    seq = 0
    for step, rate in enumerate(options.rates):
        step_now[0] = step
        start = loop.time()
        ledger.steps[step]["start"] = round((time.time_ns() - ledger.t0) / 1e9, 3)
        sent = 0
        target = round(options.duration * rate)  # published even if the loop lags
        while sent < target and not io.stopped.is_set():
            due = min(int((loop.time() - start) * rate) + 1, target)
            while sent < due:
                key += 1
                channel = pick(seq)
                ledger.sent(key, step, channel, publishers.connection(key))
                publishers.submit(key, names[channel], payload(step, seq, pad))
                sent += 1
                seq += 1
            publishers.flush()
            if sent < target:
                await asyncio.sleep(min(TICK, 1.0 / rate))
        rest = start + options.duration - loop.time()
        if rest > 0 and not io.stopped.is_set():
            await asyncio.sleep(rest)
        ledger.steps[step]["seconds"] = round(loop.time() - start, 3)
