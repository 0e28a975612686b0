"""Thin Tornado handlers: they adapt HTTP and WebSocket to the node and sessions."""

from .app import make_app

__all__ = ["make_app"]
