"""Token checks as the client protocol answers them.

Each failure becomes the reply error or disconnect the official SDKs react to:
- connect: expired -> error 109 (the SDK gets a new token and reconnects),
  anything else wrong -> close 3500 (terminal);
- refresh: expired -> close 3005, invalid or another user's -> close 3500;
- subscribe: expired -> error 109 (the SDK gets a new subscription token),
  invalid, or for another channel or user -> error 103;
- sub_refresh: expired -> error 110, invalid -> error 103.

Log lines name the client and a fixed reason, never the token.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from ..errors import Disconnect, DisconnectCode, ErrorCode, ReplyError
from .tokens import (
    ConnectionClaims,
    SubscriptionClaims,
    TokenError,
    TokenExpired,
    TokenVerifier,
)

__all__ = ["Expiry", "connection_claims", "refreshed_claims", "subscription_claims", "ttl"]

log = logging.getLogger(__name__)

MAX_TTL = 365 * 86400
"""Expiries further away are treated as this far: timers and `ttl` stay sane numbers."""


def ttl(expires_at: int, now: float | None = None) -> int:
    """Whole seconds until `expires_at`, rounded down so a client refreshes in time."""
    return max(0, math.floor(expires_at - (time.time() if now is None else now)))


class Expiry:
    """When a token runs out: calls `on_expired` once `expires_at` plus `grace`
    seconds have passed, unless `set` moved the expiry on before that."""

    __slots__ = ("_grace", "_handle", "_loop", "_on_expired", "expires_at")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, grace: float, on_expired: Callable[[], None]
    ) -> None:
        self._loop = loop
        self._grace = grace
        self._on_expired = on_expired
        self._handle: asyncio.TimerHandle | None = None
        self.expires_at: int | None = None

    def set(self, expires_at: int | None) -> dict[str, Any]:
        """Expire at `expires_at` (None: never); returns the reply fields that tell
        the SDKs when to refresh (`expires`, `ttl`)."""
        self.cancel()
        if expires_at is not None:
            expires_at = min(expires_at, int(time.time()) + MAX_TTL)
        self.expires_at = expires_at
        if expires_at is None:
            return {}
        delay = max(0.0, expires_at - time.time()) + self._grace
        self._handle = self._loop.call_later(delay, self._fire)
        return {"expires": True, "ttl": ttl(expires_at)}

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        if self.expires_at is not None and self.expires_at <= time.time():
            self._on_expired()


def connection_claims(verifier: TokenVerifier, token: str, client_id: str) -> ConnectionClaims:
    try:
        return verifier.connection(token)
    except TokenExpired:
        raise ReplyError(ErrorCode.TOKEN_EXPIRED) from None
    except TokenError as exc:
        log.info("client %s: connection token refused: %s", client_id, exc.reason)
        raise Disconnect(DisconnectCode.INVALID_TOKEN) from None


def refreshed_claims(
    verifier: TokenVerifier, token: str, user: str, client_id: str
) -> ConnectionClaims:
    if not verifier.enabled:
        raise ReplyError(ErrorCode.NOT_AVAILABLE, "connection tokens are not enabled")
    try:
        claims = verifier.connection(token)
    except TokenExpired:
        raise Disconnect(DisconnectCode.EXPIRED) from None
    except TokenError as exc:
        log.info("client %s: refresh token refused: %s", client_id, exc.reason)
        raise Disconnect(DisconnectCode.INVALID_TOKEN) from None
    if claims.user != user:
        log.info("client %s: refresh token is for another user", client_id)
        raise Disconnect(DisconnectCode.INVALID_TOKEN)
    return claims


def subscription_claims(
    verifier: TokenVerifier,
    token: str,
    channel: str,
    user: str,
    client_id: str,
    expired: ErrorCode = ErrorCode.TOKEN_EXPIRED,
) -> SubscriptionClaims:
    """Claims of a subscription token valid for exactly `channel` and `user`.

    `expired` is the error for an expired token: 109 on subscribe, 110 on sub_refresh.
    """
    if not verifier.enabled:
        raise ReplyError(ErrorCode.NOT_AVAILABLE, "subscription tokens are not enabled")
    try:
        claims = verifier.subscription(token)
    except TokenExpired:
        raise ReplyError(expired) from None
    except TokenError as exc:
        log.info("client %s: subscription token for %r refused: %s", client_id, channel, exc.reason)
        raise ReplyError(ErrorCode.PERMISSION_DENIED) from None
    if claims.channel != channel or claims.user != user:
        log.info("client %s: subscription token is not for %r and this user", client_id, channel)
        raise ReplyError(ErrorCode.PERMISSION_DENIED)
    return claims
