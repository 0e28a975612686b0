"""The broker and presence interfaces every implementation (memory, Redis) fulfils.

A node subscribes the broker to the channels it has local subscribers for; the
broker calls the node's `BrokerEventHandler` for every publication, join and leave
in those channels, including the ones this node published (one delivery path).
Besides channels, every broker carries a control stream: opaque messages from
any node to every node sharing the broker, this one included.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..protocol import ClientInfo, Publication, StreamPosition

if TYPE_CHECKING:
    from .leases import Leases
    from .occupancy import OccupancyStore
    from .user_leases import UserLeases

__all__ = [
    "FENCED",
    "Broker",
    "BrokerEventHandler",
    "Fence",
    "HistoryOptions",
    "HistoryQuery",
    "HistoryResult",
    "LogState",
    "PresenceEntry",
    "PresenceManager",
    "PresenceStats",
]


class BrokerEventHandler(Protocol):
    """What a broker delivers to; called on the event loop, must not block."""

    def handle_publication(self, channel: str, pub: Publication) -> None: ...

    def handle_join(self, channel: str, info: ClientInfo) -> None: ...

    def handle_leave(self, channel: str, info: ClientInfo) -> None: ...

    def handle_broker_reconnect(self) -> None:
        """The broker was cut off and is back: publications may have been missed."""

    def handle_control(self, data: bytes) -> None:
        """A control message some node (this one included) sent with `publish_control`."""


@dataclass(frozen=True, slots=True)
class HistoryOptions:
    """How a channel keeps history: `size` 0 keeps none (publications get no offset).

    `ttl` bounds how long publications stay; `meta_ttl` how long the channel's
    offset and epoch survive without publications (after that a new epoch starts).

    `log_lag` > 0 marks a channel whose publications go to the durable log: its
    stream keeps every publication the log has not stored yet (past `size` and
    `ttl` if need be, see `Broker.log_stored`), and a publish while the log
    trails the stream by `log_lag` publications fails with ReplyError(INTERNAL).
    """

    size: int = 0
    ttl: float = 300.0
    meta_ttl: float = 30 * 86400.0
    log_lag: int = 0


FENCED = "the channel's lease is held by another owner"
"""The message of the ReplyError(INTERNAL) a fenced publish raises once the
lease it names is no longer held with its token."""


@dataclass(frozen=True, slots=True)
class Fence:
    """A publish made only while the channel's lease `name` is held with `token`
    (see server/broker/leases.py): checked in the same atomic step as the
    publish, so a stale holder cannot publish alongside the new one."""

    name: str
    token: str


@dataclass(frozen=True, slots=True)
class LogState:
    """Where a logged channel's durable log stands against its stream: every
    offset up to `logged` is stored; `top` is the stream's newest."""

    channel: str
    epoch: str
    top: int
    logged: int


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """`limit` 0 returns only the position, -1 everything kept; `since` excludes its offset."""

    since: StreamPosition | None = None
    limit: int = 0
    reverse: bool = False


@dataclass(frozen=True, slots=True)
class HistoryResult:
    publications: list[Publication] = field(default_factory=list)
    position: StreamPosition = StreamPosition(0, "")  # noqa: RUF009 - frozen value


@dataclass(frozen=True, slots=True)
class PresenceStats:
    num_clients: int
    num_users: int


class Broker(ABC):
    """Publishes to channels and keeps their history.

    Contract: within a channel, `publish` assigns the next offset, appends to
    history and delivers to every subscribed node as one atomic step, so every
    node sees a channel's publications in offset order and history agrees with
    what was delivered. A `history` call whose `since` cannot be served exactly
    (wrong epoch, or publications after it already dropped) raises
    `ReplyError(UNRECOVERABLE_POSITION)`. Control messages reach every started
    broker sharing the backend, in the order each sender sent them.
    """

    @abstractmethod
    async def start(self, handler: BrokerEventHandler) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    def channel_stores(self) -> tuple[OccupancyStore, Leases]:
        """Channel occupancy and channel leases, kept where this broker keeps its
        channels (server/app/channel_services.py uses them); fenced publishes
        check these leases. NotImplementedError where the broker keeps none."""
        raise NotImplementedError(f"no channel occupancy on a {type(self).__name__}")

    @abstractmethod
    async def ping(self) -> None:
        """Return once the backend answers (any shard of it); raise when none can be
        reached within the broker's own command timeout (readiness checks use this)."""

    async def shard_states(self) -> dict[str, str]:
        """Each shard's label -> "ok" or "unavailable: <reason>", for a broker
        spread over several backends; empty for one backend (`ping` says it all)."""
        return {}

    @abstractmethod
    async def subscribe(self, channels: Sequence[str]) -> None:
        """Start delivering these channels' events to this node's handler."""

    @abstractmethod
    async def unsubscribe(self, channels: Sequence[str]) -> None: ...

    @abstractmethod
    async def publish(
        self,
        channel: str,
        data: Any,
        options: HistoryOptions,
        info: ClientInfo | None = None,
        tags: dict[str, str] | None = None,
        idempotency_key: str | None = None,
        idempotency_window: float = 300.0,
        fence: Fence | None = None,
    ) -> StreamPosition:
        """Publish; returns the new publication's position (offset 0 without history).

        With an `idempotency_key`, a publish to the same channel with the same key
        within `idempotency_window` seconds of the first is not delivered or kept:
        it returns the first one's position. Check and publish are one atomic step.
        With a `fence`, nothing is published unless the channel's lease is held
        with the fence's token: ReplyError(INTERNAL, FENCED) (one atomic step too).
        """

    @abstractmethod
    async def publish_join(self, channel: str, info: ClientInfo) -> None: ...

    @abstractmethod
    async def publish_leave(self, channel: str, info: ClientInfo) -> None: ...

    @abstractmethod
    async def history(
        self, channel: str, query: HistoryQuery, options: HistoryOptions
    ) -> HistoryResult: ...

    @abstractmethod
    async def remove_history(self, channel: str) -> None:
        """Drop the channel's publications; its offset and epoch stay."""

    @abstractmethod
    async def publish_control(self, data: bytes) -> None:
        """Send `data` to `handle_control` of every node sharing this broker."""

    def reconnect_checked(self) -> None:
        """The node has checked what the backend kept after `handle_broker_reconnect`
        (see `restart_epoch`). A backend that held commands back meanwhile (Redis,
        after a restart) lets them through again. The default does nothing."""
        return None

    # The durable log's checkpoint (channels published with `log_lag` > 0) -------

    @abstractmethod
    async def log_stored(
        self, channel: str, epoch: str, runs: Sequence[tuple[int, int]], options: HistoryOptions
    ) -> int:
        """Count the offsets in `runs` (inclusive first, last pairs) as stored in the
        log; returns the checkpoint: the highest offset up to which every one is
        stored (-1 when the channel has moved to another epoch). Runs may come in
        any order and from any node; the checkpoint only moves up. Once it reaches
        a publication, the stream may drop it (by `size`, and by `ttl` once the
        checkpoint is at the top)."""

    @abstractmethod
    async def log_lagging(self, prefixes: Sequence[str]) -> list[LogState]:
        """Logged channels whose name starts with one of `prefixes` and whose
        checkpoint is below their top offset."""

    @abstractmethod
    async def restart_epoch(
        self, channel: str, epoch: str, acknowledged: int, options: HistoryOptions
    ) -> str:
        """Start a new epoch (offsets from 0, history and checkpoint cleared) if the
        channel is still in `epoch` but its top offset is below `acknowledged`:
        the backend lost publications it had accepted, and their offsets must not
        name other publications. Returns the channel's epoch afterwards."""


PresenceEntry = tuple[str, str, ClientInfo]
"""One presence entry: (channel, client id, info)."""


class PresenceManager(ABC):
    """Who is subscribed to a channel, across every node.

    Where `ttl` is set, an entry disappears `ttl` seconds after it was last
    added unless added again: the node refreshes the entries of its live
    connections, so a dead node's clients drop out by themselves.
    """

    ttl: float | None = None

    @abstractmethod
    async def add_presence(self, channel: str, client_id: str, info: ClientInfo) -> None: ...

    async def add_presence_many(self, entries: Sequence[PresenceEntry]) -> None:
        """`add_presence` for each entry (the node's periodic refresh). Entries are
        independent: a backend may send them all at once, not as one atomic step.
        The default adds them one by one; Redis sends them in one pipeline."""
        for channel, client_id, info in entries:
            await self.add_presence(channel, client_id, info)

    @abstractmethod
    async def remove_presence(self, channel: str, client_id: str) -> None: ...

    @abstractmethod
    async def presence(self, channel: str) -> dict[str, ClientInfo]: ...

    async def presence_stats(self, channel: str) -> PresenceStats:
        """Counts of clients and distinct users, from `presence`."""
        clients = await self.presence(channel)
        return PresenceStats(len(clients), len({info.user for info in clients.values()}))

    def user_leases(self) -> UserLeases | None:
        """Per-user connection leases shared by every node of the backend, for
        `client.max_connections_per_user_scope = "cluster"`; None (the default)
        where the backend is this process alone: the process count is then the
        cluster count."""
        return None
