"""The server as an application embedding it sees it: `Server`, made by `server.build`.

    server = build(settings)
    await server.start()
    server.application().listen(8000)   # the Tornado app: WebSocket, API, pages
    await server.publish("news", {"text": "hello"})
    ...
    await server.close()

Every method is a coroutine safe to call from the server's event loop once
`start` returned. Failures are `server.errors.ReplyError`, with the codes the
client protocol and the server API use: 102 unknown namespace, 107 bad
request, 108 not available in this namespace, 100 the broker (or MongoDB) is
unreachable. Commands aimed at users reach every node sharing the broker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tornado.web import Application

from server.api.cluster_commands import ClusterCommands
from server.api.keys import ApiKeyChecker
from server.api.pattern import compile_pattern
from server.broker.base import HistoryResult, PresenceStats
from server.errors import CUSTOM_DISCONNECT_CODES, DisconnectCode, ErrorCode, ReplyError
from server.node import Node
from server.protocol import ClientInfo, HistoryRequest, StreamPosition
from server.web.app import make_app
from server.web.health import ReadinessCheck
from server.web.websocket import close_websockets

if TYPE_CHECKING:
    from server.config import Settings
    from server.stats_channel import NodeStats
    from server.store.mongo import MongoStore

__all__ = ["Server"]


class Server:
    """One server instance: its node, stats channel, MongoDB store and Tornado app.

    `node` is the internal node, for the command line and tests; it is not part
    of the stable surface. `app` is reserved for the application layer (hooks):
    whatever `build` was given, kept and not used yet.
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
        self._application: Application | None = None

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
        """Shutdown begins: /readyz answers 503 "draining" from now on, so load
        balancers stop sending clients; those connected stay until `close`."""
        self.node.draining = True

    async def close(self) -> None:
        """Stop: every client is told to reconnect elsewhere (3001), publishes under
        way finish, the channel log's queue is written or spilled, then the
        broker and MongoDB connections close. Bound it with a timeout of your own."""
        self.drain()
        await self._stats.close()
        await self.node.close()
        if self._application is not None:
            await close_websockets(self._application)
        if self._store is not None:
            await self._store.close()

    def application(self) -> Application:
        """The Tornado application to serve (the same one each call): the WebSocket
        endpoint, the server API, /healthz, /readyz, /metrics and the pages."""
        if self._application is None:
            self._application = make_app(self.node, self._readiness, self._api_keys)
        return self._application

    # Channels ----------------------------------------------------------------

    async def publish(
        self,
        channel: str,
        data: Any,
        *,
        tags: dict[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> StreamPosition:
        """Publish `data` (JSON-compatible) to every subscriber on every node; returns
        its position (offset 0 where the namespace keeps no history). Returned means
        the broker took it and, for a persisted namespace, the log queued it."""
        return await self.node.publish(channel, data, tags=tags, idempotency_key=idempotency_key)

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
        query = self.node.history_query(HistoryRequest(channel, limit, since, reverse))
        return await self.node.history(channel, query)

    async def presence(self, channel: str) -> dict[str, ClientInfo]:
        """Who is subscribed to `channel` on any node, by client id."""
        self._presence_options(channel)
        return await self.node.channel_presence(channel)

    async def presence_stats(self, channel: str) -> PresenceStats:
        """How many clients and distinct users are subscribed to `channel`."""
        self._presence_options(channel)
        return await self.node.presence_stats(channel)

    def _presence_options(self, channel: str) -> None:
        if not self.node.channel_options(channel).presence:
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
        """Every live node (this one included): name, version, uptime and counts."""
        return self.node.cluster.nodes()

    # Users -------------------------------------------------------------------

    async def unsubscribe(self, user: str, channel: str, client_id: str = "") -> None:
        """Unsubscribe `user`'s connections (or only `client_id`) from `channel` on
        every node; each gets an unsubscribe push. Returns once sent."""
        self.node.channel_options(channel)
        await self._commands.send(
            "unsubscribe", {"user": user, "client": client_id, "channel": channel}
        )

    async def disconnect(
        self,
        user: str,
        code: int = DisconnectCode.FORCE_DISCONNECT,
        reason: str = "force disconnect",
        client_id: str = "",
    ) -> None:
        """Close `user`'s connections (or only `client_id`) on every node with
        `code` (3000-4999: below 3500 the SDKs reconnect; 107 otherwise). Returns
        once sent."""
        if code not in CUSTOM_DISCONNECT_CODES:
            codes = CUSTOM_DISCONNECT_CODES
            expected = f"code: expected an integer from {codes.start} to {codes.stop - 1}"
            raise ReplyError(ErrorCode.BAD_REQUEST, expected)
        await self._commands.send(
            "disconnect",
            {
                "user": user,
                "client": client_id,
                "whitelist": [],
                "code": int(code),
                "reason": reason,
            },
        )
