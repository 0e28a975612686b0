"""wsfan: a real-time WebSocket server speaking the Centrifugo client protocol.

For applications embedding it: `build(settings)` returns a `Server` (see
server/facade.py). Both are imported on first use, so importing a part of the
package (a tool, the protocol) does not load the whole server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0.dev0"

__all__ = ["Server", "__version__", "build"]

if TYPE_CHECKING:
    from .compose import build
    from .facade import Server


def __getattr__(name: str) -> Any:
    if name == "build":
        from .compose import build

        return build
    if name == "Server":
        from .facade import Server

        return Server
    raise AttributeError(f"module 'wsfan' has no attribute {name!r}")
