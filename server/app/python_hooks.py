"""The application's own Python object as the hook interface.

`PythonHooks(app)` answers exactly the decision points whose async methods
`app` has (`connecting`, `refresh`, `subscribing`, `sub_refresh`, `publishing`,
`rpc`): a point it lacks falls back to the token and namespace rules. It also
holds the notifications `app` has (`connected`, `disconnected`, `subscribed`,
`unsubscribed`) and, for cluster-wide occupancy, `channel_occupied`,
`channel_vacated` and `sources` (channel pattern -> source factory), as found.

`load_app("package.module:object")` imports what `[app] handlers` names.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any

from ..config import ConfigError
from .hooks import (
    DECISION_POINTS,
    NOTIFICATIONS,
    ConnectContext,
    ConnectResult,
    HookPoint,
    PublishContext,
    PublishResult,
    RefreshContext,
    RefreshResult,
    RPCContext,
    RPCResult,
    SourceFactory,
    SubRefreshContext,
    SubRefreshResult,
    SubscribeContext,
    SubscribeResult,
)

__all__ = ["PythonHooks", "load_app"]

Notification = Callable[..., Awaitable[Any]]
_KEY = "app.handlers"


@functools.cache
def load_app(spec: str) -> object:
    """The object `spec` ("package.module:object", dots allowed after the colon)
    names (a class is instantiated, without arguments: once per process, however
    often it is asked for); ConfigError naming `app.handlers` when it cannot be
    found, imported or instantiated."""
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name or not attribute:
        raise ConfigError(f"{_KEY}: expected 'package.module:object', got {spec!r}")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:  # the application's import failed: say which and why
        raise ConfigError(f"{_KEY}: cannot import {module_name!r}: {exc}") from None
    for name in attribute.split("."):
        try:
            target = getattr(target, name)
        except AttributeError:
            raise ConfigError(f"{_KEY}: {module_name!r} has no {attribute!r}") from None
    if isinstance(target, type):
        try:
            target = target()
        except Exception as exc:
            raise ConfigError(f"{_KEY}: cannot instantiate {attribute!r}: {exc}") from None
    return target


def _async_method(app: object, name: str) -> Callable[..., Awaitable[Any]] | None:
    """`app.name` when it is a coroutine function; ConfigError if it is something else."""
    method = getattr(app, name, None)
    if method is None:
        return None
    if not inspect.iscoroutinefunction(method):
        raise ConfigError(f"{_KEY}: {name} of {type(app).__name__} must be an async method")
    return method


class PythonHooks:
    """The hook interface (wsfan.app.hooks.Hooks) answered by `app`'s methods."""

    name = "python"

    def __init__(self, app: object) -> None:
        self.app = app
        found = {name: _async_method(app, name) for name in (*DECISION_POINTS, *NOTIFICATIONS)}
        methods = {name: method for name, method in found.items() if method is not None}
        self._points = {p: methods[p] for p in DECISION_POINTS if p in methods}
        self.notifications: Mapping[str, Notification] = MappingProxyType(
            {n: methods[n] for n in NOTIFICATIONS if n in methods}
        )
        self.channel_occupied = _async_method(app, "channel_occupied")
        self.channel_vacated = _async_method(app, "channel_vacated")
        sources = getattr(app, "sources", None) or {}
        if not isinstance(sources, Mapping):
            raise ConfigError(f"{_KEY}: sources must map channel patterns to source factories")
        self.sources: Mapping[str, SourceFactory] = MappingProxyType(dict(sources))

    def provides(self, point: HookPoint) -> bool:
        return point in self._points

    async def connecting(self, ctx: ConnectContext) -> ConnectResult:
        return await self._points[HookPoint.CONNECTING](ctx)

    async def refresh(self, ctx: RefreshContext) -> RefreshResult:
        return await self._points[HookPoint.REFRESH](ctx)

    async def subscribing(self, ctx: SubscribeContext) -> SubscribeResult:
        return await self._points[HookPoint.SUBSCRIBING](ctx)

    async def sub_refresh(self, ctx: SubRefreshContext) -> SubRefreshResult:
        return await self._points[HookPoint.SUB_REFRESH](ctx)

    async def publishing(self, ctx: PublishContext) -> PublishResult:
        return await self._points[HookPoint.PUBLISHING](ctx)

    async def rpc(self, ctx: RPCContext) -> RPCResult:
        return await self._points[HookPoint.RPC](ctx)

    async def close(self) -> None:
        """Nothing to release: the application owns its object."""
