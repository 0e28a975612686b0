"""The seam between sessions and the node, typed both ways.

`NodePort` is all a session asks of the node (which implements it);
`ChannelSubscriber` and `ClientSession` are all the node (and the server API's
commands, through the hub) ask of a session.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from ..broker.base import HistoryQuery, HistoryResult, PresenceStats
from ..config import ChannelOptions
from ..errors import Disconnect, UnsubscribeCode
from ..hub import Connection, Outlet, Subscriber
from ..protocol import ClientInfo, HistoryRequest, Publication, StreamPosition
from ..replies import ReplyBounds

if TYPE_CHECKING:
    from ..app.layer import AppLayer
    from .session import Session

__all__ = ["ChannelSubscriber", "ClientSession", "NodePort", "SendHandler"]

SendHandler = Callable[["Session", Any], Awaitable[None]]
"""Receives an asynchronous `send` message from a client."""


class ChannelSubscriber(Subscriber, Protocol):
    """A connection's subscriptions as the hub's channels hold them."""

    def check_position(self, channel: str, position: StreamPosition) -> None:
        """Compare with the stream's position after a broker outage (the node's
        check): a subscriber that fell behind is told to resubscribe."""
        ...


class ClientSession(Connection, Protocol):
    """A connection as the node and the server API's commands act on it."""

    def presence_entries(self) -> list[tuple[str, ClientInfo]]:
        """This connection's presence in channels that keep it (refreshed by the node)."""
        ...

    async def server_subscribe(
        self,
        channel: str,
        chan_info: Any = None,
        data: Any = None,
        recover_since: StreamPosition | None = None,
    ) -> bool: ...

    async def server_unsubscribe(
        self, channel: str, code: int = UnsubscribeCode.SERVER, reason: str = "server unsubscribe"
    ) -> bool: ...

    def server_refresh(self, expired: bool = False, expire_at: float | None = None) -> None: ...

    def disconnect(self, reason: Disconnect) -> None: ...


class ReadsPort(Protocol):
    """What a session reads of channels (server/channel_reads.py)."""

    async def position(self, channel: str) -> StreamPosition: ...

    async def history(self, channel: str, query: HistoryQuery) -> HistoryResult: ...

    async def history_reply(
        self, request: HistoryRequest, bounds: ReplyBounds | None = None
    ) -> dict[str, Any]: ...

    async def retained_state(self, channel: str) -> Publication | None: ...


class UsersPort(Protocol):
    """The cap on a user's connections, as the connect command checks it."""

    async def admit(self, user: str, client_id: str) -> bool:
        """Whether connection `client_id` of `user` fits `client.max_connections_per_user`,
        in its scope (process, or cluster through a lease: ReplyError(100) when
        the lease store cannot be reached). A lease ends with `remove_session`."""
        ...

    def release(self, client_id: str) -> None:
        """Give back what `admit` took for a connect that ended before `add_session`."""
        ...


class NodePort(Protocol):
    """What a session needs of the node.

    Every call that reaches the broker, presence or the log fails as
    ReplyError(100) (temporary), logged by the node in one rate-limited line;
    other ReplyErrors (102 for an unknown namespace, 108, 112) are answers.
    """

    version: str
    app: AppLayer
    """The application's hooks, as the command handlers call them."""

    @property
    def send_handler(self) -> SendHandler | None: ...

    @property
    def reads(self) -> ReadsPort:
        """Positions, history and retained state of channels."""

    def channel_options(self, channel: str) -> ChannelOptions:
        """The channel's namespace options; ReplyError(102) for an unknown namespace."""
        ...

    def checked_channel(self, channel: str) -> ChannelOptions:
        """The options of a channel name a client sent (107, 106, 102 when not valid)."""
        ...

    @property
    def want_flush(self) -> Callable[[Outlet], None]:
        """Schedules an outbox's flush (the hub's flush pass)."""
        ...

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run background work whose failure the node logs."""
        ...

    # Connections

    def add_session(self, session: ClientSession) -> None: ...

    def remove_session(self, session: ClientSession) -> None: ...

    def count_user_sessions(self, user: str) -> int:
        """How many connections of `user` this node holds."""
        ...

    @property
    def users(self) -> UsersPort:
        """`client.max_connections_per_user` (server/user_caps.py)."""

    # Channels

    async def add_subscriber(
        self, channel: str, subscriber: ChannelSubscriber, delta: bool = False
    ) -> None:
        """Returns once the broker delivers `channel` to `subscriber` (in its
        delta variant with `delta`: see `Subscriber.deliver_delta`)."""
        ...

    async def remove_subscriber(self, channel: str, subscriber: ChannelSubscriber) -> None:
        """Never raises: a broker failure is logged."""
        ...

    async def publish(
        self,
        channel: str,
        data: Any,
        info: ClientInfo | None = None,
        tags: dict[str, str] | None = None,
        skip_history: bool = False,
    ) -> StreamPosition: ...

    # Presence and join/leave

    async def add_presence(self, channel: str, client_id: str, info: ClientInfo) -> None: ...

    async def remove_presence(self, channel: str, client_id: str) -> None: ...

    async def channel_presence(self, channel: str) -> dict[str, ClientInfo]: ...

    async def presence_stats(self, channel: str) -> PresenceStats: ...

    async def publish_join(self, channel: str, info: ClientInfo) -> None: ...

    async def publish_leave(self, channel: str, info: ClientInfo) -> None: ...
