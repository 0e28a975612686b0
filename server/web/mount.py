"""The server's routes as URL rules, for its own Tornado application and for an
application embedding it (which adds them to its own routes, so both share one
port); and which WebSocket endpoint an application has mounted.

The rules carry everything their handlers decide with (origin policy,
per-address cap, API keys), so a mounted WebSocket endpoint refuses and
accepts exactly as the server's own. What only the listener can bound (a
request head's time, idle keep-alive connections, connections not upgraded
yet, accepting when out of descriptors) comes with serving the application
through `wsfan.web.upgrade.make_server`, as `Server.listen` does.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from tornado.routing import Rule
from tornado.web import Application, RequestHandler

from ..api.executor import ApiExecutor
from ..api.keys import ApiKeyChecker
from ..auth.limits import AddressRates, ConnectionCounter
from ..auth.origin import OriginPolicy
from ..node import Node
from .api import ApiHandler
from .emulation import EMULATION_PATH, EmulationHandler, serve_emulation
from .endpoint import Endpoint
from .health import HealthHandler, ReadinessCheck, ReadyHandler
from .metrics import MetricsHandler
from .stream_framing import UNI_WEBSOCKET
from .streams import STREAM_PATHS, StreamHandler
from .websocket import WEBSOCKET_PATH, ClientWebSocketHandler

__all__ = ["Route", "make_endpoint", "mounted_endpoints", "server_routes", "transport_routes"]

UNI_WEBSOCKET_PATH = "/connection/uni_websocket"

Route = tuple[str, type[RequestHandler], dict[str, Any]]
"""One URL rule as `tornado.web.Application` takes it: pattern, handler, its arguments."""


def make_endpoint(node: Node) -> Endpoint:
    """The WebSocket endpoint of `node`, with the origin policy and per-address cap
    from `client.allowed_origins` and `client.max_connections_per_ip`."""
    client = node.settings.client
    return Endpoint(
        node,
        OriginPolicy(client.allowed_origins),
        ConnectionCounter(client.max_connections_per_ip),
    )


def server_routes(
    node: Node,
    endpoint: Endpoint,
    readiness: dict[str, ReadinessCheck] | None = None,
    api_keys: ApiKeyChecker | None = None,
) -> list[Route]:
    """The WebSocket endpoint, the server API, /healthz, /readyz and /metrics (not the
    pages, which need the application's static files). `readiness` names the
    checks behind /readyz; `api_keys` decides the API's keys (default: `api.keys`)."""
    api = {
        "executor": ApiExecutor(node),
        "keys": api_keys or ApiKeyChecker(node.settings.api.keys),
        "max_body_bytes": node.settings.api.max_body_bytes,
    }
    checks = readiness if readiness is not None else {}
    ready = {"checks": checks, "draining": lambda: node.draining}
    return [
        (WEBSOCKET_PATH, ClientWebSocketHandler, {"endpoint": endpoint}),
        *transport_routes(endpoint),
        (r"/api/?(.*)", ApiHandler, api),
        (r"/healthz", HealthHandler, {}),
        (r"/readyz", ReadyHandler, ready),
        (r"/metrics", MetricsHandler, {"node": node}),
    ]


def transport_routes(endpoint: Endpoint) -> list[Route]:
    """The endpoints `[transports]` turns on, and `/emulation` with the
    bidirectional streams (whose cluster requests the node then answers)."""
    transports = endpoint.node.settings.transports
    routes: list[Route] = [
        (path, StreamHandler, {"endpoint": endpoint, "framing": framing})
        for path, framing in STREAM_PATHS.items()
        if getattr(transports, framing.name)
    ]
    if transports.uni_websocket:
        uni = {"endpoint": endpoint, "framing": UNI_WEBSOCKET}
        routes.append((UNI_WEBSOCKET_PATH, ClientWebSocketHandler, uni))
    if transports.http_stream or transports.sse:
        rates = AddressRates(transports.emulation_rate, int(2 * transports.emulation_rate))
        routes.append((EMULATION_PATH, EmulationHandler, {"endpoint": endpoint, "rates": rates}))
        serve_emulation(endpoint)
    return routes


def mounted_endpoints(app: Application) -> list[Endpoint]:
    """The WebSocket endpoints routed to in `app` (nested routers included), once each."""
    found: list[Endpoint] = []
    for endpoint in _endpoints(app.default_router.rules):
        if all(endpoint is not known for known in found):
            found.append(endpoint)
    return found


def _endpoints(rules: Iterable[Rule]) -> Iterator[Endpoint]:
    for rule in rules:
        if rule.target is ClientWebSocketHandler:
            endpoint = (rule.target_kwargs or {}).get("endpoint")
            if isinstance(endpoint, Endpoint):
                yield endpoint
        nested = getattr(rule.target, "rules", None)
        if isinstance(nested, list):
            yield from _endpoints(nested)
