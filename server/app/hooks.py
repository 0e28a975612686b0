"""The application layer's one hook interface: what is asked at each hook point,
and what an answer may say.

Two implementations answer it: the application's own Python object
(server/app/python_hooks.py) and Centrifugo's HTTP proxy (server/app/proxy.py).
The command handlers reach them only through `AppLayer` (server/app/layer.py),
which picks the implementation for each point, bounds each call by its timeout,
and turns a failure into error 100.

Contract of every decision point (`Hooks` methods):
- It returns its result type to allow, or raises `ReplyError` (the client gets
  that error, its code unchanged) or `Disconnect` (the connection closes with
  that code) to refuse.
- Anything else it raises, a call that outlives its timeout, or a result of
  the wrong type is a failure: the client gets error 100 (temporary) and the
  log one line naming the hook.
- Data passes as the client sent it: decoded JSON, or msgpack values (bytes
  included) for msgpack clients.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from ..auth.tokens import ConnectionClaims
from ..errors import Disconnect, ReplyError
from ..protocol import Publication

__all__ = [
    "DECISION_POINTS",
    "NOTIFICATIONS",
    "Client",
    "ConnectContext",
    "ConnectResult",
    "Disconnect",
    "HookPoint",
    "Hooks",
    "PublishContext",
    "PublishResult",
    "RPCContext",
    "RPCResult",
    "RefreshContext",
    "RefreshResult",
    "ReplyError",
    "SourceFactory",
    "SubRefreshContext",
    "SubRefreshResult",
    "SubscribeContext",
    "SubscribeResult",
]


class HookPoint(StrEnum):
    """A decision point; the value is its method name, and the proxy's endpoint prefix."""

    CONNECTING = "connecting"
    REFRESH = "refresh"
    SUBSCRIBING = "subscribing"
    SUB_REFRESH = "sub_refresh"
    PUBLISHING = "publishing"
    RPC = "rpc"

    @property
    def proxy_name(self) -> str:
        """The name of its `[proxy]` endpoint and timeout keys ("connect", "subscribe", ...)."""
        return _PROXY_NAMES[self]


_PROXY_NAMES = {
    HookPoint.CONNECTING: "connect",
    HookPoint.REFRESH: "refresh",
    HookPoint.SUBSCRIBING: "subscribe",
    HookPoint.SUB_REFRESH: "sub_refresh",
    HookPoint.PUBLISHING: "publish",
    HookPoint.RPC: "rpc",
}

DECISION_POINTS = tuple(HookPoint)
NOTIFICATIONS = ("connected", "disconnected", "subscribed", "unsubscribed")
"""Best-effort calls after the fact, Python hooks only: (client), (client, code,
reason), (client, channel), (client, channel)."""


# Who is asking ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Client:
    """A connection as hooks see it."""

    client_id: str
    user: str
    transport: str  # "websocket" (later "sse", "http_stream", "uni_websocket", ...)
    encoding: str  # "json" or "msgpack"
    remote_addr: str = ""
    conn_info: Any = None  # the connection's info, once connected
    # The handshake's headers (names case-insensitive): the proxy forwards those
    # named in `proxy.http_headers` with every request, as Centrifugo does.
    headers: Mapping[str, str] = field(default_factory=dict)


# Contexts: what each point is asked ------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectContext:
    """A connect command. `claims` are the verified token's, when a token was sent
    (an invalid token never reaches a hook: it is refused first)."""

    client: Client
    name: str  # the client's name and version, as it sent them
    version: str
    data: Any  # the connect command's `data`
    headers: Mapping[str, str]  # the handshake's headers (names case-insensitive)
    cookies: Mapping[str, str]  # the handshake's cookies, by name
    claims: ConnectionClaims | None = None
    token: str = ""


@dataclass(frozen=True, slots=True)
class RefreshContext:
    """A connection's expiry arrived (set by a connecting hook's `expire_at`)."""

    client: Client


@dataclass(frozen=True, slots=True)
class SubscribeContext:
    client: Client
    channel: str
    data: Any = None  # the subscribe command's `data`
    token: str = ""  # a subscription token, when one was sent (verified)


@dataclass(frozen=True, slots=True)
class SubRefreshContext:
    """A subscription's expiry arrived (set by a subscribing hook's `expire_at`)."""

    client: Client
    channel: str


@dataclass(frozen=True, slots=True)
class PublishContext:
    client: Client
    channel: str
    data: Any


@dataclass(frozen=True, slots=True)
class RPCContext:
    client: Client
    method: str
    data: Any


# Results: what an answer may say ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectResult:
    """Accept the connection as `user` ("" for anonymous).

    `channels` become server-side subscriptions (as a token's `channels`);
    `expire_at` (unix seconds) is when the refresh hook is asked next (None:
    never); `data` reaches the client in the connect reply. `subs` (channel ->
    SubscribeResult) are server-side subscriptions too, with their own info and
    data; their `expire_at` is not used."""

    user: str
    info: Any = None
    data: Any = None
    channels: Sequence[str] = ()
    expire_at: int | None = None
    # More server-side subscriptions, each with its own chan_info (`info`) and
    # `data` (in the connect reply's `subs`), as Centrifugo's connect `subs`.
    subs: Mapping[str, SubscribeResult] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RefreshResult:
    """`expired`: close the connection (3005); else extend to `expire_at`
    (None: never again), with new `info` when given."""

    expired: bool = False
    expire_at: int | None = None
    info: Any = None


@dataclass(frozen=True, slots=True)
class SubscribeResult:
    """Allow the subscription: `info` is its chan_info (in presence, join/leave
    and publications), `data` reaches the client in the subscribe reply,
    `expire_at` is when sub_refresh is asked (None: never)."""

    info: Any = None
    data: Any = None
    expire_at: int | None = None


@dataclass(frozen=True, slots=True)
class SubRefreshResult:
    expired: bool = False
    expire_at: int | None = None
    info: Any = None


_UNCHANGED: Any = object()


@dataclass(frozen=True, slots=True)
class PublishResult:
    """Allow the publication; `data` replaces what the client sent (when given);
    `skip_history` publishes without history (no offset: not recoverable)."""

    data: Any = field(default=_UNCHANGED)
    skip_history: bool = False

    @property
    def replaces_data(self) -> bool:
        return self.data is not _UNCHANGED


@dataclass(frozen=True, slots=True)
class RPCResult:
    data: Any = None


SourceFactory = Callable[[str, Publication | None], AsyncIterator[Any]]
"""A channel source: called with the channel and its last publication (None
when it has none), it yields the data to publish while the channel is occupied."""


class Hooks(Protocol):
    """The one hook interface. `provides(point)` says which points an
    implementation answers; the others are never called."""

    name: str  # "python" or "proxy", in logs and metrics

    def provides(self, point: HookPoint) -> bool: ...

    async def connecting(self, ctx: ConnectContext) -> ConnectResult: ...

    async def refresh(self, ctx: RefreshContext) -> RefreshResult: ...

    async def subscribing(self, ctx: SubscribeContext) -> SubscribeResult: ...

    async def sub_refresh(self, ctx: SubRefreshContext) -> SubRefreshResult: ...

    async def publishing(self, ctx: PublishContext) -> PublishResult: ...

    async def rpc(self, ctx: RPCContext) -> RPCResult: ...

    async def close(self) -> None:
        """Release what it holds (the proxy's HTTP connections)."""
        ...
