"""The application layer: hooks an application (or a Centrifugo-style HTTP
backend) answers at connect, refresh, subscribe, sub_refresh, publish and rpc;
notifications after the fact; cluster-wide channel occupancy and channel sources.

Import the types an application's hooks use from here.
"""

from .hooks import (
    Client,
    ConnectContext,
    ConnectResult,
    Disconnect,
    HookPoint,
    Hooks,
    PublishContext,
    PublishResult,
    RefreshContext,
    RefreshResult,
    ReplyError,
    RPCContext,
    RPCResult,
    SourceFactory,
    SubRefreshContext,
    SubRefreshResult,
    SubscribeContext,
    SubscribeResult,
)

__all__ = [
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
