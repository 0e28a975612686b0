"""The hub: this process's connections and their channel subscriptions.

It owns fan-out: a publication is encoded and framed once per variant (encoding
and framing, see server/transport.py) present among the channel's subscribers,
and the same `Frame` is handed to each subscriber of that variant.
Handing over never awaits: a subscriber queues the frame in its connection's
outbox, which asks the hub for a flush, and the hub flushes every outbox that
queued anything in one callback (down to the transport's write).
A flush that wrote to many connections (a fan-out, `BIG_FLUSH` or more) holds
the next one back until `write_interval` has passed since it started: under
load messages gather in between and each connection's leave as one WebSocket
frame, so a write (the dominant cost of a delivery) carries several of them.
Other flushes (command replies, a quiet spell) run on the next loop pass.

Delta compression (server/delta.py): a subscriber may join a channel with the
delta counterpart of its variant. While a channel has such subscribers the hub
keeps the last publication it delivered there, and for each publication it
makes, per encoding present among them, the full form and (when the
publication is delta-enabled and the last one delivered is its offset - 1) the
Fossil patch: once each, framed once per variant, the same two `Frame`s handed
to every delta subscriber of the variant (`deliver_delta`), which picks one.

Joins and leaves gather per channel until the next flush pass, then leave as
one shared frame per variant holding them all, in arrival order: a burst of N
joins costs each subscriber one delivery and its socket one write, and the
bytes are encoded and framed once per variant, not once per subscriber. A
publication (or any other push) in a channel with gathered joins and leaves
sends them first, so a channel's pushes keep their order.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Iterator, Sequence
from typing import Any, Generic, Protocol, TypeVar

from . import delta
from .protocol import ClientInfo, Encoding, Publication, encode, push
from .transport import Frame, Variant

__all__ = ["BIG_FLUSH", "ChannelListener", "Connection", "Hub", "Outlet", "Subscriber"]

BIG_FLUSH = 64
"""Connections a flush must write to for `write_interval` to hold back the next."""

log = logging.getLogger(__name__)


class Connection(Protocol):
    """A connection as the hub registers it (by client id and by user)."""

    client_id: str
    user: str


class Subscriber(Protocol):
    """What fan-out needs of a channel's subscriber: its variant, and
    deliveries that never await (they queue, and may ask `want_flush`)."""

    variant: Variant

    def deliver_publication(self, channel: str, pub: Publication, frame: Frame) -> None: ...

    def deliver_delta(
        self, channel: str, pub: Publication, full: Frame, patch: Frame | None
    ) -> None:
        """`pub` to a subscriber that joined `channel` with a delta variant:
        `full` its full form, `patch` (None when there is none) its patch
        against the publication the hub delivered before it (offset - 1)."""
        ...

    def deliver(self, channel: str, frame: Frame) -> None: ...

    def deliver_batch(self, channel: str, messages: Sequence[bytes], frame: Frame) -> None:
        """Several encoded pushes of `channel` (gathered joins and leaves), in
        order; `frame` is all of them framed as one for the subscriber's variant."""
        ...


class Outlet(Protocol):
    """What a flush pass needs of a connection's outgoing queue."""

    client_id: str

    def flush(self) -> None:
        """Write what was queued since the last flush (called after `Hub.want_flush`)."""
        ...


class ChannelListener(Protocol):
    """Told when a channel gets its first subscriber in this process and when its
    last one left (alternately, per channel), from inside `Hub.subscribe` and
    `Hub.unsubscribe`: it must not block or raise (it spawns what it does)."""

    def occupied_here(self, channel: str) -> None: ...

    def vacated_here(self, channel: str) -> None: ...


C = TypeVar("C", bound=Connection)
S = TypeVar("S", bound=Subscriber)


class Hub(Generic[C, S]):
    """Generic over the connection type (`C`) and the channel subscriber type
    (`S`), so the node gets its own objects back."""

    def __init__(self, write_interval: float = 0.0) -> None:
        # channel -> its subscribers, each with the variant it gets the channel in.
        self._channels: dict[str, dict[S, Variant]] = {}
        # Channels with delta subscribers: how many, and the last publication delivered.
        self._delta_subscribers: dict[str, int] = {}
        self._last: dict[str, delta.Last] = {}
        self._sessions: dict[str, C] = {}
        self._users: dict[str, dict[C, None]] = {}
        self._write_interval = write_interval
        self._dirty: list[Outlet] = []
        self._flush_scheduled = False
        self._last_flush = -math.inf  # loop time of the latest big flush's start
        # Join and leave pushes waiting for the next flush pass, per channel, in order.
        self._gathered: dict[str, list[dict[str, Any]]] = {}
        # Told of first and last local subscribers; None (the default) costs nothing.
        self.channel_listener: ChannelListener | None = None

    # Connections -------------------------------------------------------------

    def add_session(self, session: C) -> None:
        self._sessions[session.client_id] = session
        self._users.setdefault(session.user, {})[session] = None

    def remove_session(self, session: C) -> None:
        if self._sessions.get(session.client_id) is session:
            del self._sessions[session.client_id]
        users = self._users.get(session.user)
        if users is not None:
            users.pop(session, None)
            if not users:
                del self._users[session.user]

    def session(self, client_id: str) -> C | None:
        return self._sessions.get(client_id)

    def user_sessions(self, user: str) -> list[C]:
        return list(self._users.get(user, ()))

    def sessions(self) -> Iterator[C]:
        return iter(list(self._sessions.values()))

    # Subscriptions -------------------------------------------------------------

    def subscribe(self, channel: str, subscriber: S, variant: Variant | None = None) -> bool:
        """Add a local subscriber, getting the channel in `variant` (default: its
        own; `variant.with_delta` for a subscription that negotiated delta);
        True when it is the channel's first on this node."""
        chosen = subscriber.variant if variant is None else variant
        subs = self._channels.get(channel)
        if subs is None:
            self._channels[channel] = {subscriber: chosen}
            self._count_delta(channel, chosen, 1)
            if self.channel_listener is not None:
                self.channel_listener.occupied_here(channel)
            return True
        before = subs.get(subscriber)
        if before is not None:
            self._count_delta(channel, before, -1)
        subs[subscriber] = chosen
        self._count_delta(channel, chosen, 1)
        return False

    def unsubscribe(self, channel: str, subscriber: S) -> bool:
        """Remove a local subscriber; True when the channel has none left here."""
        subs = self._channels.get(channel)
        if subs is None or subscriber not in subs:
            return False
        self._count_delta(channel, subs.pop(subscriber), -1)
        if subs:
            return False
        del self._channels[channel]
        if self.channel_listener is not None:
            self.channel_listener.vacated_here(channel)
        return True

    def _count_delta(self, channel: str, variant: Variant, change: int) -> None:
        """Keep count of a channel's delta subscribers; with none left, its last
        publication is forgotten."""
        if not variant.delta:
            return
        count = self._delta_subscribers.get(channel, 0) + change
        if count > 0:
            self._delta_subscribers[channel] = count
        else:
            self._delta_subscribers.pop(channel, None)
            self._last.pop(channel, None)

    def subscribers(self, channel: str) -> list[S]:
        return list(self._channels.get(channel, ()))

    def has_subscribers(self, channel: str) -> bool:
        return channel in self._channels

    def num_subscribers(self, channel: str) -> int:
        return len(self._channels.get(channel, ()))

    # Fan-out -----------------------------------------------------------------

    def broadcast_publication(self, channel: str, pub: Publication) -> int:
        """Deliver to every local subscriber; returns how many were handed the bytes."""
        if channel not in self._channels:
            return 0
        if self._gathered:  # the one check publications pay while no join waits
            self._send_gathered(channel)
        if channel in self._delta_subscribers:
            return self._fan_out_delta(channel, pub)
        return self._fan_out(channel, push(channel, "pub", pub.to_dict()), pub)

    def broadcast(self, channel: str, kind: str, body: dict[str, Any]) -> int:
        """A non-publication push to every local subscriber, at once (after the
        channel's gathered joins and leaves)."""
        if channel not in self._channels:
            return 0
        if self._gathered:
            self._send_gathered(channel)
        return self._fan_out(channel, push(channel, kind, body), None)

    def gather(self, channel: str, kind: str, body: dict[str, Any]) -> None:
        """A push (join, leave) for every local subscriber, sent with the channel's
        others of the kind at the next flush pass (see the module's docstring)."""
        if channel not in self._channels:
            return
        waiting = self._gathered.get(channel)
        if waiting is not None:
            waiting.append(push(channel, kind, body))
            return
        self._gathered[channel] = [push(channel, kind, body)]
        if not self._flush_scheduled:
            self._schedule_flush()

    def _send_gathered(self, channel: str | None = None) -> None:
        """Fan out what was gathered for `channel` (None: every channel)."""
        if channel is None:
            gathered, self._gathered = self._gathered, {}
        else:
            messages = self._gathered.pop(channel, None)
            if messages is None:
                return
            gathered = {channel: messages}
        for name, messages in gathered.items():
            if name not in self._channels:
                continue
            if len(messages) == 1:
                self._fan_out(name, messages[0], None)
            else:
                self._fan_out_batch(name, messages)

    def _fan_out(self, channel: str, message: dict[str, Any], pub: Publication | None) -> int:
        # Iterate over a copy: a delivery may end a slow connection, which unsubscribes it.
        subs = tuple(self._channels[channel].items())
        frames: dict[Variant, Frame] = {}
        encoded: dict[Encoding, bytes] = {}  # variants of one encoding share its bytes
        for subscriber, variant in subs:
            frame = frames.get(variant)
            if frame is None:
                data = encoded.get(variant.encoding)
                if data is None:
                    data = encoded[variant.encoding] = encode(message, variant.encoding)
                frame = frames[variant] = variant.frame((data,))
            if pub is None:
                subscriber.deliver(channel, frame)
            else:
                subscriber.deliver_publication(channel, pub, frame)
        return len(subs)

    def _fan_out_delta(self, channel: str, pub: Publication) -> int:
        """A publication in a channel with delta subscribers: plain variants as
        `_fan_out` does; each delta variant gets the full form and, where the
        channel's last publication precedes this one, the patch (each made once
        per encoding, framed once per variant). This publication becomes the last."""
        subs = tuple(self._channels[channel].items())  # a copy: see `_fan_out`
        previous = self._last.get(channel)
        current = self._last[channel] = delta.Last(pub)
        patchable = pub.delta and previous is not None and previous.precedes(pub)
        frames: dict[Variant, tuple[Frame, Frame | None]] = {}
        plain: dict[Encoding, bytes] = {}
        forms: dict[Encoding, tuple[bytes, bytes | None]] = {}
        for subscriber, variant in subs:
            pair = frames.get(variant)
            if pair is None:
                encoding = variant.encoding
                if not variant.delta:
                    data = plain.get(encoding)
                    if data is None:
                        message = push(channel, "pub", pub.to_dict())
                        data = plain[encoding] = encode(message, encoding)
                    pair = frames[variant] = (variant.frame((data,)), None)
                else:
                    made = forms.get(encoding)
                    if made is None:
                        base = previous if patchable else None
                        made = forms[encoding] = self._delta_forms(
                            channel, pub, current, base, encoding
                        )
                    full, patch = made
                    pair = frames[variant] = (
                        variant.frame((full,)),
                        None if patch is None else variant.frame((patch,)),
                    )
            if variant.delta:
                subscriber.deliver_delta(channel, pub, pair[0], pair[1])
            else:
                subscriber.deliver_publication(channel, pub, pair[0])
        return len(subs)

    @staticmethod
    def _delta_forms(
        channel: str,
        pub: Publication,
        current: delta.Last,
        previous: delta.Last | None,
        encoding: Encoding,
    ) -> tuple[bytes, bytes | None]:
        """The encoded full form of `pub` for delta subscribers, and its patch
        against `previous` (None without one, or when it would be no shorter)."""
        data = current.bytes_in(encoding)
        full = encode(push(channel, "pub", delta.full_form(pub, data, encoding)), encoding)
        if previous is None:
            return full, None
        patch = delta.make_patch(previous.bytes_in(encoding), data, encoding)
        if patch is None:
            return full, None
        return full, encode(push(channel, "pub", delta.patch_form(pub, patch, encoding)), encoding)

    def _fan_out_batch(self, channel: str, messages: list[dict[str, Any]]) -> int:
        """Several pushes of one channel as one frame per variant, shared."""
        subs = tuple(self._channels[channel].items())  # a copy: see `_fan_out`
        batches: dict[Variant, tuple[list[bytes], Frame]] = {}
        encoded: dict[Encoding, list[bytes]] = {}
        for subscriber, variant in subs:
            batch = batches.get(variant)
            if batch is None:
                data = encoded.get(variant.encoding)
                if data is None:
                    data = encoded[variant.encoding] = [
                        encode(m, variant.encoding) for m in messages
                    ]
                batch = batches[variant] = (data, variant.frame(data))
            subscriber.deliver_batch(channel, batch[0], batch[1])
        return len(subs)

    # Flushing ----------------------------------------------------------------

    def want_flush(self, outlet: Outlet) -> None:
        """`outlet` queued its first message since its last flush: flush it soon.

        One callback flushes every such outlet, instead of one callback per
        connection, and what an outlet queues before it runs leaves as one frame.
        """
        self._dirty.append(outlet)
        if not self._flush_scheduled:
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        self._flush_scheduled = True
        loop = asyncio.get_running_loop()
        wait = self._last_flush + self._write_interval - loop.time()
        if wait > 0:
            loop.call_later(wait, self._flush)
        else:
            loop.call_soon(self._flush)

    def _flush(self) -> None:
        if self._gathered:  # queued while the flush is still scheduled: flushed below
            self._send_gathered()
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, []
        if len(dirty) >= BIG_FLUSH:
            self._last_flush = asyncio.get_running_loop().time()
        for outlet in dirty:
            try:
                outlet.flush()
            except Exception:  # one broken connection must not stop the others' writes
                log.exception("flushing client %s failed", outlet.client_id)

    def broadcast_join(self, channel: str, info: ClientInfo) -> None:
        """A join push for the channel's subscribers, at the next flush pass."""
        self.gather(channel, "join", {"info": info.to_dict()})

    def broadcast_leave(self, channel: str, info: ClientInfo) -> None:
        """A leave push for the channel's subscribers, at the next flush pass."""
        self.gather(channel, "leave", {"info": info.to_dict()})

    # Stats -------------------------------------------------------------------

    @property
    def num_clients(self) -> int:
        return len(self._sessions)

    @property
    def num_users(self) -> int:
        return len(self._users)

    @property
    def num_channels(self) -> int:
        return len(self._channels)

    @property
    def num_subscriptions(self) -> int:
        return sum(len(s) for s in self._channels.values())

    def channels(self) -> list[str]:
        return list(self._channels)
