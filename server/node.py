"""The node: wires settings, hub, broker and presence, and handles broker events.

Everything a session or the HTTP API does to the outside world goes through here:
publications go to the broker and come back through `handle_publication`, even
on a single node, so there is one delivery path.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Coroutine
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from . import __version__
from .broker.base import (
    Broker,
    Fence,
    HistoryOptions,
    PresenceEntry,
    PresenceManager,
    PresenceStats,
)
from .broker_recovery import BrokerRecovery
from .broker_subscriptions import BrokerSubscriptions
from .channel_reads import ChannelReads
from .config import ChannelOptions, Settings
from .errors import Disconnect, DisconnectCode, ErrorCode, ReplyError
from .hub import Hub
from .logs import Repeated, temporary_failure
from .protocol import (
    ClientInfo,
    Publication,
    StreamPosition,
    validate_channel,
)
from .user_caps import UserCaps

if TYPE_CHECKING:
    from .app.layer import AppLayer
    from .auth.tokens import TokenVerifier
    from .channel_log import ChannelLog
    from .cluster import Cluster
    from .hub import Outlet
    from .metrics import Metrics
    from .session import ChannelSubscriber, ClientSession
    from .session.port import SendHandler

__all__ = ["Node", "PublicationObserver"]

log = logging.getLogger(__name__)

PublicationObserver = Callable[[Publication], None]
"""Sees each publication of one channel as it reaches this node; must not block or raise."""


class Node:
    """One server instance. It builds none of its dependencies: the composition root
    (server/compose.py) makes them from settings and hands them in."""

    def __init__(
        self,
        settings: Settings,
        *,
        broker: Broker,
        presence: PresenceManager,
        tokens: TokenVerifier,
        metrics: Metrics,
        cluster: Cluster,
        app: AppLayer,
        durable: ChannelLog | None = None,
    ) -> None:
        self.settings = settings
        self.broker = broker
        self.presence = presence
        self.tokens = tokens
        self.metrics = metrics
        self.cluster = cluster
        self.durable = durable  # the MongoDB channel log; None keeps nothing beyond the broker
        self.name = settings.server.name or f"{socket.gethostname()}:{os.getpid()}"
        self.version = __version__
        self.hub: Hub[ClientSession, ChannelSubscriber] = Hub(settings.client.write_interval)
        self._want_flush = self.hub.want_flush
        self.app = app  # the application's hooks (server/app/layer.py)
        self.send_handler: SendHandler | None = None
        self._observers: dict[str, PublicationObserver] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._refresher: asyncio.Task[None] | None = None
        self._started = False
        self._publishing = 0  # publishes waiting for the broker
        self._publishes_done = asyncio.Event()
        self._publishes_done.set()
        self._broker_log = Repeated(log, settings.log.repeat_interval)
        # client.max_connections_per_user, per process or cluster-wide: server/user_caps.py.
        self.users = UserCaps(
            settings, presence, self.count_user_sessions, self._broker_log, self.spawn
        )
        # Positions, history, retained state: server/channel_reads.py.
        self.reads = ChannelReads(
            settings,
            broker,
            durable,
            self.channel_options,
            self.history_options,
            self._broker_log,
            self.spawn,
        )
        self._recovery = BrokerRecovery(
            settings,
            broker,
            durable,
            self.hub.channels,
            self.hub.subscribers,
            self.reads.position,
            self.spawn,
        )
        self._broker_subs = BrokerSubscriptions(broker, self._broker_log)
        self.draining = False  # set when shutdown begins: /readyz answers 503
        self._started_at = time.monotonic()
        cluster.attach(self.info, self.spawn)
        app.attach(self.spawn)

    # Life cycle --------------------------------------------------------------

    async def start(self) -> None:
        if not self._started:
            await self.broker.start(self)
            if self.durable is not None:
                await self.durable.start(self.broker, self._log_options, self._logged_prefixes())
            self._started = True
            self._started_at = time.monotonic()
            await self.cluster.start()
            if self.presence.ttl is not None or self.users.leasing:
                self._refresher = self.spawn(self._refresh_presence())
            self.app.start()
            await self.app.start_services()

    async def close(self) -> None:
        """Shut down in order: tell every client to reconnect elsewhere (3001), so no new
        command starts; let publishes already sent to the broker finish (they are
        acknowledged, so they must reach the log); write or spill the log; stop the broker."""
        self.draining = True
        await self.app.close_services()  # sources stop publishing; channels vacated at once
        for session in self.hub.sessions():
            session.disconnect(Disconnect(DisconnectCode.SHUTDOWN))
        if self._refresher is not None:
            self._refresher.cancel()
            self._refresher = None
        try:
            await asyncio.wait_for(
                self._publishes_done.wait(), self.settings.redis.command_timeout + 1.0
            )
        except TimeoutError:
            log.warning("%d publishes still waiting for the broker at shutdown", self._publishing)
        await self.cluster.close()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        if self.durable is not None:
            await self.durable.close()
        await self.broker.close()
        await self.app.close()
        self._started = False

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run a background task the node keeps a reference to and logs the failure of."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    def broker_call(self, action: str, target: str) -> AbstractContextManager[None]:
        """The node's one handling of broker trouble, for callers outside it: an
        exception inside becomes ReplyError(100), logged as "<action> <target>
        failed" at most once per `log.repeat_interval` (ReplyErrors pass through)."""
        return temporary_failure(self._broker_log, action, target)

    @property
    def broker_failures(self) -> Repeated:
        """The rate-bounded log line of broker trouble `broker_call` writes to."""
        return self._broker_log

    # Broker events -----------------------------------------------------------

    def handle_publication(self, channel: str, pub: Publication) -> None:
        if self._observers:  # the one check the delivery path pays when nothing observes
            observer = self._observers.get(channel)
            if observer is not None:
                observer(pub)
        with self.metrics.timed(self.metrics.fanout):
            self.hub.broadcast_publication(channel, pub)

    def handle_join(self, channel: str, info: ClientInfo) -> None:
        if self._pushes_join_leave(channel):
            self.hub.broadcast_join(channel, info)

    def handle_leave(self, channel: str, info: ClientInfo) -> None:
        if self._pushes_join_leave(channel):
            self.hub.broadcast_leave(channel, info)

    def _pushes_join_leave(self, channel: str) -> bool:
        """False while the channel has more local subscribers than its namespace's
        `join_leave_max_subscribers` (0: no limit): its joins and leaves are then
        not pushed here (presence still answers)."""
        options = self.settings.channel_options(channel)
        most = 0 if options is None else options.join_leave_max_subscribers
        return not most or self.hub.num_subscribers(channel) <= most

    def handle_broker_reconnect(self) -> None:
        self.metrics.broker_reconnects.inc()
        self._recovery.reconnected()

    def handle_control(self, data: bytes) -> None:
        self.cluster.handle(data)

    async def _refresh_presence(self) -> None:
        """Keep this node's presence entries and user leases alive while their
        connections are: one `refresh_presence` every `redis.presence_update_interval`."""
        interval = self.settings.redis.presence_update_interval
        while True:
            await asyncio.sleep(interval)
            await self.refresh_presence()

    async def refresh_presence(self) -> None:
        """One refresh pass: every presence entry of this node's connections in one
        `add_presence_many` call (Redis: one pipeline per shard and 1,000 entries),
        then every user lease it holds in one `UserLeases.renew`. A failure is
        logged (rate-bounded); the next pass tries again."""
        entries = [
            (channel, session.client_id, info)
            for session in self.hub.sessions()
            for channel, info in session.presence_entries()
        ]
        if entries and self.presence.ttl is not None:
            try:
                await self.presence.add_presence_many(entries)
                await self._remove_refreshed_leavers(entries)
            except Exception as exc:
                self._broker_log("presence refresh failed: %s", exc)
        await self.users.renew()

    async def _remove_refreshed_leavers(self, refreshed: list[PresenceEntry]) -> None:
        """Remove again the entries that left while their refresh was on its way
        (the refresh may have landed after their removal)."""
        live = {
            (channel, session.client_id)
            for session in self.hub.sessions()
            for channel, _ in session.presence_entries()
        }
        for channel, client_id, _ in refreshed:
            if (channel, client_id) not in live:
                await self.presence.remove_presence(channel, client_id)

    # Channels ----------------------------------------------------------------

    def channel_options(self, channel: str) -> ChannelOptions:
        """The channel's namespace options; ReplyError(102) for an unknown namespace."""
        options = self.settings.channel_options(channel)
        if options is None:
            raise ReplyError(ErrorCode.UNKNOWN_CHANNEL)
        return options

    def checked_channel(self, channel: str) -> ChannelOptions:
        """`channel_options` of a name from a client or the API (107, 106, 102)."""
        validate_channel(channel, self.settings.client.max_channel_length)
        return self.channel_options(channel)

    def history_options(self, options: ChannelOptions) -> HistoryOptions:
        """The broker options of a namespace: persisted ones (with a log configured)
        keep what the log has not stored, up to `persist.max_lag` publications."""
        lag = self.settings.persist.max_lag if options.persist and self.durable else 0
        o = options
        return HistoryOptions(o.history_size, o.history_ttl, o.history_meta_ttl, lag)

    def _log_options(self, channel: str) -> tuple[ChannelOptions, HistoryOptions] | None:
        options = self.settings.channel_options(channel)
        if options is None or not options.persist or self.durable is None:
            return None
        return options, self.history_options(options)

    def _logged_prefixes(self) -> tuple[str, ...]:
        """Where persisted channels' names start: their namespaces (or anywhere)."""
        if self.settings.channels.persist:
            return ("",)
        return tuple(f"{ns}:" for ns, o in self.settings.namespaces.items() if o.persist)

    async def add_subscriber(
        self, channel: str, session: ChannelSubscriber, delta: bool = False
    ) -> None:
        """Make `session` a local subscriber (in its delta variant with `delta`);
        returns once the broker delivers the channel. Concurrent first subscribers
        share one broker subscription; a broker failure undoes the local
        subscription and raises ReplyError(100)."""
        self.hub.subscribe(channel, session, session.variant.with_delta if delta else None)
        try:
            await self._broker_subs.acquire(channel)
        except ReplyError:
            self.hub.unsubscribe(channel, session)
            raise

    async def remove_subscriber(self, channel: str, session: ChannelSubscriber) -> None:
        if self.hub.unsubscribe(channel, session) and channel not in self._observers:
            await self._broker_subs.release(channel)

    async def observe(self, channel: str, observer: PublicationObserver) -> None:
        """Call `observer` with each publication of `channel` this node receives,
        before its subscribers get it (one observer per channel; a second replaces
        the first). Returns once the broker delivers the channel; ReplyError(100)
        (and nothing observed) if the broker refuses."""
        self._observers[channel] = observer
        try:
            await self._broker_subs.acquire(channel)
        except ReplyError:
            self._observers.pop(channel, None)
            raise

    async def unobserve(self, channel: str) -> None:
        """Stop observing `channel` (also undoes an `observe` cut short); the broker
        subscription ends unless local subscribers remain."""
        if self._observers.pop(channel, None) is not None and not self.hub.has_subscribers(channel):
            await self._broker_subs.release(channel)

    def observes(self, channel: str) -> bool:
        return channel in self._observers

    async def publish(
        self,
        channel: str,
        data: Any,
        info: ClientInfo | None = None,
        tags: dict[str, str] | None = None,
        skip_history: bool = False,
        idempotency_key: str | None = None,
        fence: Fence | None = None,
        delta: bool = False,
    ) -> StreamPosition:
        """Publish through the broker (see `Broker.publish` for `idempotency_key` and
        `fence`). A persisted channel's publication is queued for the log before this
        returns its position (the acknowledgement); shutdown waits for publishes under way.
        The publication is delta-enabled (`Publication.delta`) with `delta` or in a
        namespace with `delta_publish`, as Centrifugo's publish `delta` flag."""
        options = self.channel_options(channel)
        history = HistoryOptions(0) if skip_history else self.history_options(options)
        logged = history.log_lag > 0
        if logged:
            await self._recovery.wait_checked()  # after a broker reconnect
        self._publishing += 1
        self._publishes_done.clear()
        try:
            with (
                temporary_failure(self._broker_log, "publish to", channel),
                self.metrics.timed(self.metrics.broker_publish),
            ):
                position = await self.broker.publish(
                    channel,
                    data,
                    history,
                    info,
                    tags,
                    idempotency_key=idempotency_key,
                    idempotency_window=self.settings.api.idempotency_window,
                    fence=fence,
                    delta=delta or options.delta_publish,
                )
            if logged and self.durable is not None and position.offset:
                self.durable.record(channel, options, position, data, info, tags)
        finally:
            self._publishing -= 1
            if not self._publishing:
                self._publishes_done.set()
        return position

    def info(self) -> dict[str, Any]:
        """What this node tells the cluster about itself."""
        return {
            "name": self.name,
            "version": self.version,
            "uptime": int(time.monotonic() - self._started_at),
            "num_clients": self.hub.num_clients,
            "num_users": self.hub.num_users,
            "num_subs": self.hub.num_subscriptions,
            "num_channels": self.hub.num_channels,
        }

    # Sessions ----------------------------------------------------------------

    def add_session(self, session: ClientSession) -> None:
        self.hub.add_session(session)

    def remove_session(self, session: ClientSession) -> None:
        self.hub.remove_session(session)
        self.users.release(session.client_id)

    # The session's port (server/session/port.py) ---------------------------------
    # Broker and presence failures here become error 100, logged once (`temporary_failure`).

    @property
    def want_flush(self) -> Callable[[Outlet], None]:
        """Schedules an outbox's flush: the hub's (one bound method for every session)."""
        return self._want_flush

    def count_user_sessions(self, user: str) -> int:
        return len(self.hub.user_sessions(user))

    async def add_presence(self, channel: str, client_id: str, info: ClientInfo) -> None:
        with temporary_failure(self._broker_log, "adding presence to", channel):
            await self.presence.add_presence(channel, client_id, info)

    async def remove_presence(self, channel: str, client_id: str) -> None:
        with temporary_failure(self._broker_log, "removing presence from", channel):
            await self.presence.remove_presence(channel, client_id)

    async def channel_presence(self, channel: str) -> dict[str, ClientInfo]:
        with temporary_failure(self._broker_log, "presence of", channel):
            return await self.presence.presence(channel)

    async def presence_stats(self, channel: str) -> PresenceStats:
        with temporary_failure(self._broker_log, "presence stats of", channel):
            return await self.presence.presence_stats(channel)

    async def publish_join(self, channel: str, info: ClientInfo) -> None:
        with temporary_failure(self._broker_log, "publishing the join to", channel):
            await self.broker.publish_join(channel, info)

    async def publish_leave(self, channel: str, info: ClientInfo) -> None:
        with temporary_failure(self._broker_log, "publishing the leave to", channel):
            await self.broker.publish_leave(channel, info)
