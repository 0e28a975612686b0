"""One client connection: its state, commands, subscriptions and outgoing queue.

Independent of Tornado: it reads frames through `handle_frame` and writes through
a `Transport` (server/transport.py), which frames what it queued. Promises:
- Commands of a connection are handled one at a time, in order; replies keep
  that order. Every command with an id gets exactly one reply (a result or an
  error) while the connection is open: handlers return their result and the
  dispatcher alone replies; work after a reply (a subscription's join) runs
  after it, and its failure is logged, never answered.
- Outgoing messages are queued and flushed once per event-loop turn as one
  batched frame, so nothing in fan-out waits on a client's socket.
- One budget, `client.max_unsent_bytes`, bounds everything held for the peer:
  queued messages, publications held back during a subscribe, and what the
  socket has not taken. Past it the connection is closed with 3008 and what
  was held is dropped. A reply larger than the whole budget answers error 106
  instead; history and recovery answers are cut to `client.reply_bytes`
  (see server/replies.py).
- A subscription's reply comes before any publication of its channel, and the
  publications after it continue the reply's offset with no gap and no
  duplicate (live publications arriving while history is read are held back
  and merged by offset).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from enum import Enum
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

from server.auth import access
from server.auth.limits import CommandLimiter, Verdict
from server.auth.tokens import ConnectionClaims, SubscriptionClaims
from server.broker.base import HistoryQuery
from server.config import ChannelOptions
from server.errors import Disconnect, DisconnectCode, ErrorCode, ReplyError, UnsubscribeCode
from server.protocol import (
    FLAG_REJECT_UNRECOVERED,
    PING,
    ClientInfo,
    Command,
    ConnectRequest,
    Encoded,
    HistoryRequest,
    PresenceRequest,
    PresenceStatsRequest,
    ProtocolError,
    Publication,
    PublishRequest,
    RefreshRequest,
    RPCRequest,
    SendRequest,
    Spliced,
    StreamPosition,
    SubRefreshRequest,
    SubscribeRequest,
    UnsubscribeRequest,
    decode_frame,
    encode,
    encode_reply,
    encode_spliced,
    error_reply,
    parse_command,
    parse_request,
    push,
    reply_overhead,
    validate_channel,
)
from server.replies import ReplyBounds, read_within
from server.transport import Frame, Transport

if TYPE_CHECKING:
    from server.node import Node

__all__ = [
    "UNSUBSCRIBE_EXPIRED",
    "UNSUBSCRIBE_INSUFFICIENT_STATE",
    "UNSUBSCRIBE_SERVER",
    "Session",
    "State",
]

UNSUBSCRIBE_SERVER = int(UnsubscribeCode.SERVER)
"""Unsubscribe push code: the server ended the subscription; the client stays out."""
UNSUBSCRIBE_INSUFFICIENT_STATE = int(UnsubscribeCode.INSUFFICIENT_STATE)
"""Unsubscribe push code: the server lost track of the stream; the client resubscribes."""
UNSUBSCRIBE_EXPIRED = int(UnsubscribeCode.EXPIRED)
"""Unsubscribe push code: the subscription token expired unrefreshed; the client
resubscribes (and, told 109, gets a new token)."""

log = logging.getLogger(__name__)


@contextmanager
def _temporary(action: str, channel: str) -> Iterator[None]:
    """A backend's failure becomes error 100 (temporary), logged in one line."""
    try:
        yield
    except (ReplyError, Disconnect):
        raise
    except Exception as exc:
        log.warning("%s %r failed: %s", action, channel, _describe(exc))
        raise ReplyError(ErrorCode.INTERNAL) from None


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class State(Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSED = "closed"


class _Subscription:
    """Per-channel state; `pending` holds live publications while the subscribe runs
    (`held`: their bytes, counted in the connection's budget)."""

    __slots__ = ("epoch", "expiry", "held", "info", "offset", "options", "pending", "recoverable")

    def __init__(self, options: ChannelOptions, info: ClientInfo) -> None:
        self.options = options
        self.info = info
        self.recoverable = False
        self.offset = 0
        self.epoch = ""
        self.pending: list[tuple[Publication, Frame]] | None = []
        self.held = 0
        self.expiry: access.Expiry | None = None  # of its subscription token, if any


class _Answer(NamedTuple):
    """A handler's result, and what to do once the reply is queued."""

    result: dict[str, Any]
    then: Callable[[], Awaitable[None]]


class _Started(NamedTuple):
    """A subscription registered and positioned (see `_start_subscription`)."""

    sub: _Subscription
    result: dict[str, Any]
    publications: list[Publication]  # recovered, or the retained state


class Session:
    __slots__ = (
        "_behind",
        "_expiry",
        "_held",
        "_limiter",
        "_loop",
        "_max_unsent",
        "_out",
        "_ping_handle",
        "_pong_handle",
        "_queued",
        "_reply_limit",
        "_shared",
        "_stale_handle",
        "_subs",
        "_unsent",
        "client_id",
        "conn_info",
        "encoding",
        "name",
        "node",
        "remote_addr",
        "state",
        "transport",
        "user",
        "variant",
    )

    def __init__(self, node: Node, transport: Transport, remote_addr: str = "") -> None:
        self.node = node
        self.transport = transport
        self.variant = transport.variant
        self.encoding = transport.variant.encoding
        self.remote_addr = remote_addr
        self.client_id = str(uuid.uuid4())
        self.user = ""
        self.conn_info: Any = None
        self.name = ""
        self.state = State.CONNECTING
        self._subs: dict[str, _Subscription] = {}
        self._out: list[bytes] = []
        self._shared: Frame | None = None  # the hub's frame, while it is all `_out` holds
        # The budget: `_queued` (bytes in `_out`) + `_unsent` (what the socket had
        # not taken when last asked; it only shrinks until the next write) + `_held`
        # (publications held back by subscribes under way) <= `_max_unsent`.
        self._max_unsent = node.settings.client.max_unsent_bytes
        self._reply_limit = node.settings.client.reply_bytes
        self._queued = 0
        self._unsent = 0
        self._held = 0
        # While the socket is behind, `_out` waits (and later leaves as one frame)
        # until the transport calls `writable`.
        self._behind = False
        self._loop = asyncio.get_running_loop()
        self._ping_handle: asyncio.TimerHandle | None = None
        self._pong_handle: asyncio.TimerHandle | None = None
        self._stale_handle: asyncio.TimerHandle | None = self._loop.call_later(
            node.settings.client.stale_timeout, self._on_stale
        )
        self._expiry = access.Expiry(
            self._loop,
            node.settings.auth.expired_close_delay,
            lambda: self.disconnect(Disconnect(DisconnectCode.EXPIRED)),
        )
        limits = node.settings.client
        self._limiter = CommandLimiter(
            limits.command_rate,
            limits.command_burst,
            limits.max_rejected_commands,
            limits.rejected_commands_window,
            self._loop.time(),
        )
        node.metrics.connection_opened()

    @property
    def channels(self) -> list[str]:
        return list(self._subs)

    @property
    def expires_at(self) -> int | None:
        """When the connection token runs out (unix seconds); None: never."""
        return self._expiry.expires_at

    # Incoming ----------------------------------------------------------------

    async def handle_frame(self, data: bytes | str) -> None:
        """Handle every command of one frame, in order; a malformed one closes with 3501."""
        if self.state is State.CLOSED:
            return
        try:
            messages = decode_frame(data, self.encoding)
        except ProtocolError as exc:
            log.debug("client %s: %s", self.client_id, exc, extra=self._log_context)
            self.disconnect(Disconnect(DisconnectCode.BAD_REQUEST))
            return
        self.node.metrics.frame_in(len(messages), len(data))
        for message in messages:
            if self.state is State.CLOSED:
                return
            try:
                command = parse_command(message)
            except ProtocolError as exc:
                log.debug("client %s: %s", self.client_id, exc, extra=self._log_context)
                self.disconnect(Disconnect(DisconnectCode.BAD_REQUEST))
                return
            await self._handle_command(command)

    async def _handle_command(self, command: Command) -> None:
        if not command.id and not command.method:
            self._on_pong()
            return
        method = command.method if command.method in _HANDLERS else "unknown"
        self.node.metrics.commands.labels(method).inc()
        verdict = self._limiter.check(self._loop.time())
        if verdict is Verdict.DISCONNECT:
            self.disconnect(Disconnect(DisconnectCode.TOO_MANY_REQUESTS))
            return
        if verdict is Verdict.REJECT:
            self._reply_error(command, method, ReplyError(ErrorCode.TOO_MANY_REQUESTS))
            return
        # The one place a command is answered: a handler returns its result or
        # raises, and nothing that runs after the reply can answer it again.
        try:
            handler = _HANDLERS.get(command.method)
            if handler is None:
                raise ReplyError(ErrorCode.METHOD_NOT_FOUND)
            if self.state is not State.CONNECTED and command.method != "connect":
                raise ReplyError(ErrorCode.UNAUTHORIZED)
            answer = await handler(self, command)
        except ReplyError as exc:
            self._reply_error(command, method, exc)
            return
        except Disconnect as exc:
            self.disconnect(exc)
            return
        except Exception:
            log.exception("client %s: %s command failed", self.client_id, command.method)
            self._reply_error(command, method, ReplyError(ErrorCode.INTERNAL))
            return
        then = None
        if isinstance(answer, _Answer):
            answer, then = answer
        if command.id and self.state is not State.CLOSED:
            if answer is None:  # neither answered nor raised: a bug, but still one reply
                log.error("client %s: %s command got no result", self.client_id, command.method)
                self._reply_error(command, method, ReplyError(ErrorCode.INTERNAL))
            else:
                self._reply(command, answer)
        if then is not None:
            await self._after_reply(command, then)

    def _reply(self, command: Command, result: dict[str, Any]) -> None:
        data = encode_reply(command.id, command.method, result, self.encoding)
        if len(data) > self._max_unsent:  # it could never be sent: say so instead
            log.info(
                "client %s: %s reply of %d bytes is over client.max_unsent_bytes",
                self.client_id,
                command.method,
                len(data),
                extra=self._log_context,
            )
            error = ReplyError(ErrorCode.LIMIT_EXCEEDED, "reply too large")
            self._reply_error(command, command.method, error)
            return
        self._queue(data)

    def _reply_error(self, command: Command, method: str, error: ReplyError) -> None:
        self.node.metrics.command_errors.labels(method, int(error.code)).inc()
        if command.id:
            self._send_message(error_reply(command.id, error))

    async def _after_reply(self, command: Command, then: Callable[[], Awaitable[None]]) -> None:
        """Work that follows a reply (joins, held publications): its failure is logged
        once; the command was answered already."""
        try:
            await then()
        except Exception as exc:
            log.warning(
                "client %s: after the %s reply: %s",
                self.client_id,
                command.method,
                _describe(exc),
                extra=self._log_context,
            )

    # Commands ----------------------------------------------------------------

    async def _connect(self, command: Command) -> dict[str, Any] | _Answer | None:
        """Connect, with a token or anonymously; the token's `channels` become
        server-side subscriptions, reported in the reply's `subs` map (recovered
        from the positions the client sends back in its own `subs` on reconnect,
        within one reply budget for them all). Once connected, a failure closes
        the connection (3004) rather than answering."""
        if self.state is State.CONNECTED:
            raise Disconnect(DisconnectCode.BAD_REQUEST, "already connected")
        request: ConnectRequest = self._parse(ConnectRequest, command)
        client_settings = self.node.settings.client
        if request.token:
            claims = access.connection_claims(self.node.tokens, request.token, self.client_id)
        elif client_settings.allow_anonymous:
            claims = ConnectionClaims("", None, None, ())
        else:
            raise ReplyError(ErrorCode.UNAUTHORIZED)
        user, channels = claims.user, claims.channels
        per_user = client_settings.max_connections_per_user
        if user and per_user and len(self.node.hub.user_sessions(user)) >= per_user:
            raise Disconnect(DisconnectCode.CONNECTION_LIMIT)
        if len(channels) > client_settings.max_channels:
            raise Disconnect(DisconnectCode.CHANNEL_LIMIT)
        server_subs = [(ch, self._channel(ch), self._recovery(request.subs, ch)) for ch in channels]
        self.user, self.conn_info, self.name = user, claims.info, request.name
        self.state = State.CONNECTED
        self._cancel(self._stale_handle)
        self._stale_handle = None
        self.node.add_session(self)
        self._ping_handle = self._loop.call_later(client_settings.ping_interval, self._ping)
        result: dict[str, Any] = {
            "client": self.client_id,
            "version": self.node.version,
            "ping": max(1, math.ceil(client_settings.ping_interval)),
            "pong": True,
        }
        result.update(self._expiry.set(claims.expires_at))
        if not server_subs:
            return result
        try:
            return await self._server_subscriptions(command, Spliced(result), server_subs)
        except Disconnect:
            raise
        except ReplyError:
            raise Disconnect(DisconnectCode.INTERNAL) from None
        except Exception:
            log.exception("client %s: server-side subscriptions failed", self.client_id)
            raise Disconnect(DisconnectCode.INTERNAL) from None

    async def _server_subscriptions(
        self,
        command: Command,
        result: Spliced,
        server_subs: list[tuple[str, ChannelOptions, SubscribeRequest]],
    ) -> _Answer | None:
        """The connect reply's `subs` (None if the connection ended meanwhile)."""
        subs = result["subs"] = Spliced()
        started = []
        for channel, options, recovery in server_subs:
            # What the reply holds so far, and this channel's key in `subs`.
            base = len(encode_reply(command.id, "connect", result, self.encoding))
            base += len(encode(channel, self.encoding)) + 1
            done = await self._start_subscription(channel, options, recovery, base=base)
            if done is None:
                return None
            started.append((channel, done.sub))
            subs[channel] = done.result
        return _Answer(result, partial(self._finish_subscriptions, started))

    async def _finish_subscriptions(self, started: list[tuple[str, _Subscription]]) -> None:
        for channel, sub in started:
            await self._finish_subscription(channel, sub)

    def _recovery(self, subs: Any, channel: str) -> SubscribeRequest:
        """The subscribe request for a server-side subscription: where the client
        says it stopped (its connect `subs`), if it says so."""
        params = subs.get(channel) if isinstance(subs, dict) else None
        if not isinstance(params, dict):
            params = {}
        max_depth = self.node.settings.client.max_data_depth
        return parse_request(SubscribeRequest, {**params, "channel": channel}, max_depth)

    def _parse(self, request_type: type[Any], command: Command) -> Any:
        return parse_request(request_type, command.params, self.node.settings.client.max_data_depth)

    def _channel(self, channel: str) -> ChannelOptions:
        validate_channel(channel, self.node.settings.client.max_channel_length)
        return self.node.channel_options(channel)

    def _check_allowed(self, channel: str, options: ChannelOptions, allowed: bool) -> None:
        """Error 103 unless the namespace allows it; in a namespace that requires
        subscription tokens, only to a client subscribed (with one) to `channel`."""
        if options.require_sub_token:
            sub = self._subs.get(channel)
            if not allowed or sub is None or sub.pending is not None:
                raise ReplyError(ErrorCode.PERMISSION_DENIED)
        elif not allowed or (not self.user and not options.allow_anonymous):
            raise ReplyError(ErrorCode.PERMISSION_DENIED)

    async def _subscribe(self, command: Command) -> _Answer | None:
        """A valid subscription token grants the subscription whatever the
        namespace's other permissions; without one, the namespace decides."""
        request: SubscribeRequest = self._parse(SubscribeRequest, command)
        channel = request.channel
        options = self._channel(channel)
        claims = None
        if request.token:
            claims = access.subscription_claims(
                self.node.tokens, request.token, channel, self.user, self.client_id
            )
        elif options.require_sub_token:
            raise ReplyError(ErrorCode.PERMISSION_DENIED)
        else:
            self._check_allowed(channel, options, options.allow_subscribe)
        if channel in self._subs:
            raise ReplyError(ErrorCode.ALREADY_SUBSCRIBED)
        if len(self._subs) >= self.node.settings.client.max_channels:
            raise ReplyError(ErrorCode.LIMIT_EXCEEDED, "too many channels")
        base = reply_overhead(command.id, "subscribe", self.encoding)
        done = await self._start_subscription(channel, options, request, claims, base=base)
        if done is None:
            return None
        return _Answer(done.result, partial(self._finish_subscription, channel, done.sub))

    async def _start_subscription(
        self,
        channel: str,
        options: ChannelOptions,
        request: SubscribeRequest,
        claims: SubscriptionClaims | None = None,
        chan_info: Any = None,
        base: int = 0,
    ) -> _Started | None:
        """Register, read the position (recovering if asked) and add presence.

        `base`: bytes of the reply around this subscription's result (recovered
        publications must fit `client.reply_bytes` with it). Returns None when
        the connection ended meanwhile. Live publications are held back until
        `_finish_subscription`, which must follow once the result is queued (if
        the server ended the subscription meanwhile, that does nothing).
        """
        if claims is not None:
            chan_info = claims.info
        sub = self._subs[channel] = _Subscription(
            options, ClientInfo(self.user, self.client_id, self.conn_info, chan_info)
        )
        try:
            await self.node.add_subscriber(channel, self)
            # Read before the position, so live publications after it follow the state.
            retained = options.retained and not request.recover
            state = await self.node.retained_state(channel) if retained else None
            result, publications = await self._subscribe_result(channel, request, sub, base)
            if state is not None:
                result["publications"] = [state.to_dict()]
                publications = [state]
            if options.presence:
                with _temporary("adding presence to", channel):
                    await self.node.presence.add_presence(channel, self.client_id, sub.info)
        except BaseException:
            if self._subs.get(channel) is sub:
                del self._subs[channel]
                self._release_held(sub)
                await self.node.remove_subscriber(channel, self)
            raise
        if self.state is State.CLOSED:
            return None
        if claims is not None and claims.expires_at is not None and self._subs.get(channel) is sub:
            result.update(self._expire_subscription(channel, sub, claims.expires_at))
        return _Started(sub, result, publications)

    def _release(self, channel: str, sub: _Subscription) -> None:
        """Send what was held back while subscribing: the reply went first."""
        if self._subs.get(channel) is not sub or sub.pending is None:
            return
        pending, sub.pending = sub.pending, None
        self._held -= sub.held
        sub.held = 0
        for pub, frame in pending:
            self.deliver_publication(channel, pub, frame)

    def _release_held(self, sub: _Subscription) -> None:
        """Drop what a subscription that ends held back (its budget share too)."""
        self._held -= sub.held
        sub.held = 0
        if sub.pending:
            sub.pending.clear()

    async def _finish_subscription(self, channel: str, sub: _Subscription) -> None:
        self._release(channel, sub)
        await self._join(channel, sub)

    async def _join(self, channel: str, sub: _Subscription) -> None:
        """Announce the subscriber; a failure is logged (the subscription stands)."""
        if not sub.options.join_leave or self._subs.get(channel) is not sub:
            return
        try:
            await self.node.broker.publish_join(channel, sub.info)
        except Exception as exc:
            log.warning(
                "client %s: join to %r not published: %s",
                self.client_id,
                channel,
                _describe(exc),
                extra=self._log_context,
            )

    def _push_server_subscribe(
        self, channel: str, result: dict[str, Any], data: Any, publications: list[Publication]
    ) -> None:
        """A subscribe push, then the recovered publications as publication pushes."""
        body = {k: v for k, v in result.items() if k in ("recoverable", "epoch", "offset")}
        if body.get("recoverable"):
            body["positioned"] = True
        if data is not None:
            body["data"] = data
        self._send_message(push(channel, "subscribe", body))
        for pub in publications:
            self._send_message(push(channel, "pub", pub.to_dict()))

    async def server_subscribe(
        self,
        channel: str,
        chan_info: Any = None,
        data: Any = None,
        recover_since: StreamPosition | None = None,
    ) -> bool:
        """Subscribe from the server side (the server API): the client gets a
        subscribe push (with `data`), then the publications after `recover_since`
        where the channel keeps them (and they fit `client.reply_bytes`). False if
        not connected or already subscribed; channel permissions and the channel
        limit do not apply."""
        if self.state is not State.CONNECTED or channel in self._subs:
            return False
        options = self.node.channel_options(channel)
        since = recover_since or StreamPosition(0, "")
        request = SubscribeRequest(
            channel,
            recover=recover_since is not None,
            offset=since.offset,
            epoch=since.epoch,
            data=data,
        )
        done = await self._start_subscription(channel, options, request, chan_info=chan_info)
        if done is None:
            return False
        self._push_server_subscribe(channel, done.result, request.data, done.publications)
        await self._finish_subscription(channel, done.sub)
        return True

    def _expire_subscription(
        self, channel: str, sub: _Subscription, expires_at: int | None
    ) -> dict[str, Any]:
        """End the subscription with code 2501 unless refreshed in time."""
        if sub.expiry is None:
            grace = self.node.settings.auth.expired_close_delay
            sub.expiry = access.Expiry(
                self._loop, grace, lambda: self._on_subscription_expired(channel, sub)
            )
        return sub.expiry.set(expires_at)

    def _on_subscription_expired(self, channel: str, sub: _Subscription) -> None:
        if self._subs.get(channel) is sub:
            ended = self._end_subscription(channel, UNSUBSCRIBE_EXPIRED, "subscription expired")
            if ended is not None:
                self.node.spawn(self._leave(channel, ended))

    async def _subscribe_result(
        self, channel: str, request: SubscribeRequest, sub: _Subscription, base: int
    ) -> tuple[dict[str, Any], list[Publication]]:
        """The subscribe result and the publications it recovers.

        A recovery is all or nothing: when the publications since the client's
        position are more than `client.recovery_max_limit`, or would take the
        reply past `client.reply_bytes` (`base` + the result), or are gone, the
        answer is `recovered: false` with the current position (error 112 with
        the reject-unrecovered flag).
        """
        if not sub.options.recoverable:
            return {}, []
        result: dict[str, Any] = {"recoverable": True}
        publications: list[Publication] = []
        if request.recover:
            limit = self.node.settings.client.recovery_max_limit
            since = StreamPosition(request.offset, request.epoch)
            result["was_recovering"] = True
            result["recovered"] = True

            def size_of(position: StreamPosition) -> int:
                empty = Spliced(
                    result, publications=Encoded(), epoch=position.epoch, offset=position.offset
                )
                return base + len(encode_spliced(empty, self.encoding))

            within = None
            try:
                within = await read_within(
                    partial(self.node.history, channel),
                    HistoryQuery(since, limit + 1),
                    self.encoding,
                    size_of,
                    self._reply_limit,
                )
                position = within.position
            except ReplyError as exc:
                if exc.code is not ErrorCode.UNRECOVERABLE_POSITION:
                    raise
                position = await self.node.position(channel)
            recovered = within is not None and not within.cut and within.read <= limit
            if not recovered and request.flag & FLAG_REJECT_UNRECOVERED:
                raise ReplyError(ErrorCode.UNRECOVERABLE_POSITION)
            result["recovered"] = recovered
            if recovered and within is not None and within.encoded:
                result = Spliced(result, publications=within.encoded)
                publications = within.publications
        else:
            position = await self.node.position(channel)
        result["epoch"] = position.epoch
        result["offset"] = position.offset
        sub.recoverable = True
        sub.offset = position.offset
        sub.epoch = position.epoch
        return result, publications

    async def _unsubscribe(self, command: Command) -> dict[str, Any]:
        request: UnsubscribeRequest = self._parse(UnsubscribeRequest, command)
        sub = self._subs.pop(request.channel, None)
        if sub is not None:
            self._release_held(sub)
            await self._leave(request.channel, sub)
        return {}

    async def server_unsubscribe(
        self, channel: str, code: int = UNSUBSCRIBE_SERVER, reason: str = "server unsubscribe"
    ) -> bool:
        """End a subscription from the server side with an unsubscribe push.

        Codes below 2500 leave the client unsubscribed; from 2500 the SDKs
        resubscribe (with recovery where they can).
        """
        sub = self._end_subscription(channel, code, reason)
        if sub is None:
            return False
        await self._leave(channel, sub)
        return True

    def _end_subscription(self, channel: str, code: int, reason: str) -> _Subscription | None:
        sub = self._subs.pop(channel, None)
        if sub is not None:
            self._release_held(sub)
            self._send_message(push(channel, "unsubscribe", {"code": code, "reason": reason}))
        return sub

    def _insufficient_state(self, channel: str) -> None:
        """The stream moved on without us (a gap, or a new epoch): the client
        resubscribes on code 2500 and recovers what it can."""
        sub = self._end_subscription(channel, UNSUBSCRIBE_INSUFFICIENT_STATE, "insufficient state")
        if sub is not None:
            self.node.spawn(self._leave(channel, sub))

    def check_position(self, channel: str, position: StreamPosition) -> None:
        """Compare with the stream's position after a broker outage."""
        sub = self._subs.get(channel)
        if sub is None or not sub.recoverable or sub.pending is not None:
            return
        if position.epoch != sub.epoch or position.offset > sub.offset:
            self._insufficient_state(channel)

    def presence_entries(self) -> list[tuple[str, ClientInfo]]:
        """This connection's presence in channels that keep it."""
        return [
            (channel, sub.info)
            for channel, sub in self._subs.items()
            if sub.options.presence and sub.pending is None
        ]

    async def _leave(self, channel: str, sub: _Subscription) -> None:
        """Undo a subscription everywhere; failures are logged, the client is already out."""
        if sub.expiry is not None:
            sub.expiry.cancel()
        try:
            await self.node.remove_subscriber(channel, self)
            if sub.options.presence:
                await self.node.presence.remove_presence(channel, self.client_id)
            if sub.options.join_leave and sub.pending is None:
                await self.node.broker.publish_leave(channel, sub.info)
        except Exception as exc:
            log.warning(
                "client %s: leaving %r failed: %s",
                self.client_id,
                channel,
                exc,
                extra=self._log_context,
            )

    async def _publish(self, command: Command) -> dict[str, Any]:
        request: PublishRequest = self._parse(PublishRequest, command)
        options = self._channel(request.channel)
        self._check_allowed(request.channel, options, options.allow_publish)
        sub = self._subs.get(request.channel)
        info = sub.info if sub else ClientInfo(self.user, self.client_id, self.conn_info)
        await self.node.publish(request.channel, request.data, info)
        return {}

    async def _history(self, command: Command) -> dict[str, Any]:
        request: HistoryRequest = self._parse(HistoryRequest, command)
        options = self._channel(request.channel)
        self._check_allowed(request.channel, options, options.allow_history)
        bounds = ReplyBounds(
            self.encoding,
            reply_overhead(command.id, "history", self.encoding),
            self._reply_limit,
            self._max_unsent,
        )
        return await self.node.history_reply(request, bounds)

    def _presence_channel(self, channel: str) -> None:
        options = self._channel(channel)
        if not options.presence:
            raise ReplyError(ErrorCode.NOT_AVAILABLE, "channel keeps no presence")
        self._check_allowed(channel, options, options.allow_presence)

    async def _presence(self, command: Command) -> dict[str, Any]:
        request: PresenceRequest = self._parse(PresenceRequest, command)
        self._presence_channel(request.channel)
        with _temporary("presence of", request.channel):
            clients = await self.node.presence.presence(request.channel)
        return {"presence": {cid: info.to_dict() for cid, info in clients.items()}}

    async def _presence_stats(self, command: Command) -> dict[str, Any]:
        request: PresenceStatsRequest = self._parse(PresenceStatsRequest, command)
        self._presence_channel(request.channel)
        with _temporary("presence stats of", request.channel):
            stats = await self.node.presence.presence_stats(request.channel)
        return {"num_clients": stats.num_clients, "num_users": stats.num_users}

    async def _refresh(self, command: Command) -> dict[str, Any]:
        """A new connection token for the same user: a new expiry, and new `info`."""
        request: RefreshRequest = self._parse(RefreshRequest, command)
        claims = access.refreshed_claims(self.node.tokens, request.token, self.user, self.client_id)
        result = self._expiry.set(claims.expires_at)
        if claims.info != self.conn_info:
            self.conn_info = claims.info
            for channel, sub in list(self._subs.items()):  # presence updates await
                sub.info = replace(sub.info, conn_info=claims.info)
                await self._update_presence(channel, sub)
        return result

    async def _sub_refresh(self, command: Command) -> dict[str, Any]:
        """A new subscription token for a channel subscribed to: a new expiry and `chan_info`."""
        request: SubRefreshRequest = self._parse(SubRefreshRequest, command)
        channel = request.channel
        sub = self._subs.get(channel)
        if sub is None or sub.pending is not None:
            raise ReplyError(ErrorCode.PERMISSION_DENIED, "not subscribed")
        claims = access.subscription_claims(
            self.node.tokens, request.token, channel, self.user, self.client_id, ErrorCode.EXPIRED
        )
        result = self._expire_subscription(channel, sub, claims.expires_at)
        if claims.info != sub.info.chan_info:
            sub.info = replace(sub.info, chan_info=claims.info)
            await self._update_presence(channel, sub)
        return result

    async def _update_presence(self, channel: str, sub: _Subscription) -> None:
        if sub.options.presence and sub.pending is None and self._subs.get(channel) is sub:
            with _temporary("updating presence in", channel):
                await self.node.presence.add_presence(channel, self.client_id, sub.info)

    async def _rpc(self, command: Command) -> dict[str, Any]:
        request: RPCRequest = self._parse(RPCRequest, command)
        handler = self.node.rpc_handlers.get(request.method)
        if handler is None:
            raise ReplyError(ErrorCode.NOT_AVAILABLE, "no rpc handler for this method")
        data = await handler(self, request.data)
        return {} if data is None else {"data": data}

    async def _send(self, command: Command) -> dict[str, Any] | None:
        request: SendRequest = self._parse(SendRequest, command)
        if self.node.send_handler is None:
            if command.id:
                raise ReplyError(ErrorCode.NOT_AVAILABLE, "no send handler")
            return None
        await self.node.send_handler(self, request.data)
        return {}

    # Delivery (called by the hub) --------------------------------------------

    def deliver_publication(self, channel: str, pub: Publication, frame: Frame) -> None:
        sub = self._subs.get(channel)
        if sub is None:
            return
        if sub.pending is not None:
            sub.pending.append((pub, frame))
            size = len(frame.payload)
            sub.held += size
            self._held += size
            self._check_budget()
            return
        offset = pub.offset
        if offset and sub.recoverable:
            last, epoch = sub.offset, pub.epoch
            same_stream = not epoch or epoch == sub.epoch
            if offset != last + 1 or not same_stream:
                if offset > last or not same_stream:
                    self._insufficient_state(channel)
                # else: already sent in the subscribe reply
                return
            sub.offset = offset
        self._queue(frame.payload, frame)

    def deliver(self, channel: str, frame: Frame) -> None:
        sub = self._subs.get(channel)
        if sub is not None and sub.pending is None:
            self._queue(frame.payload, frame)

    # Outgoing ----------------------------------------------------------------

    def _send_message(self, message: dict[str, Any]) -> None:
        self._queue(encode(message, self.encoding))

    def _queue(self, data: bytes, shared: Frame | None = None) -> None:
        """Queue one encoded message; `shared` is the hub's frame of exactly these bytes.

        A message that takes the connection past its budget closes it (3008)."""
        if self.state is State.CLOSED:
            return
        out = self._out
        out.append(data)
        self._queued += len(data)
        if self._queued + self._unsent + self._held > self._max_unsent:
            self._too_slow()
            return
        if len(out) == 1:
            self._shared = shared
            self.node.hub.want_flush(self)

    def flush(self, force: bool = False) -> None:
        """Write the queue as one frame, unless the peer is behind.

        While the socket still holds unsent bytes the queue is held back (the
        transport calls `writable` once they are gone, and everything held leaves
        as one frame: a peer that reads slowly costs fewer writes, not more).
        Every byte counts against `client.max_unsent_bytes`: what is queued, what
        the socket has not taken, and publications held back by a subscribe under
        way; past it the connection is closed with 3008, its memory stays bounded
        and nobody else's delivery waits for it. `force` writes even to a socket
        that is behind (a closing message).
        """
        out = self._out
        if not out:
            return
        unsent = self._unsent = self.transport.unsent_bytes()
        if unsent and not force:
            self._behind = True
            self._check_budget()
            return
        self._behind = False
        count = len(out)
        written = self.transport.write(out, self._shared if count == 1 else None)
        out.clear()  # the same list again: no allocation per flush
        self._queued = 0
        self._shared = None
        self._unsent = self.transport.unsent_bytes()  # what the socket did not take
        metrics = self.node.metrics
        metrics.messages_out += count
        metrics.bytes_out += written

    def writable(self) -> None:
        """The socket took everything it held: send what waited meanwhile."""
        self._unsent = 0
        if self._behind and self._out:
            self._behind = False
            self.node.hub.want_flush(self)

    def _check_budget(self) -> None:
        if self._queued + self._unsent + self._held > self._max_unsent:
            self._too_slow()

    def _too_slow(self) -> None:
        if self.state is State.CLOSED:
            return
        log.info(
            "client %s: %d bytes held, closing as slow",
            self.client_id,
            self._queued + self._unsent + self._held,
            extra=self._log_context,
        )
        self.node.metrics.disconnects.labels(int(DisconnectCode.SLOW)).inc()
        self._closed()
        self.transport.close(int(DisconnectCode.SLOW), "slow")

    # Liveness ----------------------------------------------------------------

    def _on_stale(self) -> None:
        self._stale_handle = None
        if self.state is State.CONNECTING:
            self.disconnect(Disconnect(DisconnectCode.STALE))

    def _ping(self) -> None:
        interval = self.node.settings.client
        self._send_message(PING)
        if self._pong_handle is None:
            self._pong_handle = self._loop.call_later(interval.pong_timeout, self._on_no_pong)
        self._ping_handle = self._loop.call_later(interval.ping_interval, self._ping)

    def _on_pong(self) -> None:
        self._cancel(self._pong_handle)
        self._pong_handle = None

    def _on_no_pong(self) -> None:
        self._pong_handle = None
        self.disconnect(Disconnect(DisconnectCode.NO_PONG))

    def server_refresh(self, expired: bool = False, expire_at: float | None = None) -> None:
        """The server API's refresh: `expired` closes now with 3005; `expire_at`
        (Unix seconds) closes with 3005 then (after `auth.expired_close_delay`)
        unless refreshed again; neither means the connection no longer expires."""
        if self.state is not State.CONNECTED:
            return
        if expired or (expire_at is not None and expire_at <= time.time()):
            self.disconnect(Disconnect(DisconnectCode.EXPIRED))
            return
        self._expiry.set(None if expire_at is None else int(expire_at))

    @staticmethod
    def _cancel(handle: asyncio.TimerHandle | None) -> None:
        if handle is not None:
            handle.cancel()

    @property
    def _log_context(self) -> dict[str, str]:
        """Fields JSON log lines carry for this connection (see server/logs.py)."""
        return {"client": self.client_id, "user": self.user}

    # Closing -----------------------------------------------------------------

    def disconnect(self, reason: Disconnect) -> None:
        """Close with `reason`: queued replies go first, then (if connected) a
        disconnect push, then the close frame."""
        if self.state is State.CLOSED:
            return
        self.node.metrics.disconnects.labels(int(reason.code)).inc()
        if not self.transport.sends_close_frame or (
            self.state is State.CONNECTED and reason.code is not DisconnectCode.BAD_REQUEST
        ):
            body = {"code": int(reason.code), "reason": reason.reason}
            body["reconnect"] = reason.reconnect
            # Past the budget check: it leaves at once with the close frame.
            self._out.append(encode(push("", "disconnect", body), self.encoding))
        self.flush(force=True)
        self._closed()
        self.transport.close(int(reason.code), reason.reason)

    def on_transport_closed(self) -> None:
        """The peer went away (or the close handshake finished)."""
        self._closed()

    def _closed(self) -> None:
        if self.state is State.CLOSED:
            return
        was_connected = self.state is State.CONNECTED
        self.state = State.CLOSED
        self.node.metrics.connection_closed()
        self._out = []
        self._shared = None
        self._queued = self._unsent = self._held = 0
        self._behind = False
        for handle in (
            self._stale_handle,
            self._ping_handle,
            self._pong_handle,
        ):
            self._cancel(handle)
        self._stale_handle = self._ping_handle = self._pong_handle = None
        self._expiry.cancel()
        subs, self._subs = self._subs, {}
        for sub in subs.values():
            if sub.expiry is not None:
                sub.expiry.cancel()
        if was_connected:
            self.node.remove_session(self)
        if subs:
            self.node.spawn(self._leave_all(subs))

    async def _leave_all(self, subs: dict[str, _Subscription]) -> None:
        for channel, sub in subs.items():
            await self._leave(channel, sub)


_Handler = Callable[[Session, Command], Awaitable[dict[str, Any] | _Answer | None]]

_HANDLERS: dict[str, _Handler] = {
    "connect": Session._connect,
    "subscribe": Session._subscribe,
    "unsubscribe": Session._unsubscribe,
    "publish": Session._publish,
    "history": Session._history,
    "presence": Session._presence,
    "presence_stats": Session._presence_stats,
    "refresh": Session._refresh,
    "sub_refresh": Session._sub_refresh,
    "rpc": Session._rpc,
    "send": Session._send,
}
