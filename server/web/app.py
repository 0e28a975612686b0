"""The Tornado application: routes, and the settings that carry limits."""

from __future__ import annotations

from pathlib import Path

from tornado.web import Application, RedirectHandler, StaticFileHandler

from server.api.executor import ApiExecutor
from server.api.keys import ApiKeyChecker
from server.node import Node
from server.web.api import ApiHandler
from server.web.health import HealthHandler, ReadinessCheck, ReadyHandler
from server.web.websocket import ClientWebSocketHandler

__all__ = ["STATIC_DIR", "make_app"]

STATIC_DIR = Path(__file__).resolve().parent.parent.parent / "static"


def make_app(
    node: Node,
    readiness: dict[str, ReadinessCheck] | None = None,
    api_keys: ApiKeyChecker | None = None,
) -> Application:
    """Routes for one node; `readiness` names the dependency checks behind /readyz;
    `api_keys` decides the server API's keys (default: `api.keys` from settings)."""
    api = {
        "executor": ApiExecutor(node),
        "keys": api_keys or ApiKeyChecker(node.settings.api.keys),
        "max_body_bytes": node.settings.api.max_body_bytes,
    }
    return Application(
        [
            (r"/connection/websocket", ClientWebSocketHandler, {"node": node}),
            (r"/api/?(.*)", ApiHandler, api),
            (r"/healthz", HealthHandler),
            (r"/readyz", ReadyHandler, {"checks": readiness or {}}),
            (r"/", RedirectHandler, {"url": "/static/index.html"}),
        ],
        static_path=str(STATIC_DIR),
        static_handler_class=StaticFileHandler,
        websocket_max_message_size=node.settings.client.max_frame_bytes,
    )
