"""`AppLayer`: the only way the command handlers reach the application's hooks.

For each decision point it picks the implementation: the Python hook when the
application object has it; else the HTTP proxy when `[proxy] <point>_endpoint`
is set (subscribe, publish and sub_refresh only on channels whose options say
`subscribe_proxy`, `publish_proxy`, `sub_refresh_proxy`; connect and subscribe
only when the client sent no token, as Centrifugo); else none, and the token
and namespace rules apply. Both for one point is a ConfigError at start-up.

Every call is bounded by its timeout (`app.timeout` for Python, the endpoint's
for the proxy). A hook's ReplyError or Disconnect is its answer; anything else
it raises, a timeout, or a result that is not the point's result type (or
holds data the client's encoding cannot carry) is a failure: ReplyError(100),
and one log line naming the point and the implementation (at most one per
`log.repeat_interval` for each, with a count). The server stays up.

Notifications (connected, disconnected, subscribed, unsubscribed) are best
effort: spawned, never delaying the client; a failure is logged in one line.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from types import FrameType
from typing import Any, NoReturn

from ..config import ChannelOptions, ConfigError, Settings
from ..errors import ErrorCode
from ..logs import Repeated
from ..metrics import Metrics
from ..protocol import Encoding, encode
from ..transport import Handshake
from .channel_services import ChannelServices
from .hooks import (
    DECISION_POINTS,
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
    SubRefreshContext,
    SubRefreshResult,
    SubscribeContext,
    SubscribeResult,
)
from .python_hooks import PythonHooks
from .watchdog import LoopWatchdog

__all__ = ["AppLayer", "Spawn", "check_points", "running_hook"]

log = logging.getLogger(__name__)

Spawn = Callable[[Coroutine[Any, Any, Any]], "asyncio.Task[Any]"]

_RESULT_TYPES: dict[HookPoint, type] = {
    HookPoint.CONNECTING: ConnectResult,
    HookPoint.REFRESH: RefreshResult,
    HookPoint.SUBSCRIBING: SubscribeResult,
    HookPoint.SUB_REFRESH: SubRefreshResult,
    HookPoint.PUBLISHING: PublishResult,
    HookPoint.RPC: RPCResult,
}
_CHANNEL_OPTION = {
    HookPoint.SUBSCRIBING: "subscribe_proxy",
    HookPoint.PUBLISHING: "publish_proxy",
    HookPoint.SUB_REFRESH: "sub_refresh_proxy",
}
_TOKEN_DECIDES = (HookPoint.CONNECTING, HookPoint.SUBSCRIBING)  # the proxy only without one


class AppLayer:
    """The hooks of one node. `python` is the application object's hooks,
    `proxy` the HTTP proxy's (either may be None). The node attaches its
    `spawn`, which runs notifications and server-side refreshes."""

    def __init__(
        self,
        python: PythonHooks | None,
        proxy: Hooks | None,
        settings: Settings,
        metrics: Metrics,
    ) -> None:
        python_points = check_points(python, settings)
        self.python = python
        self.proxy = proxy
        self._python_points = frozenset(python_points)
        self._proxy_points = frozenset(
            p
            for p in DECISION_POINTS
            if proxy is not None and settings.proxy.endpoint_of(p.proxy_name)
        )
        # The handshake headers the proxy forwards with every request (as
        # Centrifugo does): kept for the connection's life, only these.
        self.forwarded_headers = (
            tuple(name.lower() for name in settings.proxy.http_headers)
            if self._proxy_points
            else ()
        )
        # Whether a transport keeps the handshake's headers and cookies at all:
        # for a connecting hook (until the connect command), or forwarded headers.
        self.wants_handshake = bool(
            HookPoint.CONNECTING in self._python_points | self._proxy_points
            or self.forwarded_headers
        )
        self._python_timeout = settings.app.timeout
        self._proxy_timeouts = {p: settings.proxy.timeout_of(p.proxy_name) for p in DECISION_POINTS}
        self._metrics = metrics
        self._spawn: Spawn | None = None  # the node's, once attached
        self._repeat_interval = settings.log.repeat_interval
        self._failures: dict[tuple[str, str], Repeated] = {}
        self._notifications: Mapping[str, Callable[..., Any]] = (
            python.notifications if python is not None else {}
        )
        self.refresh_retry_interval = settings.proxy.refresh_retry_interval
        # Channel occupancy and sources (server/app/channel_services.py), when the
        # application registers any; the composition root attaches them.
        self.services: ChannelServices | None = None
        self.watchdog = (
            LoopWatchdog(settings.app.loop_lag_warning, running_hook)
            if python is not None
            else None
        )

    # Which implementation answers ----------------------------------------------

    def kept_handshake(self, handshake: Handshake | None) -> Handshake | None:
        """What a connected session keeps of its handshake: the forwarded headers
        only (None when there are none)."""
        if handshake is None or not self.forwarded_headers:
            return None
        headers = handshake.headers
        kept = [(name, headers[name]) for name in self.forwarded_headers if name in headers]
        return Handshake(kept)

    def provides(self, point: HookPoint) -> bool:
        """Whether any implementation answers `point` (on some channels, for some clients)."""
        return point in self._python_points or point in self._proxy_points

    def hook_for(
        self, point: HookPoint, options: ChannelOptions | None = None, token: bool = False
    ) -> Hooks | None:
        """Who decides `point` for a channel with `options` (subscribe, publish,
        sub_refresh), `token`: whether the client sent one; None: the token and
        namespace rules."""
        if point in self._python_points:
            return self.python
        if point not in self._proxy_points or (token and point in _TOKEN_DECIDES):
            return None
        flag = _CHANNEL_OPTION.get(point)
        if flag is not None and not (options is not None and getattr(options, flag)):
            return None
        return self.proxy

    # The calls ---------------------------------------------------------------------

    async def connecting(self, hooks: Hooks, ctx: ConnectContext) -> ConnectResult:
        result: ConnectResult = await self._call(hooks, HookPoint.CONNECTING, ctx)
        return result

    async def refresh(self, hooks: Hooks, ctx: RefreshContext) -> RefreshResult:
        result: RefreshResult = await self._call(hooks, HookPoint.REFRESH, ctx)
        return result

    async def subscribing(self, hooks: Hooks, ctx: SubscribeContext) -> SubscribeResult:
        result: SubscribeResult = await self._call(hooks, HookPoint.SUBSCRIBING, ctx)
        return result

    async def sub_refresh(self, hooks: Hooks, ctx: SubRefreshContext) -> SubRefreshResult:
        result: SubRefreshResult = await self._call(hooks, HookPoint.SUB_REFRESH, ctx)
        return result

    async def publishing(self, hooks: Hooks, ctx: PublishContext) -> PublishResult:
        result: PublishResult = await self._call(hooks, HookPoint.PUBLISHING, ctx)
        return result

    async def rpc(self, hooks: Hooks, ctx: RPCContext) -> RPCResult:
        result: RPCResult = await self._call(hooks, HookPoint.RPC, ctx)
        return result

    async def _call(self, hooks: Hooks, point: HookPoint, ctx: Any) -> Any:
        """The one call wrapper (the watchdog finds `hook_label` in its frame)."""
        hook_label = f"{hooks.name} {point.value} hook"
        python = hooks is self.python
        timeout = self._python_timeout if python else self._proxy_timeouts[point]
        self._metrics.hook_calls.labels(point.value, hooks.name).inc()
        try:
            async with asyncio.timeout(timeout):
                result = await getattr(hooks, point.value)(ctx)
        except (ReplyError, Disconnect):
            raise
        except TimeoutError:
            self._failed(point, hooks.name, hook_label, f"timed out after {timeout:g}s")
        except Exception as exc:
            self._failed(point, hooks.name, hook_label, f"raised {type(exc).__name__}: {exc}")
        problem = _malformed(result, point, ctx.client.encoding)
        if problem is not None:
            self._failed(point, hooks.name, hook_label, problem)
        return result

    def _failed(self, point: HookPoint, implementation: str, label: str, problem: str) -> NoReturn:
        """Count and log the failure (rate-limited per point and implementation),
        and answer error 100 (temporary)."""
        self._metrics.hook_failures.labels(point.value, implementation).inc()
        self._repeated(point.value, implementation)("%s failed: %s", label, problem)
        raise ReplyError(ErrorCode.INTERNAL)

    def _repeated(self, name: str, implementation: str) -> Repeated:
        key = (name, implementation)
        repeated = self._failures.get(key)
        if repeated is None:
            repeated = self._failures[key] = Repeated(log, self._repeat_interval)
        return repeated

    # Notifications ---------------------------------------------------------------

    def notifies(self, name: str) -> bool:
        """Whether the application has the notification `name` (see NOTIFICATIONS)."""
        return name in self._notifications

    def notify(self, name: str, *args: Any) -> None:
        """Call the notification `name` in the background, if the application has it."""
        method = self._notifications.get(name)
        if method is not None and self._spawn is not None:
            self._spawn(self._notify(name, method, args))

    async def _notify(self, name: str, method: Callable[..., Any], args: tuple[Any, ...]) -> None:
        hook_label = f"python {name} notification"
        try:
            async with asyncio.timeout(self._python_timeout):
                await method(*args)
        except Exception as exc:
            problem = "timed out" if isinstance(exc, TimeoutError) else f"raised {exc!r}"
            self._repeated(name, "python")("%s failed: %s", hook_label, problem)

    # Life cycle ----------------------------------------------------------------------

    def attach(self, spawn: Spawn) -> None:
        """The node's `spawn` (background work whose failure it logs)."""
        self._spawn = spawn

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        assert self._spawn is not None, "AppLayer.attach was not called"
        return self._spawn(coro)

    def start(self) -> None:
        """Start the loop-lag watchdog (with Python hooks only)."""
        if self.watchdog is not None:
            self.watchdog.start()

    async def start_services(self) -> None:
        """Start the channel occupancy and sources services (once the broker is up)."""
        if self.services is not None:
            await self.services.start()

    async def close_services(self) -> None:
        """Stop them, leaving every channel at once (before the node closes)."""
        if self.services is not None:
            await self.services.close()

    async def close(self) -> None:
        if self.watchdog is not None:
            self.watchdog.stop()
        for hooks in (self.python, self.proxy):
            if hooks is not None:
                try:
                    await hooks.close()
                except Exception as exc:
                    log.warning("closing the %s hooks failed: %r", hooks.name, exc)


def check_points(python: Hooks | None, settings: Settings) -> set[HookPoint]:
    """The points `python` answers; ConfigError when a proxy endpoint is also
    configured for one of them (the command line exits 2)."""
    points = {p for p in DECISION_POINTS if python is not None and python.provides(p)}
    both = sorted(p for p in points if settings.proxy.endpoint_of(p.proxy_name))
    if both:
        names = ", ".join(f"{p.value} (proxy.{p.proxy_name}_endpoint)" for p in both)
        raise ConfigError(f"app.handlers: a Python hook and a proxy endpoint for {names}")
    return points


_WRAPPERS = (AppLayer._call.__code__, AppLayer._notify.__code__)


def running_hook(frame: FrameType | None) -> str | None:
    """The hook a stack (its innermost `frame`) is running, from the call wrapper's frame."""
    while frame is not None:
        if frame.f_code in _WRAPPERS:
            label = frame.f_locals.get("hook_label")
            return label if isinstance(label, str) else None
        frame = frame.f_back
    return None


def _malformed(result: Any, point: HookPoint, encoding: str) -> str | None:
    """Why `result` is not an answer to `point` (None: it is one)."""
    expected = _RESULT_TYPES[point]
    if not isinstance(result, expected):
        return f"returned {type(result).__name__}, not {expected.__name__}"
    expire_at = getattr(result, "expire_at", None)
    if expire_at is not None and (isinstance(expire_at, bool) or not isinstance(expire_at, int)):
        return f"expire_at {expire_at!r} is not unix seconds (an int)"
    if isinstance(result, ConnectResult):
        if not isinstance(result.user, str):
            return f"user {result.user!r} is not a string"
        channels = result.channels
        if not isinstance(channels, list | tuple) or not all(isinstance(c, str) for c in channels):
            return "channels is not a sequence of channel names"
        subs = result.subs
        if not isinstance(subs, Mapping) or not all(
            isinstance(c, str) and isinstance(o, SubscribeResult) for c, o in subs.items()
        ):
            return "subs is not a mapping of channel names to SubscribeResult"
        for options in subs.values():
            for value in (options.info, options.data):
                problem = _unencodable(value, encoding)
                if problem is not None:
                    return problem
    data = getattr(result, "data", None)
    if isinstance(result, PublishResult) and not result.replaces_data:
        data = None
    for value in (data, getattr(result, "info", None)):
        problem = _unencodable(value, encoding)
        if problem is not None:
            return problem
    return None


def _unencodable(value: Any, encoding: str) -> str | None:
    if value is not None:
        try:
            encode(value, Encoding(encoding))
        except Exception as exc:
            return f"returned data the client's encoding cannot carry: {exc!r}"
    return None
