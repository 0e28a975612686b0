"""Which browser pages may open a WebSocket: the Origin allow-list.

Browsers send `Origin` with every WebSocket handshake, so a page on another
site cannot borrow a visitor's cookies or network position to talk to us.
Non-browser clients (the SDKs under Python or Node) usually send none and are
not concerned: the check only applies when the header is there.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

__all__ = ["OriginPolicy"]

# A `*` inside a pattern stands for host-name or port characters only, so that
# "https://*.example.com" cannot match "https://evil.com/x.example.com".
_WILDCARD = "[a-z0-9.\\-]*"


def _compile(pattern: str) -> re.Pattern[str]:
    parts = [re.escape(part) for part in pattern.strip().lower().split("*")]
    return re.compile(_WILDCARD.join(parts))


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin_of(scheme: str, netloc: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of `scheme://netloc`, the port made explicit; None when
    malformed (no host, a bad port, an unclosed IPv6 bracket)."""
    try:
        parts = urlsplit(f"{scheme}://{netloc}")
        port = _DEFAULT_PORTS.get(scheme) if parts.port is None else parts.port
    except ValueError:
        return None
    if not parts.hostname or port is None:
        return None
    if "@" in netloc or parts.path or parts.query or parts.fragment:
        return None  # an origin is scheme, host and port, nothing else
    return scheme, parts.hostname, port


class OriginPolicy:
    """Allows the same origin and the listed ones: exact origins
    (`https://app.example.com`), patterns with `*` (`https://*.example.com`,
    `http://localhost:*`), or `*` for any origin.

    Same origin means the same scheme, host and port (RFC 6454): the request's
    scheme (`http`, or what a trusted proxy says in `X-Forwarded-Proto`), its
    `Host`, and that scheme's default port when `Host` names none. So an
    `https://host` page is not the same origin as a plain-http request to
    `host`, and `https://host:443` is the same as `https://host`."""

    def __init__(self, allowed: tuple[str, ...] | list[str] = ()) -> None:
        self._any = any(p.strip() == "*" for p in allowed)
        self._patterns = [_compile(p) for p in allowed if p.strip() and p.strip() != "*"]

    def allows(self, origin: str, host: str | None, scheme: str = "http") -> bool:
        """Whether a handshake with `Origin: origin` may open, given the request's
        `Host` header and the scheme the client used."""
        return self._any or self.credentials_for(origin, host, scheme)

    def credentials_for(self, origin: str, host: str | None, scheme: str = "http") -> bool:
        """Whether `origin` is allowed other than by `*` alone: the same origin,
        or one the list names (exactly or by a pattern). CORS grants credentials
        only to these (wsfan.web.cors)."""
        origin = origin.strip().lower()
        if host:
            scheme_of_origin, sep, netloc = origin.partition("://")
            mine = _origin_of(scheme.lower(), host.strip().lower())
            if sep and mine is not None and _origin_of(scheme_of_origin, netloc) == mine:
                return True
        return any(p.fullmatch(origin) for p in self._patterns)
