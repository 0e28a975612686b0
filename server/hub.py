"""The hub: this process's connections and their channel subscriptions.

It owns fan-out: a publication is encoded once per encoding present among the
channel's subscribers and the same bytes are handed to each of them; handing
over never awaits (each session queues and flushes on its own).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Generic, Protocol, TypeVar

from server.errors import Disconnect
from server.protocol import ClientInfo, Encoding, Publication, encode, push

__all__ = ["Hub", "Subscriber"]


class Subscriber(Protocol):
    """What the hub needs of a connection."""

    client_id: str
    user: str
    encoding: Encoding

    def deliver_publication(self, channel: str, pub: Publication, data: bytes) -> None: ...

    def deliver(self, channel: str, data: bytes) -> None: ...

    def disconnect(self, reason: Disconnect) -> None: ...


S = TypeVar("S", bound=Subscriber)


class Hub(Generic[S]):
    """Generic over the session type, so the node gets its own sessions back."""

    def __init__(self) -> None:
        self._channels: dict[str, dict[S, None]] = {}
        self._sessions: dict[str, S] = {}
        self._users: dict[str, dict[S, None]] = {}
        # Protocol messages received from / queued to this node's connections,
        # counted by the sessions; server.stats turns them into rates.

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
        encoded: dict[Encoding, bytes] = {}
        for session in subs:
            data = encoded.get(session.encoding)
            if data is None:
                data = encoded[session.encoding] = encode(message, session.encoding)
            if pub is None:
                session.deliver(channel, data)
            else:
                session.deliver_publication(channel, pub, data)
        return len(subs)

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
