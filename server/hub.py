"""The hub: this process's connections and their channel subscriptions.

It owns fan-out: a publication is encoded and framed once per variant (encoding
and framing, see server/transport.py) present among the channel's subscribers,
and the same `Frame` is handed to each subscriber of that variant.
Handing over never awaits: a session queues the frame and asks the hub for a
flush, and the hub flushes every session that queued anything in one callback.
A flush that wrote to many connections (a fan-out, `BIG_FLUSH` or more) holds
the next one back until `write_interval` has passed since it started: under
load messages gather in between and each connection's leave as one WebSocket
frame, so a write (the dominant cost of a delivery) carries several of them.
Other flushes (command replies, a quiet spell) run on the next loop pass.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Iterator
from typing import Any, Generic, Protocol, TypeVar

from server.errors import Disconnect
from server.protocol import ClientInfo, Publication, encode, push
from server.transport import Frame, Variant

__all__ = ["BIG_FLUSH", "Hub", "Subscriber"]

BIG_FLUSH = 64
"""Connections a flush must write to for `write_interval` to hold back the next."""

log = logging.getLogger(__name__)


class Subscriber(Protocol):
    """What the hub needs of a connection."""

    client_id: str
    user: str
    variant: Variant

    def deliver_publication(self, channel: str, pub: Publication, frame: Frame) -> None: ...

    def deliver(self, channel: str, frame: Frame) -> None: ...

    def flush(self) -> None:
        """Write what was queued since the last flush (called by `Hub.want_flush`)."""
        ...

    def disconnect(self, reason: Disconnect) -> None: ...


S = TypeVar("S", bound=Subscriber)


class Hub(Generic[S]):
    """Generic over the session type, so the node gets its own sessions back."""

    def __init__(self, write_interval: float = 0.0) -> None:
        self._channels: dict[str, dict[S, None]] = {}
        self._sessions: dict[str, S] = {}
        self._users: dict[str, dict[S, None]] = {}
        self._write_interval = write_interval
        self._dirty: list[S] = []
        self._flush_scheduled = False
        self._last_flush = -math.inf  # loop time of the latest big flush's start

    # Connections -------------------------------------------------------------

    def add_session(self, session: S) -> None:
        self._sessions[session.client_id] = session
        self._users.setdefault(session.user, {})[session] = None

    def remove_session(self, session: S) -> None:
        if self._sessions.get(session.client_id) is session:
            del self._sessions[session.client_id]
        users = self._users.get(session.user)
        if users is not None:
            users.pop(session, None)
            if not users:
                del self._users[session.user]

    def session(self, client_id: str) -> S | None:
        return self._sessions.get(client_id)

    def user_sessions(self, user: str) -> list[S]:
        return list(self._users.get(user, ()))

    def sessions(self) -> Iterator[S]:
        return iter(list(self._sessions.values()))

    # Subscriptions -------------------------------------------------------------

    def subscribe(self, channel: str, session: S) -> bool:
        """Add a local subscriber; True when it is the channel's first on this node."""
        subs = self._channels.get(channel)
        if subs is None:
            self._channels[channel] = {session: None}
            return True
        subs[session] = None
        return False

    def unsubscribe(self, channel: str, session: S) -> bool:
        """Remove a local subscriber; True when the channel has none left here."""
        subs = self._channels.get(channel)
        if subs is None or session not in subs:
            return False
        del subs[session]
        if subs:
            return False
        del self._channels[channel]
        return True

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
        return self._fan_out(channel, push(channel, "pub", pub.to_dict()), pub)

    def broadcast(self, channel: str, kind: str, body: dict[str, Any]) -> int:
        """A join, leave or other non-publication push to every local subscriber."""
        if channel not in self._channels:
            return 0
        return self._fan_out(channel, push(channel, kind, body), None)

    def _fan_out(self, channel: str, message: dict[str, Any], pub: Publication | None) -> int:
        # Iterate over a copy: a delivery may end a slow session, which unsubscribes it.
        subs = tuple(self._channels[channel])
        frames: dict[Variant, Frame] = {}
        for session in subs:
            frame = frames.get(session.variant)
            if frame is None:
                variant = session.variant
                frame = frames[variant] = variant.frame((encode(message, variant.encoding),))
            if pub is None:
                session.deliver(channel, frame)
            else:
                session.deliver_publication(channel, pub, frame)
        return len(subs)

    # Flushing ----------------------------------------------------------------

    def want_flush(self, session: S) -> None:
        """`session` queued its first message since its last flush: flush it soon.

        One callback flushes every such session, instead of one callback per
        session, and what a session queues before it runs leaves as one frame.
        """
        self._dirty.append(session)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop = asyncio.get_running_loop()
            wait = self._last_flush + self._write_interval - loop.time()
            if wait > 0:
                loop.call_later(wait, self._flush)
            else:
                loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, []
        if len(dirty) >= BIG_FLUSH:
            self._last_flush = asyncio.get_running_loop().time()
        for session in dirty:
            try:
                session.flush()
            except Exception:  # one broken connection must not stop the others' writes
                log.exception("flushing client %s failed", session.client_id)

    def broadcast_join(self, channel: str, info: ClientInfo) -> None:
        self.broadcast(channel, "join", {"info": info.to_dict()})

    def broadcast_leave(self, channel: str, info: ClientInfo) -> None:
        self.broadcast(channel, "leave", {"info": info.to_dict()})

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
