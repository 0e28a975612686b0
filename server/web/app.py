"""The Tornado application: routes, and the settings that carry limits."""

from __future__ import annotations

from tornado.web import Application, StaticFileHandler

from server.auth.limits import ConnectionCounter
from server.auth.origin import OriginPolicy
from server.node import Node
from server.web.health import HealthHandler, ReadinessCheck, ReadyHandler
from server.web.metrics import MetricsHandler
from server.web.pages import STATIC_DIR, page_routes
from server.web.websocket import ClientWebSocketHandler

__all__ = ["STATIC_DIR", "make_app"]


def make_app(node: Node, readiness: dict[str, ReadinessCheck] | None = None) -> Application:
    """Routes for one node; `readiness` names the dependency checks behind /readyz."""
    client = node.settings.client
    websocket = {
        "node": node,
        "origins": OriginPolicy(client.allowed_origins),
        "connections": ConnectionCounter(client.max_connections_per_ip),
    }
    return Application(
        [
            (r"/connection/websocket", ClientWebSocketHandler, websocket),
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
        websocket_max_message_size=node.settings.client.max_frame_bytes,
    )
