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


class OriginPolicy:
    """Allows the same origin (its host equals the request's Host) and the listed
    ones: exact origins (`https://app.example.com`), patterns with `*`
    (`https://*.example.com`, `http://localhost:*`), or `*` for any origin."""

    def __init__(self, allowed: tuple[str, ...] | list[str] = ()) -> None:
        self._any = any(p.strip() == "*" for p in allowed)
        self._patterns = [_compile(p) for p in allowed if p.strip() and p.strip() != "*"]

    def allows(self, origin: str, host: str | None) -> bool:
        origin = origin.strip().lower()
        if self._any:
            return True
        try:
            netloc = urlsplit(origin).netloc
        except ValueError:  # e.g. an unclosed IPv6 bracket
            return False
        if host and netloc == host.strip().lower():
            return True
        return any(p.fullmatch(origin) for p in self._patterns)
