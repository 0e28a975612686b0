"""What the command handlers hand the application layer (server/app), and take back.

The hooks' view of a session (`client_of`), the connect context (with the
handshake the transport kept), and the server-side refreshes a hook's
`expire_at` starts when a refresh (or sub_refresh) hook exists. No decision
is made here: `AppLayer` picks the hook and bounds the call.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import TYPE_CHECKING, Any

from ..app.hooks import (
    Client,
    ConnectContext,
    HookPoint,
    RefreshContext,
    SubRefreshContext,
)
from ..app.refresh import ServerRefresh
from ..auth.tokens import ConnectionClaims
from ..config import ChannelOptions
from ..errors import Disconnect, DisconnectCode
from ..protocol import ConnectRequest
from ..transport import Headers

if TYPE_CHECKING:
    from .session import Session
    from .subscriptions import Subscription

__all__ = ["client_of", "connect_context", "refresh_connection", "refresh_subscription"]

_NO_HEADERS = Headers(())


def client_of(session: Session) -> Client:
    """The connection as hooks see it, now (with the headers it kept: all of the
    handshake's until connected, then those the proxy forwards)."""
    handshake = session.handshake
    return Client(
        session.client_id,
        session.user,
        session.variant.framing.name,
        session.encoding,
        session.remote_addr,
        session.conn_info,
        handshake.headers if handshake is not None else _NO_HEADERS,
    )


def connect_context(
    session: Session, request: ConnectRequest, claims: ConnectionClaims | None
) -> ConnectContext:
    handshake = session.handshake
    return ConnectContext(
        client_of(session),
        request.name,
        request.version,
        request.data,
        handshake.headers if handshake is not None else _NO_HEADERS,
        handshake.cookies if handshake is not None else {},
        claims,
        request.token,
    )


def refresh_connection(session: Session) -> bool:
    """When a refresh hook exists: the connection's expiry asks it rather than
    closing (see ServerRefresh). False: none exists (the token rules apply)."""
    app = session.node.app
    hooks = app.hook_for(HookPoint.REFRESH)
    if hooks is None:
        return False

    async def ask() -> Any:
        return await app.refresh(hooks, RefreshContext(client_of(session)))

    session.expiry = ServerRefresh(
        asyncio.get_running_loop(),
        ask,
        session.set_conn_info,
        lambda: session.disconnect(Disconnect(DisconnectCode.EXPIRED)),
        lambda: session.is_connected,
        session.disconnect,
        app.refresh_retry_interval,
        app.spawn,
    )
    return True


def refresh_subscription(
    session: Session, channel: str, sub: Subscription, options: ChannelOptions
) -> None:
    """When a sub_refresh hook decides `channel`: the subscription's expiry asks
    it rather than ending the subscription (see ServerRefresh)."""
    app = session.node.app
    hooks = app.hook_for(HookPoint.SUB_REFRESH, options)
    if hooks is None:
        return
    subscriptions = session.subscriptions

    async def ask() -> Any:
        return await app.sub_refresh(hooks, SubRefreshContext(client_of(session), channel))

    sub.expiry = ServerRefresh(
        asyncio.get_running_loop(),
        ask,
        partial(subscriptions.set_chan_info, channel, sub),
        partial(subscriptions.end_expired, channel, sub),
        lambda: subscriptions.active(channel) is sub,
        session.disconnect,
        app.refresh_retry_interval,
        app.spawn,
    )
