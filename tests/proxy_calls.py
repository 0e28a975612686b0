"""Calling the proxy hooks in tests: a typical context for each point, clients
with handshake headers, and fixtures' bodies (a backend served, hooks made on
settings loaded like any config and closed after the test)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from typing import Any

from tornado.ioloop import IOLoop
from wsfan.app.hooks import (
    Client,
    ConnectContext,
    PublishContext,
    RefreshContext,
    RPCContext,
    SubRefreshContext,
    SubscribeContext,
)
from wsfan.app.proxy import ProxyHooks
from wsfan.config import load_settings

from tests.conftest import TIMEOUT_SCALE
from tests.proxy_backend import ProxyBackend

__all__ = [
    "ALICE",
    "ALICE_MSGPACK",
    "BASE",
    "HANDSHAKE",
    "MakeHooks",
    "ask",
    "hooks_maker",
    "nested",
    "serve_backend",
]

HANDSHAKE = {"Cookie": "session=abc", "Authorization": "Bearer t", "X-Other": "kept here"}
ALICE = Client("c1", "alice", "websocket", "json", remote_addr="192.0.2.1", headers=HANDSHAKE)
ALICE_MSGPACK = replace(ALICE, encoding="msgpack")
BASE = {"client": "c1", "transport": "websocket", "protocol": "json", "encoding": "json"}
"""The fields every request from ALICE starts with."""

MakeHooks = Callable[..., ProxyHooks]


def serve_backend(io_loop: IOLoop) -> Iterator[ProxyBackend]:
    """A `backend` fixture's body."""
    backend = ProxyBackend()
    backend.start()
    yield backend
    io_loop.run_sync(backend.stop)


def hooks_maker(io_loop: IOLoop, backend: ProxyBackend) -> Iterator[MakeHooks]:
    """A `make_hooks` fixture's body: `make(**proxy_keys)` gives ProxyHooks sending
    every point to `backend`, with those `[proxy]` keys over the defaults."""
    made: list[ProxyHooks] = []

    def make(max_data_depth: int | None = None, **proxy: Any) -> ProxyHooks:
        keys = {**backend.endpoints(), "timeout": 2.0 * TIMEOUT_SCALE, **proxy}
        settings = load_settings(env={}).with_overrides(proxy=keys)
        depth = settings.client.max_data_depth if max_data_depth is None else max_data_depth
        hooks = ProxyHooks(settings.proxy, max_data_depth=depth)
        made.append(hooks)
        return hooks

    yield make
    for hooks in made:
        io_loop.run_sync(hooks.close)


def ask(hooks: ProxyHooks, point: str, client: Client = ALICE) -> Awaitable[Any]:
    """One call of `point` with typical arguments."""
    if point == "connect":
        ctx = ConnectContext(client, "py", "1.0", {"a": 1}, HANDSHAKE, {"session": "abc"})
        return hooks.connecting(ctx)
    if point == "refresh":
        return hooks.refresh(RefreshContext(client))
    if point == "subscribe":
        return hooks.subscribing(SubscribeContext(client, "chat:1", {"a": 1}))
    if point == "sub_refresh":
        return hooks.sub_refresh(SubRefreshContext(client, "chat:1"))
    if point == "publish":
        return hooks.publishing(PublishContext(client, "chat:1", {"text": "hi"}))
    return hooks.rpc(RPCContext(client, "echo", {"a": 1}))


def nested(depth: int) -> Any:
    """A list `depth` levels deep."""
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value
