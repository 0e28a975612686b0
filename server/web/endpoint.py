"""What the client endpoints share between their handshake paths and their
connections: the node, the origin policy, the per-address cap, the registry
of open connections that shutdown closes, and the emulated streams by session.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from tornado.web import Application

from ..auth.limits import ConnectionCounter
from ..auth.origin import OriginPolicy
from ..auth.proxies import TrustedProxies
from ..node import Node

if TYPE_CHECKING:
    from .stream_transport import StreamConnection

__all__ = ["Endpoint", "LiveConnections", "Streams", "close_websockets", "endpoint_of"]


class Live(Protocol):
    """An open client connection (WebSocket or stream)."""

    def abort(self) -> None: ...


class LiveConnections:
    """An app's open client connections: after the handshake Tornado no longer
    knows them, so shutdown closes them through this."""

    def __init__(self) -> None:
        self._live: set[Live] = set()

    def add(self, connection: Live) -> None:
        self._live.add(connection)

    def discard(self, connection: Live) -> None:
        self._live.discard(connection)

    async def close_all(self, grace: float = 1.0) -> None:
        """Give close handshakes under way `grace` seconds, then drop what is left."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self._live and loop.time() < deadline:
            await asyncio.sleep(0.01)
        for connection in list(self._live):
            connection.abort()
        await asyncio.sleep(0)  # aborted transports close their sockets on the next pass


class Streams:
    """This process's emulated streams (http_stream, sse) by their session secret,
    which /emulation requests name."""

    def __init__(self) -> None:
        self._by_secret: dict[str, StreamConnection] = {}

    def add(self, secret: str, stream: StreamConnection) -> None:
        self._by_secret[secret] = stream

    def discard(self, secret: str, stream: StreamConnection) -> None:
        if self._by_secret.get(secret) is stream:
            del self._by_secret[secret]

    def get(self, secret: str) -> StreamConnection | None:
        return self._by_secret.get(secret)

    def __len__(self) -> int:
        return len(self._by_secret)


@dataclass(frozen=True)
class Endpoint:
    """What the WebSocket endpoint needs, shared by its handler and the fast path
    (wsfan.web.upgrade); an app keeps it in its settings as `websocket_endpoint`.
    `proxies` are the node's `server.trusted_proxies`."""

    node: Node
    origins: OriginPolicy
    connections: ConnectionCounter = field(default_factory=lambda: ConnectionCounter(0))
    live: LiveConnections = field(default_factory=LiveConnections)
    streams: Streams = field(default_factory=Streams)
    proxies: TrustedProxies = field(init=False)

    def __post_init__(self) -> None:
        proxies = TrustedProxies(self.node.settings.server.trusted_proxies)
        object.__setattr__(self, "proxies", proxies)  # frozen: set once, here


def endpoint_of(app: object) -> Endpoint | None:
    """The WebSocket endpoint of `app` (an HTTPServer's request callback), if any."""
    endpoint = app.settings.get("websocket_endpoint") if isinstance(app, Application) else None
    return endpoint if isinstance(endpoint, Endpoint) else None


async def close_websockets(app: object, grace: float = 1.0) -> None:
    """Close the WebSocket connections `app` still holds; see LiveConnections."""
    endpoint = endpoint_of(app)
    if endpoint is not None:
        await endpoint.live.close_all(grace)
