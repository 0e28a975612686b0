"""`GET /metrics`: Prometheus text format, unauthenticated (like /healthz)."""

from __future__ import annotations

from tornado.web import RequestHandler

from ..metrics import CONTENT_TYPE
from ..node import Node

__all__ = ["MetricsHandler"]


class MetricsHandler(RequestHandler):
    def initialize(self, node: Node) -> None:
        self.node = node

    def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE)
        self.finish(self.node.metrics.expose(self.node))
