"""The eleven client commands, one handler each (`HANDLERS`).

A handler receives the session and the parsed command and returns its result,
an `Answer` (a result and the work that must follow its reply), or raises
ReplyError (an error reply) or Disconnect (the connection closes). Handlers
never reply themselves: the session's dispatcher alone does, so every command
with an id gets exactly one reply.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

from ..app.hooks import (
    HookPoint,
    PublishContext,
    RPCContext,
    SubscribeContext,
    SubscribeResult,
)
from ..auth import access
from ..auth.tokens import ConnectionClaims
from ..config import ChannelOptions
from ..errors import Disconnect, DisconnectCode, ErrorCode, ReplyError
from ..protocol import (
    Command,
    ConnectRequest,
    HistoryRequest,
    PresenceRequest,
    PresenceStatsRequest,
    PublishRequest,
    RefreshRequest,
    RPCRequest,
    SendRequest,
    Spliced,
    SubRefreshRequest,
    SubscribeRequest,
    UnsubscribeRequest,
    encode,
    encode_reply,
    parse_request,
    reply_overhead,
)
from ..replies import ReplyBounds
from .hook_calls import (
    client_of,
    connect_context,
    refresh_connection,
    refresh_subscription,
)
from .subscriptions import Subscription
from .unidirectional import requested_subscriptions

if TYPE_CHECKING:
    from .session import Session

__all__ = ["HANDLERS", "Answer", "Handler"]

log = logging.getLogger(__name__)


class Answer(NamedTuple):
    """A handler's result, and what to do once the reply is queued."""

    result: dict[str, Any]
    then: Callable[[], Awaitable[None]]


Handler = Callable[["Session", Command], Awaitable[dict[str, Any] | Answer | None]]


def _parse(session: Session, request_type: type[Any], command: Command) -> Any:
    return parse_request(request_type, command.params, session.settings.client.max_data_depth)


def _check_allowed(session: Session, channel: str, options: ChannelOptions, allowed: bool) -> None:
    """Error 103 unless the namespace allows it; in a namespace that requires
    subscription tokens, only to a client subscribed (with one) to `channel`."""
    if options.require_sub_token:
        if not allowed or session.subscriptions.active(channel) is None:
            raise ReplyError(ErrorCode.PERMISSION_DENIED)
    elif not allowed or (not session.user and not options.allow_anonymous):
        raise ReplyError(ErrorCode.PERMISSION_DENIED)


# Connecting ---------------------------------------------------------------------


async def connect(session: Session, command: Command) -> dict[str, Any] | Answer | None:
    """Connect, with a token or anonymously, or as a connecting hook says (it
    is asked with the token's verified claims, when one was sent); the token's
    (or hook's) `channels` become server-side subscriptions, reported in the
    reply's `subs` map (recovered from the positions the client sends back in
    its own `subs` on reconnect, within one reply budget for them all). Once
    connected, a failure closes the connection (3004) rather than answering."""
    if session.is_connected:
        raise Disconnect(DisconnectCode.BAD_REQUEST, "already connected")
    request: ConnectRequest = _parse(session, ConnectRequest, command)
    client_settings = session.settings.client
    app = session.node.app
    hooks = app.hook_for(HookPoint.CONNECTING, token=bool(request.token))
    claims: ConnectionClaims | None = None
    if request.token:
        claims = access.connection_claims(session.tokens, request.token, session.client_id)
    elif hooks is None and client_settings.allow_anonymous:
        claims = ConnectionClaims("", None, None, ())
    elif hooks is None:
        raise ReplyError(ErrorCode.UNAUTHORIZED)
    connect_data = None
    hooked_subs: Mapping[str, SubscribeResult] = {}
    if hooks is not None:
        answer = await app.connecting(hooks, connect_context(session, request, claims))
        if session.is_closed:  # the client left while the hook ran
            return None
        hooked_subs = answer.subs
        channels = tuple(dict.fromkeys([*answer.channels, *hooked_subs]))
        claims = ConnectionClaims(answer.user, answer.expire_at, answer.info, channels)
        connect_data = answer.data
    assert claims is not None
    user, channels = claims.user, claims.channels
    if session.variant.framing.unidirectional:  # its `subs` name channels to subscribe
        requested = await requested_subscriptions(session, request.subs, user)
        if session.is_closed:
            return None
        hooked_subs = {**requested, **hooked_subs}
        channels = tuple(dict.fromkeys([*channels, *requested]))
    if len(channels) > client_settings.max_channels:
        raise Disconnect(DisconnectCode.CHANNEL_LIMIT)
    server_subs = [
        (
            ch,
            session.node.checked_channel(ch),
            _recovery(session, request.subs, ch),
            hooked_subs.get(ch),
        )
        for ch in channels
    ]
    if user and not await session.node.users.admit(user, session.client_id):
        raise Disconnect(DisconnectCode.CONNECTION_LIMIT)  # client.max_connections_per_user
    if session.is_closed:  # the client left while the cluster-wide cap was checked
        session.node.users.release(session.client_id)
        return None
    session.accept(user, claims.info, request.name)
    session.handshake = app.kept_handshake(session.handshake)  # the proxy's headers, if any
    result: dict[str, Any] = {
        "client": session.client_id,
        "version": session.node.version,
        "ping": max(1, math.ceil(client_settings.ping_interval)),
        **session.transport.connect_fields,
    }
    if not session.variant.framing.unidirectional:
        result["pong"] = True  # answer pings (a unidirectional client cannot)
    if connect_data is not None:
        result["data"] = connect_data
    if hooks is not None and claims.expires_at is not None:
        refresh_connection(session)  # the server refreshes, when a refresh hook exists
    result.update(session.expiry.set(claims.expires_at))
    if app.notifies("connected"):
        app.notify("connected", client_of(session))
    if not server_subs:
        return result
    try:
        return await _server_subscriptions(session, command, Spliced(result), server_subs)
    except Disconnect:
        raise
    except ReplyError:
        raise Disconnect(DisconnectCode.INTERNAL) from None
    except Exception:
        log.exception("client %s: server-side subscriptions failed", session.client_id)
        raise Disconnect(DisconnectCode.INTERNAL) from None


async def _server_subscriptions(
    session: Session,
    command: Command,
    result: Spliced,
    server_subs: list[tuple[str, ChannelOptions, SubscribeRequest, SubscribeResult | None]],
) -> Answer | None:
    """The connect reply's `subs` (None if the connection ended meanwhile); a
    connecting hook's `subs` give a channel its chan_info and reply `data`."""
    subs = result["subs"] = Spliced()
    started = []
    encoding = session.encoding
    for channel, options, recovery, hooked in server_subs:
        if channel in session.subscriptions:
            continue  # the server API subscribed it meanwhile: its push answered already
        # What the reply holds so far, and this channel's key in `subs`.
        base = len(encode_reply(command.id, "connect", result, encoding))
        base += len(encode(channel, encoding)) + 1
        chan_info = hooked.info if hooked is not None else None
        if hooked is not None and hooked.data is not None:
            base += len(encode({"data": hooked.data}, encoding))
        start = session.subscriptions.start
        done = await start(channel, options, recovery, chan_info=chan_info, base=base)
        if done is None:
            return None
        started.append((channel, done.sub))
        if hooked is not None and hooked.data is not None:
            done.result["data"] = hooked.data
        subs[channel] = done.result
    return Answer(result, partial(_finish_subscriptions, session, started))


async def _finish_subscriptions(session: Session, started: list[tuple[str, Subscription]]) -> None:
    for channel, sub in started:
        await session.subscriptions.finish(channel, sub)


def _recovery(session: Session, subs: Any, channel: str) -> SubscribeRequest:
    """The subscribe request for a server-side subscription: where the client
    says it stopped (its connect `subs`), if it says so."""
    params = subs.get(channel) if isinstance(subs, dict) else None
    if not isinstance(params, dict):
        params = {}
    # Server-side subscriptions reach the SDK's client-level handlers, which
    # apply no patches: they never negotiate delta compression.
    params = {k: v for k, v in params.items() if k != "delta"}
    max_depth = session.settings.client.max_data_depth
    return parse_request(SubscribeRequest, {**params, "channel": channel}, max_depth)


async def refresh(session: Session, command: Command) -> dict[str, Any]:
    """A new connection token for the same user: a new expiry, and new `info`."""
    request: RefreshRequest = _parse(session, RefreshRequest, command)
    claims = access.refreshed_claims(session.tokens, request.token, session.user, session.client_id)
    result = session.expiry.set(claims.expires_at)
    await session.set_conn_info(claims.info)
    return result


# Subscriptions ------------------------------------------------------------------


async def subscribe(session: Session, command: Command) -> Answer | None:
    """A subscribing hook that decides the channel grants or refuses it whatever
    the namespace says (asked with the verified subscription token, if sent);
    else a valid subscription token grants it whatever the namespace's other
    permissions; without one, the namespace decides."""
    request: SubscribeRequest = _parse(session, SubscribeRequest, command)
    channel = request.channel
    options = session.node.checked_channel(channel)
    app = session.node.app
    hooks = app.hook_for(HookPoint.SUBSCRIBING, options, token=bool(request.token))
    claims = None
    if request.token:
        claims = access.subscription_claims(
            session.tokens, request.token, channel, session.user, session.client_id
        )
    elif hooks is None:
        if options.require_sub_token:
            raise ReplyError(ErrorCode.PERMISSION_DENIED)
        _check_allowed(session, channel, options, options.allow_subscribe)
    subscriptions = session.subscriptions
    if channel in subscriptions:
        raise ReplyError(ErrorCode.ALREADY_SUBSCRIBED)
    if len(subscriptions) >= session.settings.client.max_channels:
        raise ReplyError(ErrorCode.LIMIT_EXCEEDED, "too many channels")
    base = reply_overhead(command.id, "subscribe", session.encoding)
    if hooks is None:
        done = await subscriptions.start(channel, options, request, claims, base=base)
    else:
        context = SubscribeContext(client_of(session), channel, request.data, request.token)
        answer = await app.subscribing(hooks, context)
        if subscriptions.closed or channel in subscriptions:  # changed while the hook ran
            return None
        done = await subscriptions.start(
            channel, options, request, chan_info=answer.info, base=base
        )
        if done is not None and answer.data is not None:
            done.result["data"] = answer.data
        if done is not None and answer.expire_at is not None:
            refresh_subscription(session, channel, done.sub, options)
            done.result.update(subscriptions.expire(channel, done.sub, answer.expire_at))
    if done is None:
        return None
    return Answer(done.result, partial(subscriptions.finish, channel, done.sub))


async def unsubscribe(session: Session, command: Command) -> dict[str, Any]:
    request: UnsubscribeRequest = _parse(session, UnsubscribeRequest, command)
    await session.subscriptions.unsubscribe(request.channel)
    return {}


async def sub_refresh(session: Session, command: Command) -> dict[str, Any]:
    """A new subscription token for a channel subscribed to: a new expiry and `chan_info`."""
    request: SubRefreshRequest = _parse(session, SubRefreshRequest, command)
    channel = request.channel
    subscriptions = session.subscriptions
    sub = subscriptions.active(channel)
    if sub is None:
        raise ReplyError(ErrorCode.PERMISSION_DENIED, "not subscribed")
    claims = access.subscription_claims(
        session.tokens, request.token, channel, session.user, session.client_id, ErrorCode.EXPIRED
    )
    result = subscriptions.expire(channel, sub, claims.expires_at)
    await subscriptions.set_chan_info(channel, sub, claims.info)
    return result


# Channels -------------------------------------------------------------------------


async def publish(session: Session, command: Command) -> dict[str, Any]:
    """A publishing hook that decides the channel allows or refuses it whatever
    the namespace says, and may replace the data or skip history (no offset)."""
    request: PublishRequest = _parse(session, PublishRequest, command)
    channel, data, skip_history = request.channel, request.data, False
    options = session.node.checked_channel(channel)
    app = session.node.app
    hooks = app.hook_for(HookPoint.PUBLISHING, options)
    if hooks is None:
        _check_allowed(session, channel, options, options.allow_publish)
    else:
        answer = await app.publishing(hooks, PublishContext(client_of(session), channel, data))
        data = answer.data if answer.replaces_data else data
        skip_history = answer.skip_history
    info = session.subscriptions.info_in(channel)
    await session.node.publish(channel, data, info, skip_history=skip_history)
    return {}


async def history(session: Session, command: Command) -> dict[str, Any]:
    request: HistoryRequest = _parse(session, HistoryRequest, command)
    options = session.node.checked_channel(request.channel)
    _check_allowed(session, request.channel, options, options.allow_history)
    bounds = ReplyBounds(
        session.encoding,
        reply_overhead(command.id, "history", session.encoding),
        session.settings.client.reply_bytes,
        session.outbox.budget,
    )
    return await session.node.reads.history_reply(request, bounds)


def _presence_channel(session: Session, channel: str) -> None:
    options = session.node.checked_channel(channel)
    if not options.presence:
        raise ReplyError(ErrorCode.NOT_AVAILABLE, "channel keeps no presence")
    _check_allowed(session, channel, options, options.allow_presence)


async def presence(session: Session, command: Command) -> dict[str, Any]:
    request: PresenceRequest = _parse(session, PresenceRequest, command)
    _presence_channel(session, request.channel)
    clients = await session.node.channel_presence(request.channel)
    return {"presence": {cid: info.to_dict() for cid, info in clients.items()}}


async def presence_stats(session: Session, command: Command) -> dict[str, Any]:
    request: PresenceStatsRequest = _parse(session, PresenceStatsRequest, command)
    _presence_channel(session, request.channel)
    stats = await session.node.presence_stats(request.channel)
    return {"num_clients": stats.num_clients, "num_users": stats.num_users}


# The application's handlers -----------------------------------------------------


async def rpc(session: Session, command: Command) -> dict[str, Any]:
    """Answered by the rpc hook (error 108 without one)."""
    request: RPCRequest = _parse(session, RPCRequest, command)
    app = session.node.app
    hooks = app.hook_for(HookPoint.RPC)
    if hooks is None:
        raise ReplyError(ErrorCode.NOT_AVAILABLE, "no rpc handler")
    answer = await app.rpc(hooks, RPCContext(client_of(session), request.method, request.data))
    return {} if answer.data is None else {"data": answer.data}


async def send(session: Session, command: Command) -> dict[str, Any] | None:
    request: SendRequest = _parse(session, SendRequest, command)
    handler = session.node.send_handler
    if handler is None:
        if command.id:
            raise ReplyError(ErrorCode.NOT_AVAILABLE, "no send handler")
        return None
    await handler(session, request.data)
    return {}


HANDLERS: dict[str, Handler] = {
    "connect": connect,
    "subscribe": subscribe,
    "unsubscribe": unsubscribe,
    "publish": publish,
    "history": history,
    "presence": presence,
    "presence_stats": presence_stats,
    "refresh": refresh,
    "sub_refresh": sub_refresh,
    "rpc": rpc,
    "send": send,
}
