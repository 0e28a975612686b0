"""The server as an application embedding it sees it: `Server`, made by `wsfan.build`.

    server = build(settings)
    await server.start()
    server.listen(port=8000)            # its own app: WebSocket, API, pages
    # or, in your own Tornado app, on one port with your routes:
    # server.listen(Application([*your_routes, *server.handlers()]), 8000)
    await server.publish("news", {"text": "hello"})
    ...
    await server.close()

Every method is a coroutine safe to call from the server's event loop once
`start` returned (or a plain method where marked so). Failures are
`wsfan.errors.ReplyError`, with the codes the client protocol and the server
API use: 102 unknown namespace, 106 limit exceeded, 107 bad request, 108 not
available in this namespace, 100 the broker (or MongoDB) is unreachable.
Commands aimed at users reach every node sharing the broker.
"""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING, Any

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application

from .api.cluster_commands import ClusterCommands
from .api.keys import ApiKeyChecker
from .api.pattern import compile_pattern
from .broker.base import HistoryResult, PresenceStats
from .errors import CUSTOM_DISCONNECT_CODES, DisconnectCode, ErrorCode, ReplyError
from .node import Node
from .protocol import ClientInfo, HistoryRequest, StreamPosition
from .web.app import make_app
from .web.health import ReadinessCheck
from .web.mount import Route, make_endpoint, mounted_endpoints, server_routes
from .web.upgrade import MAX_PLAIN_BODY, Listener, make_server

if TYPE_CHECKING:
    from .config import Settings
    from .stats_channel import NodeStats
    from .store.mongo import MongoStore

__all__ = ["APP_MAX_BODY", "Server"]

APP_MAX_BODY = 1 << 20
"""Request body bytes read for an embedding application's own routes, unless
`listen` / `add_sockets` are told otherwise. (The server's own routes take no
body, except the API's, which sets `api.max_body_bytes` itself.)"""


class Server:
    """One server instance: its node, stats channel, MongoDB store and Tornado routes.

    `node` is the internal node, for the command line and tests; it is not part
    of the stable surface. `app` is the application object whose methods are the
    hooks (the one `build` was given, or the one `[app] handlers` names; None).
    """

    def __init__(
        self,
        node: Node,
        *,
        stats: NodeStats,
        store: MongoStore | None = None,
        readiness: dict[str, ReadinessCheck] | None = None,
        api_keys: ApiKeyChecker | None = None,
        app: object | None = None,
    ) -> None:
        self.node = node
        self.app = app
        self._stats = stats
        self._store = store
        self._readiness = dict(readiness or {})
        self._api_keys = api_keys
        self._commands = ClusterCommands(node)
        self._endpoint = make_endpoint(node)  # one, wherever it is mounted
        self._application: Application | None = None
        self._serving: list[tuple[HTTPServer, Listener]] = []

    @property
    def settings(self) -> Settings:
        return self.node.settings

    @property
    def name(self) -> str:
        """This instance's name in the cluster (`server.name`, or host:pid)."""
        return self.node.name

    # Life cycle --------------------------------------------------------------

    async def start(self) -> None:
        """Connect to the broker (and MongoDB lazily), join the cluster, start the
        stats channel. A broker that is away does not stop it starting."""
        await self.node.start()
        await self._stats.start()

    def drain(self) -> None:
        """Shutdown begins (plain method): /readyz answers 503 "draining" from now on,
        so load balancers stop sending clients; those connected stay until `close`."""
        self.node.draining = True

    async def close(self) -> None:
        """Stop: what `listen` / `add_sockets` serve stops accepting, every client is
        told to reconnect elsewhere (3001), publishes under way finish, the channel
        log's queue is written or spilled, then the HTTP connections, the broker and
        MongoDB close. Bound it with a timeout of your own."""
        self.drain()
        for _, listener in self._serving:
            listener.stop()
        await self._stats.close()
        await self.node.close()
        await self._endpoint.live.close_all()
        serving, self._serving = self._serving, []
        for http, _ in serving:
            await http.close_all_connections()
        if self._store is not None:
            await self._store.close()

    # Serving -------------------------------------------------------------------

    def application(self) -> Application:
        """The server's own Tornado application (plain method; the same one each
        call): the WebSocket endpoint, the server API, /healthz, /readyz, /metrics
        and the pages. Serve it with `listen` or `add_sockets`."""
        if self._application is None:
            self._application = make_app(self.node, self._readiness, self._api_keys, self._endpoint)
        return self._application

    @property
    def listeners(self) -> list[Listener]:
        """What `listen` / `add_sockets` serve with, in order: each one's `upgraded`,
        `refused` and `pending` connections, for monitoring."""
        return [listener for _, listener in self._serving]

    def handlers(self) -> list[Route]:
        """The server's URL rules (plain method), to add to your own
        `tornado.web.Application` beside your routes: the WebSocket endpoint at
        /connection/websocket, the server API under /api, /healthz, /readyz and
        /metrics (not the demo pages). Serve that application with `listen` or
        `add_sockets`: they keep every guard the command line's listener applies."""
        return server_routes(self.node, self._endpoint, self._readiness, self._api_keys)

    def listen(
        self,
        app: Application | None = None,
        port: int = 0,
        address: str = "",
        *,
        max_body_size: int | None = None,
    ) -> int:
        """Serve `app` (default: `application()`) on `port` (0: a free one) of
        `address` ("": every interface); returns the port (plain method). See
        `add_sockets` (ValueError, and nothing bound, as there). OSError if the
        port cannot be bound."""
        backlog = self.settings.server.backlog
        sockets = bind_sockets(port, address or None, backlog=backlog)
        try:
            self.add_sockets(sockets, app, max_body_size=max_body_size)
        except ValueError:
            for sock in sockets:
                sock.close()
            raise
        return int(sockets[0].getsockname()[1])

    def add_sockets(
        self,
        sockets: list[socket.socket],
        app: Application | None = None,
        *,
        max_body_size: int | None = None,
    ) -> None:
        """Serve `app` (default: `application()`) on listening `sockets` (plain method)
        until `close`, with the guards the command line applies: the handshake's
        (origin 403, `server.max_connections` 503, the per-address cap 3504, frame
        size 1009) and the listener's (`server.head_timeout`, `server.idle_timeout`,
        `server.max_pending_connections`, accepting paused when out of descriptors),
        and WebSocket upgrades answered on its fast path.

        `app` must route to this server's `handlers()` (ValueError otherwise).
        `max_body_size` bounds request bodies Tornado reads for routes that do not
        stream theirs (default: none for `application()`, APP_MAX_BODY for yours;
        one over it gets 400). Tornado's `xheaders` are on: `request.remote_ip` in
        your routes believes X-Forwarded-For / X-Real-Ip from any peer (the
        WebSocket endpoint only from `server.trusted_proxies`).
        """
        if app is None:
            app = self.application()
        endpoints = mounted_endpoints(app)
        if not any(endpoint is self._endpoint for endpoint in endpoints):
            raise ValueError(
                "the application does not route to this server's WebSocket endpoint: "
                "add server.handlers() to its rules"
            )
        if len(endpoints) > 1:
            raise ValueError("the application routes to more than one server's WebSocket endpoint")
        if max_body_size is None:
            max_body_size = MAX_PLAIN_BODY if app is self._application else APP_MAX_BODY
        http, listener = make_server(app, self.settings, self._endpoint, max_body_size)
        listener.add_sockets(sockets)
        self._serving.append((http, listener))

    # Channels ----------------------------------------------------------------

    async def publish(
        self,
        channel: str,
        data: Any,
        *,
        tags: dict[str, str] | None = None,
        skip_history: bool = False,
        idempotency_key: str | None = None,
        delta: bool = False,
    ) -> StreamPosition:
        """Publish `data` (JSON-compatible) to every subscriber on every node; returns
        its position (offset 0 where the namespace keeps no history, or with
        `skip_history`). Returned means the broker took it and, for a persisted
        namespace, the log queued it. A repeated `idempotency_key` within
        `api.idempotency_window` returns the first one's position, delivered once.
        `delta`: subscribers that negotiated delta compression may get it as a
        patch (always so in a namespace with `delta_publish`)."""
        self.node.checked_channel(channel)
        return await self.node.publish(
            channel,
            data,
            tags=tags,
            skip_history=skip_history,
            idempotency_key=idempotency_key,
            delta=delta,
        )

    async def broadcast(
        self,
        channels: list[str],
        data: Any,
        *,
        tags: dict[str, str] | None = None,
        skip_history: bool = False,
        idempotency_key: str | None = None,
        delta: bool = False,
    ) -> list[StreamPosition | ReplyError]:
        """`publish` to each of `channels` at once: its position or its error, in
        order. 107 for none, 106 for more than `api.max_broadcast_channels`."""
        if not channels:
            raise ReplyError(ErrorCode.BAD_REQUEST, "channels: must not be empty")
        most = self.settings.api.max_broadcast_channels
        if len(channels) > most:
            message = f"channels: more than {most} in one broadcast"
            raise ReplyError(ErrorCode.LIMIT_EXCEEDED, message)

        async def one(channel: str) -> StreamPosition | ReplyError:
            try:
                return await self.publish(
                    channel,
                    data,
                    tags=tags,
                    skip_history=skip_history,
                    idempotency_key=idempotency_key,
                    delta=delta,
                )
            except ReplyError as exc:
                return exc

        return list(await asyncio.gather(*(one(channel) for channel in channels)))

    async def history(
        self,
        channel: str,
        *,
        limit: int = -1,
        since: StreamPosition | None = None,
        reverse: bool = False,
    ) -> HistoryResult:
        """The channel's publications after `since` (oldest first, or newest with
        `reverse`), at most `limit` and `client.history_max_limit` (-1: as many as
        that allows; 0: only the position). 108 where none are kept; 112 when
        `since` cannot be served exactly."""
        self.node.checked_channel(channel)
        query = self.node.reads.history_query(HistoryRequest(channel, limit, since, reverse))
        return await self.node.reads.history(channel, query)

    async def history_remove(self, channel: str) -> None:
        """Drop the publications the broker keeps for `channel`."""
        self.node.checked_channel(channel)
        await self.node.reads.remove_history(channel)

    async def presence(self, channel: str) -> dict[str, ClientInfo]:
        """Who is subscribed to `channel` on any node, by client id."""
        self._presence_options(channel)
        return await self.node.channel_presence(channel)

    async def presence_stats(self, channel: str) -> PresenceStats:
        """How many clients and distinct users are subscribed to `channel`."""
        self._presence_options(channel)
        return await self.node.presence_stats(channel)

    def _presence_options(self, channel: str) -> None:
        if not self.node.checked_channel(channel).presence:
            raise ReplyError(ErrorCode.NOT_AVAILABLE, "channel keeps no presence")

    async def channels(self, pattern: str = "") -> dict[str, int]:
        """Channels with subscribers on any node, with their numbers of subscribers;
        `pattern` (`*`, `?`, `[...]`, `{a,b}`) filters names, 107 if malformed.
        Nodes that do not answer within `api.survey_timeout` are left out."""
        if pattern:
            try:
                compile_pattern(pattern)
            except ValueError as exc:
                raise ReplyError(ErrorCode.BAD_REQUEST, f"pattern: {exc}") from None
        return await self._commands.channels(pattern)

    def info(self) -> list[dict[str, Any]]:
        """Every live node, this one included (plain method): name, version, uptime
        and counts."""
        return self.node.cluster.nodes()

    # Users -------------------------------------------------------------------
    # `user` "" names anonymous connections; `client_id` narrows to one connection
    # (of any user when `user` is ""). Each returns once the command is sent to
    # every node: its effect on connections follows.

    async def subscribe(
        self,
        user: str,
        channel: str,
        client_id: str = "",
        *,
        info: Any = None,
        data: Any = None,
        recover_since: StreamPosition | None = None,
    ) -> None:
        """Subscribe `user`'s connections to `channel` (server-side): each gets a
        subscribe push with `data` (and what it missed since `recover_since`, where
        the channel recovers); `info` is its channel info in presence."""
        self.node.checked_channel(channel)
        await self._commands.subscribe(user, client_id, channel, info, data, recover_since)

    async def unsubscribe(self, user: str, channel: str, client_id: str = "") -> None:
        """Unsubscribe `user`'s connections from `channel`; each gets an unsubscribe push."""
        self.node.checked_channel(channel)
        await self._commands.unsubscribe(user, client_id, channel)

    async def refresh(
        self,
        user: str,
        client_id: str = "",
        *,
        expired: bool = False,
        expire_at: float | None = None,
    ) -> None:
        """Set when `user`'s connections expire: `expired` closes them now (3005),
        `expire_at` (Unix seconds) then unless refreshed again; neither, never."""
        await self._commands.refresh(user, client_id, expired, expire_at)

    async def disconnect(
        self,
        user: str,
        code: int = DisconnectCode.FORCE_DISCONNECT,
        reason: str = "force disconnect",
        client_id: str = "",
    ) -> None:
        """Close `user`'s connections with `code` (3000-4999: below 3500 the SDKs
        reconnect; 107 otherwise)."""
        if code not in CUSTOM_DISCONNECT_CODES:
            codes = CUSTOM_DISCONNECT_CODES
            expected = f"code: expected an integer from {codes.start} to {codes.stop - 1}"
            raise ReplyError(ErrorCode.BAD_REQUEST, expected)
        await self._commands.disconnect(user, client_id, code, reason)
