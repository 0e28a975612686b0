"""The Tornado application: routes, and the settings that carry limits."""

from __future__ import annotations

from tornado.web import Application, StaticFileHandler

from server.api.executor import ApiExecutor
from server.api.keys import ApiKeyChecker
from server.auth.limits import ConnectionCounter
from server.auth.origin import OriginPolicy
from server.node import Node
from server.web.api import ApiHandler
from server.web.health import HealthHandler, ReadinessCheck, ReadyHandler
from server.web.metrics import MetricsHandler
from server.web.pages import STATIC_DIR, page_routes
from server.web.websocket import WEBSOCKET_PATH, ClientWebSocketHandler, Endpoint

__all__ = ["STATIC_DIR", "make_app"]


def make_app(
    node: Node,
    readiness: dict[str, ReadinessCheck] | None = None,
    api_keys: ApiKeyChecker | None = None,
) -> Application:
    """Routes for one node; `readiness` names the dependency checks behind /readyz;
    `api_keys` decides the server API's keys (default: `api.keys` from settings)."""
    client = node.settings.client
    endpoint = Endpoint(
        node,
        OriginPolicy(client.allowed_origins),
        ConnectionCounter(client.max_connections_per_ip),
    )
    api = {
        "executor": ApiExecutor(node),
        "keys": api_keys or ApiKeyChecker(node.settings.api.keys),
        "max_body_bytes": node.settings.api.max_body_bytes,
    }
    return Application(
        [
            (WEBSOCKET_PATH, ClientWebSocketHandler, {"endpoint": endpoint}),
            (r"/api/?(.*)", ApiHandler, api),
            (r"/healthz", HealthHandler),
            (
                r"/readyz",
                ReadyHandler,
                {"checks": readiness or {}, "draining": lambda: node.draining},
            ),
            (r"/metrics", MetricsHandler, {"node": node}),
            *page_routes(node),
        ],
        static_path=str(STATIC_DIR),
        static_handler_class=StaticFileHandler,
        websocket_endpoint=endpoint,
    )
