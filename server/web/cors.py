"""CORS for the HTTP transports (`/connection/http_stream`, `/connection/sse`,
the uni streams and `/emulation`), under the WebSocket endpoint's origin policy
(`client.allowed_origins`, wsfan.auth.origin).

- A request without `Origin` (curl, servers, same-origin EventSource in some
  browsers) gets no CORS headers and is not refused.
- An allowed `Origin` is echoed in `Access-Control-Allow-Origin`, with
  `Vary: Origin` and the headers the preflight asked for (else `Content-Type`)
  in `Access-Control-Allow-Headers`, on the preflight and the answers alike.
- Credentials (`Access-Control-Allow-Credentials: true`, so a page may send
  cookies with `credentials: "include"`) only for an origin the list names,
  exactly or by a pattern, or the server's own; never under `"*"` alone, which
  lets any page read the streams but not with its visitor's cookies.
- A refused `Origin` gets 403 and no CORS headers.
"""

from __future__ import annotations

from collections.abc import Callable

from ..auth.origin import OriginPolicy
from ..auth.proxies import TrustedProxies

__all__ = ["ALLOWED_METHODS", "CorsDecision", "cors"]

ALLOWED_METHODS = "GET, POST, OPTIONS"

Header = Callable[[str], str | None]


class CorsDecision:
    """Whether the request's origin may use the endpoint, and the headers that say so."""

    __slots__ = ("allowed", "headers")

    def __init__(self, allowed: bool, headers: list[tuple[str, str]]) -> None:
        self.allowed = allowed
        self.headers = headers


def cors(origins: OriginPolicy, proxies: TrustedProxies, header: Header, peer: str) -> CorsDecision:
    """The CORS decision for a request whose headers `header` looks up; `peer`:
    the TCP peer (a trusted proxy's X-Forwarded-Proto counts)."""
    origin = header("Origin")
    if origin is None:
        return CorsDecision(True, [])
    scheme = proxies.scheme(header, peer)
    host = header("Host")
    if not origins.allows(origin, host, scheme):
        return CorsDecision(False, [])
    asked = header("Access-Control-Request-Headers")
    headers = [
        ("Access-Control-Allow-Origin", origin),
        ("Vary", "Origin"),
        ("Access-Control-Allow-Headers", asked if asked and asked != "null" else "Content-Type"),
    ]
    if origins.credentials_for(origin, host, scheme):
        headers.append(("Access-Control-Allow-Credentials", "true"))
    return CorsDecision(True, headers)
