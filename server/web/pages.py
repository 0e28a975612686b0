"""The browser pages: `/` (the chat demo) and `/dashboard` (the cluster's live numbers).

Pages are Tornado templates kept in static/ beside their scripts; they load only
files this server serves (static/vendor/ holds the centrifuge SDK and uPlot), and
they talk to the server only through the client protocol, like any other client.
"""

from __future__ import annotations

from pathlib import Path

from tornado.web import RequestHandler

from server.node import Node

__all__ = ["CHAT_NAMESPACE", "STATIC_DIR", "PageHandler", "page_routes"]

STATIC_DIR = Path(__file__).resolve().parent.parent.parent / "static"
CHAT_NAMESPACE = "chat"  # the chat demo's rooms are channels "chat:<room>"


class PageHandler(RequestHandler):
    """Renders one page template with what its script needs to know about this server."""

    def initialize(self, node: Node, template: str) -> None:
        self.node = node
        self.template = template

    def get_template_path(self) -> str:
        return str(STATIC_DIR)

    def get(self) -> None:
        # Scripts and styles carry a content hash (static_url); the page itself must
        # be fetched again to pick up new ones.
        self.set_header("Cache-Control", "no-cache")
        self.render(
            self.template,
            version=self.node.version,
            chat_namespace=CHAT_NAMESPACE,
            stats_channel=self.node.settings.stats.channel,
        )


def page_routes(node: Node) -> list[tuple[str, type[RequestHandler], dict[str, object]]]:
    return [
        (r"/", PageHandler, {"node": node, "template": "chat.html"}),
        (r"/dashboard", PageHandler, {"node": node, "template": "dashboard.html"}),
    ]
