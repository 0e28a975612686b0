"""Installing an application object's hooks on a node built by a fixture."""

from __future__ import annotations

from wsfan.app import ConnectContext, ConnectResult, ReplyError
from wsfan.app.layer import AppLayer
from wsfan.app.python_hooks import PythonHooks
from wsfan.errors import ErrorCode
from wsfan.node import Node

__all__ = ["NOT_AN_APP", "CookieApp", "NeedsArguments", "install"]


def install(node: Node, app: object) -> AppLayer:
    """Make `app`'s methods `node`'s hooks (as `build(settings, app)` would);
    the node's close stops them."""
    layer = AppLayer(PythonHooks(app), None, node.settings, node.metrics)
    layer.attach(node.spawn)
    layer.start()
    node.app = layer
    return layer


class CookieApp:
    """Connects the user its `session` cookie names; used by the command line's
    tests through `[app] handlers = "tests.app_hooks:CookieApp"`."""

    async def connecting(self, ctx: ConnectContext) -> ConnectResult:
        user = ctx.cookies.get("session")
        if not user:
            raise ReplyError(ErrorCode.UNAUTHORIZED)
        return ConnectResult(user)


class NeedsArguments:
    """A class `[app] handlers` cannot instantiate."""

    def __init__(self, required: str) -> None:
        self.required = required


NOT_AN_APP = 42
"""Something `[app] handlers` may name that has no hooks at all."""
