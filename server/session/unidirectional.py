"""Centrifugo's unidirectional protocol, as a session speaks it over a
transport whose framing is `unidirectional` (uni_sse, uni_http_stream,
uni_websocket).

The client sends one thing: a bare connect request such as
`{"token": ..., "subs": {"news": {"recover": true, "offset": 5, "epoch": "x"}}}`.
Everything it gets is a push: first `{"connect": {...}}` (the connect reply's
result, with its server-side subscriptions in `subs`), then publications,
joins, leaves and the rest, unwrapped by the framing. A refused connect never
gets an error reply (there is no reply): it gets a disconnect push with the
code `disconnect_for` gives, and the stream ends.

Server-side subscriptions come from the token's `channels`, a connecting hook,
and the request's `subs`: a channel named there is subscribed as a subscribe
command for it would be (a subscription token in its `token`, else a
subscribing hook, else the namespace's permissions), and any position in it
is recovered from.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..app.hooks import HookPoint, SubscribeContext, SubscribeResult
from ..auth import access
from ..errors import Disconnect, DisconnectCode, ErrorCode, ReplyError
from ..protocol import Encoding, ProtocolError, Spliced, decode_frame, encode_spliced
from .hook_calls import client_of

if TYPE_CHECKING:
    from .session import Session

__all__ = ["connect_message", "connect_push", "disconnect_for", "requested_subscriptions"]

_DISCONNECTS: dict[int, DisconnectCode] = {
    ErrorCode.UNAUTHORIZED: DisconnectCode.INVALID_TOKEN,
    ErrorCode.TOKEN_EXPIRED: DisconnectCode.EXPIRED,
    ErrorCode.EXPIRED: DisconnectCode.EXPIRED,
    ErrorCode.PERMISSION_DENIED: DisconnectCode.PERMISSION_DENIED,
    ErrorCode.UNKNOWN_CHANNEL: DisconnectCode.BAD_REQUEST,
    ErrorCode.BAD_REQUEST: DisconnectCode.BAD_REQUEST,
    ErrorCode.LIMIT_EXCEEDED: DisconnectCode.BAD_REQUEST,  # a channel name too long
    ErrorCode.TOO_MANY_REQUESTS: DisconnectCode.TOO_MANY_REQUESTS,
}


def connect_message(data: bytes | str, encoding: Encoding) -> dict[str, Any]:
    """The bare connect request in `data` as the connect command it stands for;
    ProtocolError when it is not one JSON object."""
    messages = decode_frame(data, encoding)
    if len(messages) != 1 or not isinstance(messages[0], dict):
        raise ProtocolError("a unidirectional connect request is one object")
    return {"id": 1, "connect": messages[0]}


def connect_push(result: dict[str, Any], encoding: Encoding) -> bytes:
    """The connect reply's `result` as the unidirectional connect push."""
    return encode_spliced(Spliced({"connect": result}), encoding)


def disconnect_for(error: ReplyError) -> Disconnect:
    """How a refused unidirectional connect ends: 35xx (do not reconnect) for a
    refusal that would repeat, 3004 / 3013 (reconnect) for a passing failure."""
    code = _DISCONNECTS.get(int(error.code), DisconnectCode.INTERNAL)
    return Disconnect(code, error.message)


async def requested_subscriptions(
    session: Session, subs: Any, user: str
) -> dict[str, SubscribeResult]:
    """The channels the connect request's `subs` names, each allowed as its
    subscribe command would be (for `user`, not connected yet), with the
    chan_info and data its token or hook gives; ReplyError for the first refused,
    Disconnect (3505) for more than `client.max_channels`."""
    if not isinstance(subs, dict):
        return {}
    if len(subs) > session.settings.client.max_channels:
        raise Disconnect(DisconnectCode.CHANNEL_LIMIT)
    node, app = session.node, session.node.app
    allowed: dict[str, SubscribeResult] = {}
    for channel, params in subs.items():
        if not isinstance(channel, str):
            raise ReplyError(ErrorCode.BAD_REQUEST, "a channel name is a string")
        options = node.checked_channel(channel)
        params = params if isinstance(params, dict) else {}
        token = params.get("token")
        hooks = app.hook_for(HookPoint.SUBSCRIBING, options, token=bool(token))
        if isinstance(token, str) and token:
            claims = access.subscription_claims(
                session.tokens, token, channel, user, session.client_id
            )
            allowed[channel] = SubscribeResult(info=claims.info)
        elif hooks is not None:
            client = replace(client_of(session), user=user)
            context = SubscribeContext(client, channel, params.get("data"), "")
            allowed[channel] = await app.subscribing(hooks, context)
        elif (
            options.require_sub_token
            or not options.allow_subscribe
            or (not user and not options.allow_anonymous)
        ):
            raise ReplyError(ErrorCode.PERMISSION_DENIED, f"not allowed: {channel[:64]}")
        else:
            allowed[channel] = SubscribeResult()
    return allowed
