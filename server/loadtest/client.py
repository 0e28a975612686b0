"""Subscribing clients: one picows listener per connection, all of a worker in one pool.
(`Receiver` is the protocol whatever carries it; wsfan.loadtest.streams carries
it over SSE and HTTP-streaming.)

A client sends connect and subscribe in its first frame, answers server pings
(`{}`), and checks every publication's offset against the last one it saw on
its channel: a jump forward counts the missing offsets as gaps, a repeat or a
step back counts a duplicate. Reconnecting (churn, or a close code below 3500)
resubscribes with `recover` from the last offset, and the recovered
publications go through the same check, so a recovery that loses or repeats
anything shows up the same way as a live gap.

A `MultiSubscriber` (layout "zipf") holds several channels on its one connection
and keeps that check, and the recovery, per channel.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections.abc import Callable
from typing import Any, Protocol

import msgpack
from picows import WSCloseCode, WSListener, WSMsgType, WSTransport, ws_connect

from ..errors import NO_CLOSE_FRAME, NO_RECONNECT_FROM, RESUBSCRIBE_CODES
from .metrics import Histogram, Recorder
from .wire import CONNECT_ID, SUBSCRIBE_ID, Codec

__all__ = [
    "Carrier",
    "MultiSubscriber",
    "Pool",
    "Receiver",
    "Stats",
    "SubscribeFailed",
    "Subscriber",
    "Track",
]

RECONNECT_DELAY = (0.2, 1.0)  # seconds, jittered, after a drop we did not ask for
RECONNECT_ATTEMPTS = 5


class Stats:
    """One worker's counters; the worker process reports them to the coordinator."""

    def __init__(self) -> None:
        self.connected = 0  # WebSocket transports open now
        self.subscribed = 0  # clients subscribed now
        self.deliveries = 0  # publication pushes (and recovered publications) received
        self.recovered_publications = 0
        self.gaps = 0
        self.duplicates = 0
        self.epoch_changes = 0
        self.foreign = 0  # publications without our timestamp (another publisher's)
        self.negative_latency = 0  # receive time before send time: clocks disagree
        self.reconnects = 0  # reconnected and resubscribed with recovery
        self.resubscribes = 0  # resubscribed on the same connection after an unsubscribe push
        self.recovered = 0
        self.not_recovered = 0
        self.connect = Histogram()  # us from starting to connect until the connect reply
        self.subscribe = Histogram()  # us from starting to connect until subscribed
        self.latency = Recorder()  # us, by second since go and by ramp step
        self.errors: dict[str, int] = {}
        self.close_codes: dict[str, int] = {}
        self.unsubscribes: dict[str, int] = {}  # unsubscribe pushes by code

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def closed(self, code: int) -> None:
        key = str(code)
        self.close_codes[key] = self.close_codes.get(key, 0) + 1


class SubscribeFailed(Exception):
    pass


class Carrier(Protocol):
    """What a `Receiver` sends through: a picows `WSTransport`, or an HTTP stream
    (wsfan.loadtest.streams) whose commands go out through /emulation."""

    @property
    def is_disconnected(self) -> bool: ...

    def send(self, msg_type: WSMsgType, message: bytes) -> None: ...

    def send_close(self, close_code: WSCloseCode = ...) -> None: ...

    def disconnect(self) -> None: ...


class Position(Protocol):
    """One channel's stream position as a client follows it: a `Receiver`'s own
    (its one channel) or a `Track` of a `MultiSubscriber`."""

    offset: int
    epoch: str
    positioned: bool  # offsets of this channel are tracked
    recovering: bool
    resubscribing: bool


class Receiver:
    """One simulated client's protocol, whatever carries it: replies, pushes and
    offsets; reused across reconnects so it keeps its stream position. `transport`
    is its current connection (None between connections)."""

    def __init__(self, pool: Pool, index: int, channel: int) -> None:
        self.pool = pool
        self.index = index
        self.channel = channel
        self.transport: Carrier | None = None
        self.offset = 0
        self.epoch = ""
        self.positioned = False  # offsets of this channel are tracked
        self.recovering = False
        self.resubscribing = False
        self.subscribed = False
        self.leaving = False  # closed on purpose: not an error, no reconnect
        self.reconnecting = False  # a reconnect is scheduled or under way
        self.live = 0  # connections reported connected and not yet disconnected
        self.started = 0
        self.ready: asyncio.Future[None] | None = None

    @property
    def channels(self) -> tuple[int, ...]:
        """Every channel index this client subscribes to."""
        return (self.channel,)

    def handle(self, transport: Carrier, messages: Any, now: int) -> None:
        """Messages that arrived on `transport` (this client's current one) at `now`."""
        for message in messages:
            if not message:
                transport.send(self.pool.msg_type, self.pool.codec.pong)
                continue
            push = message.get("push")
            if push is not None:
                pub = push.get("pub")
                if pub is not None:
                    self.publication(pub, now)
                elif "unsubscribe" in push:
                    self.unsubscribed(transport, push["unsubscribe"] or {}, now)
                elif "disconnect" in push:
                    self.disconnect_push(transport, push["disconnect"] or {})
                continue
            if "id" in message:
                self.reply(message, now)

    # Messages ---------------------------------------------------------------------

    def publication(self, pub: dict[str, Any], now: int, at: Position | None = None) -> None:
        data = pub.get("data")
        try:
            sent, step = data["ts"], data["s"]  # type: ignore[index]
        except (TypeError, KeyError):
            sent = step = None  # not this tool's payload
        self.count(pub.get("offset", 0), sent, step, now, at)

    def count(
        self, offset: int, sent: int | None, step: int | None, now: int, at: Position | None = None
    ) -> None:
        """One publication: its offset checked against `at` (a channel's position;
        default: this client's one channel); its latency recorded when `sent` and
        `step` came from this tool's payload, else it counts as foreign."""
        stats = self.pool.stats
        position = self if at is None else at
        if offset and position.positioned:
            last = position.offset
            if offset != last + 1:
                if offset <= last:
                    stats.duplicates += 1
                    return
                stats.gaps += offset - last - 1
            position.offset = offset
        if sent is None or step is None:
            stats.foreign += 1
            return
        latency = (now - sent) // 1000
        if latency < 0:
            stats.negative_latency += 1
        stats.deliveries += 1
        stats.latency.record(now, step, latency)

    def unsubscribed(self, transport: Carrier, body: dict[str, Any], now: int) -> None:
        """The server ended the subscription; RESUBSCRIBE_CODES ask for a resubscribe,
        which recovers from the last offset seen like a reconnect does."""
        if self.subscribed:
            self.subscribed = False
            self.pool.stats.subscribed -= 1
        self.resubscribe_if_asked(self, self.channel, SUBSCRIBE_ID, transport, body, now)

    def resubscribe_if_asked(
        self,
        at: Position,
        channel: int,
        cmd_id: int,
        transport: Carrier,
        body: dict[str, Any],
        now: int,
    ) -> None:
        """An unsubscribe push for `channel` (position `at`) counted by code; for
        RESUBSCRIBE_CODES, the subscribe again (command `cmd_id`), recovering from `at`."""
        stats = self.pool.stats
        code = int(body.get("code", 0))
        stats.unsubscribes[str(code)] = stats.unsubscribes.get(str(code), 0) + 1
        if code in RESUBSCRIBE_CODES and not self.pool.stopping:
            at.recovering = at.resubscribing = at.positioned
            self.started = now
            position = (at.offset, at.epoch) if at.recovering else None
            name = self.pool.channel_names[channel]
            transport.send(self.pool.msg_type, self.pool.codec.resubscribe(name, position, cmd_id))

    def reply(self, message: dict[str, Any], now: int) -> None:
        cmd_id = message["id"]
        stats = self.pool.stats
        error = message.get("error")
        if error is not None:
            kind = "connect" if cmd_id == CONNECT_ID else "subscribe"
            stats.error(f"{kind} error {error.get('code')}")
            self.fail(SubscribeFailed(kind))
            return
        if cmd_id == CONNECT_ID:
            stats.connect.record((now - self.started) // 1000)
            self.connected(message.get("connect") or {})
        elif cmd_id == SUBSCRIBE_ID:
            self.subscribed_reply(message.get("subscribe") or {}, now)

    def connected(self, result: dict[str, Any]) -> None:
        """The connect reply's result; over a WebSocket the subscribe went with
        the connect, so there is nothing to do."""

    def disconnect_push(self, transport: Carrier, body: dict[str, Any]) -> None:
        """The server's disconnect push; over a WebSocket its close frame follows
        and carries the code, so there is nothing to do."""

    def subscribed_reply(self, result: dict[str, Any], now: int) -> None:
        self.reposition(self, result, now)
        self.subscribed = True
        self.pool.stats.subscribed += 1
        self.subscribe_done(now)

    def reposition(self, at: Position, result: dict[str, Any], now: int) -> None:
        """A subscribe reply's position taken into `at`: after a recovery, its
        publications counted and what it could not recover counted as gaps."""
        stats = self.pool.stats
        top, epoch = result.get("offset", 0), result.get("epoch", "")
        if at.recovering:
            if at.resubscribing:
                stats.resubscribes += 1
            else:
                stats.reconnects += 1
            if epoch != at.epoch:
                stats.epoch_changes += 1
                at.offset = top
            else:
                for pub in result.get("publications") or ():
                    stats.recovered_publications += 1
                    self.publication(pub, now, at)
                if top > at.offset:  # not recovered, or recovered short: missed
                    stats.gaps += top - at.offset
                    at.offset = top
            if result.get("recovered"):
                stats.recovered += 1
            else:
                stats.not_recovered += 1
        else:
            at.offset = top
        at.epoch = epoch
        at.recovering = at.resubscribing = False
        at.positioned = bool(result.get("recoverable")) or top > 0

    def subscribe_done(self, now: int) -> None:
        """The client is subscribed (to all its channels): timed, and `ready` set."""
        self.pool.stats.subscribe.record((now - self.started) // 1000)
        if self.ready is not None and not self.ready.done():
            self.ready.set_result(None)

    def fail(self, exc: Exception) -> None:
        if self.ready is not None and not self.ready.done():
            self.ready.set_exception(exc)
            self.ready.exception()
        if self.transport is not None:
            self.leaving = True
            self.transport.disconnect()

    def close(self) -> None:
        """Leave on purpose (churn or the end of the test): close code 1000. From here
        on the connection's frames are ignored and the client counts as unsubscribed."""
        self.leaving = True
        transport = self.transport
        if transport is None:
            return
        if self.subscribed:
            self.subscribed = False
            self.pool.stats.subscribed -= 1
        transport.send_close(WSCloseCode.OK)
        transport.disconnect()

    def gone(self, transport: object) -> bool:
        """Count a connection of this client as closed; True when it was the
        current one and the client may reconnect (not leaving, not stopping)."""
        pool, stats = self.pool, self.pool.stats
        if self.live:
            self.live -= 1
            stats.connected -= 1
        if transport is not self.transport:
            return False  # an earlier connection of this client, already replaced
        if self.subscribed:
            self.subscribed = False
            stats.subscribed -= 1
        self.transport = None
        if self.ready is not None and not self.ready.done():
            self.ready.set_exception(SubscribeFailed("closed before subscribed"))
            self.ready.exception()
        return not (self.leaving or pool.stopping)


class Subscriber(Receiver, WSListener):
    """One simulated client over a WebSocket (picows calls it for its frames)."""

    def __init__(self, pool: Pool, index: int, channel: int) -> None:
        WSListener.__init__(self)
        Receiver.__init__(self, pool, index, channel)
        self.partial: list[bytes] = []

    # picows callbacks -----------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.live += 1
        self.pool.stats.connected += 1
        position = (self.offset, self.epoch) if self.recovering else None
        name = self.pool.channel_names[self.channel]
        hello = self.pool.codec.hello(name, self.pool.token(self.index), position)
        transport.send(self.pool.msg_type, hello)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.gone(transport):
            return
        pool, stats = self.pool, self.pool.stats
        handshake = transport.close_handshake
        code = handshake.recv.code.value if handshake and handshake.recv else NO_CLOSE_FRAME
        if handshake is None or handshake.recv is None:
            stats.closed(NO_CLOSE_FRAME)
        if code < NO_RECONNECT_FROM:
            pool.reconnect_later(self)

    def on_ws_frame(self, transport: WSTransport, frame: Any) -> None:
        # The hot path: one call per frame, usually one publication per frame.
        if transport is not self.transport:
            return  # a connection this client already left
        if frame.msg_type is not self.pool.msg_type or not frame.fin or self.partial:
            self.other_frame(transport, frame)
            return
        now = time.time_ns()
        if self.pool.fast_json:
            # Frames of nothing but this tool's publications skip the JSON decoder.
            data = frame.get_payload_as_bytes()
            found = _PUBLICATION.findall(data)
            if found and len(found) == data.count(b"\n") + 1:
                for sent, step, offset in found:
                    self.count(int(offset) if offset else 0, int(sent), int(step), now)
                return
        try:
            messages = self.pool.decode(frame)
        except ValueError:
            self.pool.stats.error("malformed frame")
            transport.disconnect()
            return
        self.handle(transport, messages, now)

    def other_frame(self, transport: WSTransport, frame: Any) -> None:
        msg_type = frame.msg_type
        if msg_type is WSMsgType.CLOSE:
            code = frame.get_close_code()
            self.pool.stats.closed(code.value)
            transport.send_close(code)
            transport.disconnect()
        elif msg_type is WSMsgType.CONTINUATION or msg_type is self.pool.msg_type:
            # A fragmented message (wsfan never sends one): reassemble, then handle.
            self.partial.append(frame.get_payload_as_bytes())
            if frame.fin:
                data, self.partial = b"".join(self.partial), []
                try:
                    messages = self.pool.codec.decode(data)
                except ValueError:
                    self.pool.stats.error("malformed frame")
                    transport.disconnect()
                    return
                self.handle(transport, messages, time.time_ns())
        elif msg_type is WSMsgType.TEXT or msg_type is WSMsgType.BINARY:
            self.pool.stats.error("wrong frame type")


class Track:
    """One channel of a `MultiSubscriber`: its subscribe id and stream position."""

    __slots__ = (
        "channel",
        "cmd_id",
        "epoch",
        "offset",
        "positioned",
        "recovering",
        "resubscribing",
        "subscribed",
    )

    def __init__(self, channel: int, cmd_id: int) -> None:
        self.channel = channel
        self.cmd_id = cmd_id
        self.offset = 0
        self.epoch = ""
        self.positioned = False  # offsets of this channel are tracked
        self.recovering = False
        self.resubscribing = False
        self.subscribed = False


class MultiSubscriber(Subscriber):
    """A client on several channels over one WebSocket (layout "zipf").

    Its first frame carries connect and one subscribe per channel (ids
    SUBSCRIBE_ID, SUBSCRIBE_ID + 1, ...); a publication's channel comes from its
    push, and each channel's offsets are checked on their own, as a `Subscriber`
    checks its one channel's: gaps, duplicates, recovery on reconnect and
    resubscription after an unsubscribe push, all per channel (so `reconnects`,
    `recovered`... count channel subscriptions). The client counts as subscribed
    (`stats.subscribed`, its `ready`) while every one of its channels is.
    """

    def __init__(self, pool: Pool, index: int, channels: tuple[int, ...]) -> None:
        super().__init__(pool, index, channels[0])
        self.tracks = [Track(c, SUBSCRIBE_ID + i) for i, c in enumerate(channels)]
        self.by_name = {pool.channel_names[t.channel]: t for t in self.tracks}
        self.by_bytes = {name.encode(): t for name, t in self.by_name.items()}

    @property
    def channels(self) -> tuple[int, ...]:
        return tuple(t.channel for t in self.tracks)

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.live += 1
        self.pool.stats.connected += 1
        subscriptions = []
        for track in self.tracks:  # a later connection recovers every tracked channel
            track.subscribed = track.resubscribing = False
            track.recovering = track.positioned
            position = (track.offset, track.epoch) if track.recovering else None
            subscriptions.append((self.pool.channel_names[track.channel], position))
        hello = self.pool.codec.hello_many(subscriptions, self.pool.token(self.index))
        transport.send(self.pool.msg_type, hello)

    def on_ws_frame(self, transport: WSTransport, frame: Any) -> None:
        if transport is not self.transport:
            return  # a connection this client already left
        if frame.msg_type is not self.pool.msg_type or not frame.fin or self.partial:
            self.other_frame(transport, frame)
            return
        now = time.time_ns()
        if self.pool.fast_json:
            data = frame.get_payload_as_bytes()
            found = _CHANNEL_PUBLICATION.findall(data)
            tracks = self.by_bytes
            if found and len(found) == data.count(b"\n") + 1 and all(f[0] in tracks for f in found):
                for name, sent, step, offset in found:
                    self.count(
                        int(offset) if offset else 0, int(sent), int(step), now, tracks[name]
                    )
                return
        try:
            messages = self.pool.decode(frame)
        except ValueError:
            self.pool.stats.error("malformed frame")
            transport.disconnect()
            return
        self.handle(transport, messages, now)

    def handle(self, transport: Carrier, messages: Any, now: int) -> None:
        for message in messages:
            if not message:
                transport.send(self.pool.msg_type, self.pool.codec.pong)
                continue
            push = message.get("push")
            if push is None:
                if "id" in message:
                    self.reply(message, now)
                continue
            if "disconnect" in push:
                self.disconnect_push(transport, push["disconnect"] or {})
                continue
            track = self.by_name.get(push.get("channel", ""))
            pub = push.get("pub")
            if track is None:
                if pub is not None:
                    self.pool.stats.foreign += 1  # not one of our channels
            elif pub is not None:
                self.publication(pub, now, track)
            elif "unsubscribe" in push:
                self.unsubscribed_on(track, transport, push["unsubscribe"] or {}, now)

    def reply(self, message: dict[str, Any], now: int) -> None:
        k = message["id"] - SUBSCRIBE_ID
        if message.get("error") is None and 0 <= k < len(self.tracks):
            self.subscribed_on(self.tracks[k], message.get("subscribe") or {}, now)
        else:  # connect, or an error (counted by kind, the client fails)
            super().reply(message, now)

    def subscribed_on(self, track: Track, result: dict[str, Any], now: int) -> None:
        """`Receiver.subscribed_reply` for one channel."""
        self.reposition(track, result, now)
        track.subscribed = True
        if not self.subscribed and all(t.subscribed for t in self.tracks):
            self.subscribed = True
            self.pool.stats.subscribed += 1
            self.subscribe_done(now)

    def unsubscribed_on(
        self, track: Track, transport: Carrier, body: dict[str, Any], now: int
    ) -> None:
        """`Receiver.unsubscribed` for one channel: the client is unsubscribed
        until that channel is back."""
        track.subscribed = False
        if self.subscribed:
            self.subscribed = False
            self.pool.stats.subscribed -= 1
        self.resubscribe_if_asked(track, track.channel, track.cmd_id, transport, body, now)

    def gone(self, transport: object) -> bool:
        if transport is self.transport:
            for track in self.tracks:
                track.subscribed = False
        return super().gone(transport)


_json = json.JSONDecoder().decode

# One publication push of this tool's payload (server/loadtest/wire.py `payload`),
# as a line of a JSON frame: send time, step and offset, nothing else decoded.
# Its `data` holds no "offset" key, so the first one after it is the publication's.
# (server/loadtest/streams.py matches the same line in an SSE event.)
PUBLICATION_LINE = (
    rb'\{"push":\{(?:"channel":"[^"\n]*",)?"pub":\{"data":\{"ts":(\d+),"s":(\d+),"n":\d+,'
    rb'"p":"x*"\}(?:,"offset":(\d+))?[,}][^\n]*$'
)
_PUBLICATION = re.compile(rb"^" + PUBLICATION_LINE, re.MULTILINE)
# The same with the channel required and captured (a MultiSubscriber's frames).
_OPTIONAL_CHANNEL = rb'(?:"channel":"[^"\n]*",)?'
assert _OPTIONAL_CHANNEL in PUBLICATION_LINE
_CHANNEL_PUBLICATION = re.compile(
    rb"^" + PUBLICATION_LINE.replace(_OPTIONAL_CHANNEL, rb'"channel":"([^"\n]*)",'),
    re.MULTILINE,
)


def _decode_json(frame: Any) -> Any:
    """Messages of a text frame: usually one, several newline-delimited when batched."""
    text = frame.get_payload_as_utf8_text()
    if "\n" not in text:
        return (_json(text),)
    return [_json(line) for line in text.split("\n") if line]


def _decode_msgpack(frame: Any) -> Any:
    """Messages of a binary frame: usually one map, several concatenated when batched."""
    data = frame.get_payload_as_bytes()
    try:
        return (msgpack.unpackb(data, raw=False, strict_map_key=False),)
    except msgpack.ExtraData as extra:
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
        unpacker.feed(extra.extra)
        return [extra.unpacked, *unpacker]
    except (msgpack.UnpackException, TypeError) as exc:
        raise ValueError("malformed msgpack frame") from exc


class Pool:
    """A worker's clients: opens them, reconnects dropped ones, churns, closes them all."""

    def __init__(
        self,
        urls: list[str],
        codec: Codec,
        channel_names: list[str],
        timeout: float,
        token: Callable[[int], str],
    ) -> None:
        self.urls = urls
        self.codec = codec
        self.msg_type = WSMsgType.BINARY if codec.binary else WSMsgType.TEXT
        self.decode = _decode_msgpack if codec.binary else _decode_json
        self.fast_json = not codec.binary
        self.channel_names = channel_names
        self.timeout = timeout
        self.token = token
        self.stats = Stats()
        self.clients: list[Receiver] = []
        self.stopping = False
        self._tasks: set[asyncio.Task[Any]] = set()

    async def open(self, client: Receiver) -> bool:
        """Connect and subscribe `client` (recovering when it has a position); True on success.

        Failures are counted in `stats.errors` by kind, never raised.
        """
        loop = asyncio.get_running_loop()
        client.leaving = False
        client.ready = loop.create_future()
        client.started = time.time_ns()
        deadline = loop.time() + self.timeout
        transport: Carrier | None = None
        try:
            async with asyncio.timeout_at(deadline):
                transport = await self.dial(client)
                await client.ready
            return True
        except TimeoutError:
            self.stats.error("timeout")
        except SubscribeFailed:
            pass  # counted where it happened
        except OSError as exc:
            self.stats.error(type(exc).__name__)
        except Exception as exc:  # picows handshake errors and the like
            self.stats.error(type(exc).__name__)
        if transport is None:
            transport = client.transport  # connected, the dial still unfinished
        if transport is not None and not transport.is_disconnected:
            client.leaving = True
            transport.disconnect()
        return False

    async def dial(self, client: Receiver) -> Carrier:
        """Open `client`'s connection (it sends connect and subscribe once open)."""
        assert isinstance(client, Subscriber)  # this pool's clients are WebSocket ones
        url = self.urls[client.index % len(self.urls)]
        transport, _ = await ws_connect(
            lambda: client,
            url,
            extra_headers=self.codec.subprotocol_headers,
            websocket_handshake_timeout=self.timeout,
            enable_auto_pong=True,
            max_frame_size=64 << 20,
        )
        return transport

    def reconnect_later(self, client: Receiver, delay: float | None = None) -> None:
        """Reconnect with recovery after `delay` (jittered default), unless stopping;
        failed attempts are retried with a doubling delay, `RECONNECT_ATTEMPTS` in all."""
        if client.reconnecting:
            return
        client.reconnecting = True
        client.recovering = client.positioned
        client.resubscribing = False
        self.spawn(self._reconnect(client, delay))

    async def _reconnect(self, client: Receiver, delay: float | None) -> None:
        try:
            for attempt in range(RECONNECT_ATTEMPTS):
                pause = random.uniform(*RECONNECT_DELAY) * 2**attempt
                await asyncio.sleep(pause if delay is None or attempt else delay)
                if self.stopping or await self.open(client):
                    return
        finally:
            client.reconnecting = False

    def churn_one(self, downtime: float) -> bool:
        """Close one random subscribed client and bring it back after `downtime`."""
        for _ in range(8):  # a few tries to find a subscribed one
            client = random.choice(self.clients)
            if client.subscribed and not client.reconnecting:
                client.close()
                self.reconnect_later(client, downtime)
                return True
        return False

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self, timeout: float = 5.0) -> None:
        """Close every client (1000) and wait, bounded, until they are gone."""
        self.stopping = True
        for task in list(self._tasks):
            task.cancel()
        for client in self.clients:
            client.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.stats.connected > 0 and loop.time() < deadline:
            await asyncio.sleep(0.05)
