"""The Tornado application: routes, and the settings that carry limits."""

from __future__ import annotations

from tornado.web import Application, StaticFileHandler

from ..api.keys import ApiKeyChecker
from ..node import Node
from .endpoint import Endpoint
from .health import ReadinessCheck
from .mount import make_endpoint, server_routes
from .pages import STATIC_DIR, page_routes

__all__ = ["STATIC_DIR", "make_app"]


def make_app(
    node: Node,
    readiness: dict[str, ReadinessCheck] | None = None,
    api_keys: ApiKeyChecker | None = None,
    endpoint: Endpoint | None = None,
) -> Application:
    """Routes for one node (wsfan.web.mount's, and the pages); `readiness` names the
    dependency checks behind /readyz; `api_keys` decides the server API's keys
    (default: `api.keys` from settings); `endpoint` is the WebSocket endpoint
    (default: a new one, see `make_endpoint`)."""
    endpoint = endpoint or make_endpoint(node)
    return Application(
        [*server_routes(node, endpoint, readiness, api_keys), *page_routes(node)],
        static_path=str(STATIC_DIR),
        static_handler_class=StaticFileHandler,
        websocket_endpoint=endpoint,
    )
