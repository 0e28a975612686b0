"""One channel subscription's state, as a connection's `Subscriptions` keep it,
and who is told when one starts and ends."""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

from ..auth import access
from ..config import ChannelOptions
from ..protocol import ClientInfo, Publication
from ..transport import Frame

__all__ = ["Started", "Subscription", "SubscriptionListener"]


class Subscription:
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


class Started(NamedTuple):
    """A subscription registered and positioned (see `Subscriptions.start`)."""

    sub: Subscription
    result: dict[str, Any]
    publications: list[Publication]  # recovered, or the retained state


class SubscriptionListener(Protocol):
    """Told when a subscription is established and when it ends."""

    def subscribed(self, channel: str) -> None: ...

    def unsubscribed(self, channel: str) -> None: ...
