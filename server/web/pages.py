"""The browser pages: `/` (the chat demo), `/dashboard` (the cluster's live numbers)
and `/admin` (the server HTTP API for an operator).

Pages are Tornado templates kept in static/ beside their scripts; they load only
files this server serves (static/vendor/ holds the centrifuge SDK and uPlot). The
chat and the dashboard talk to the server only through the client protocol, like
any other client; the admin page only through the server HTTP API, with the key
its operator types, so it can do nothing that key cannot.
"""

from __future__ import annotations

from tornado.web import RequestHandler

from ..node import Node
from ..resources import STATIC_DIR

__all__ = [
    "ADMIN_CSP",
    "CHAT_NAMESPACE",
    "STATIC_DIR",
    "AdminPageHandler",
    "PageHandler",
    "page_routes",
]

CHAT_NAMESPACE = "chat"  # the chat demo's rooms are channels "chat:<room>"
ADMIN_CSP = "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
"""The admin page's Content-Security-Policy: its own scripts and styles only (no
inline ones, so data from clients cannot run), requests to this origin only, no
form submission (its forms are handled by its script: a key typed in can never end
up in a URL), and no framing (no clickjacking of its buttons)."""


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


class AdminPageHandler(PageHandler):
    """`/admin`: the page, sent with `ADMIN_CSP`, no framing, no referrer and no
    content sniffing, on every answer (errors included)."""

    def set_default_headers(self) -> None:
        self.set_header("Content-Security-Policy", ADMIN_CSP)
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header("X-Content-Type-Options", "nosniff")


def page_routes(node: Node) -> list[tuple[str, type[RequestHandler], dict[str, object]]]:
    return [
        (r"/", PageHandler, {"node": node, "template": "chat.html"}),
        (r"/dashboard", PageHandler, {"node": node, "template": "dashboard.html"}),
        (r"/admin", AdminPageHandler, {"node": node, "template": "admin.html"}),
    ]
