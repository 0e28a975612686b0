"""Whose forwarding headers are believed: `server.trusted_proxies`.

Behind a reverse proxy the TCP peer is the proxy, and the client's address and
scheme come in `X-Real-Ip`, `X-Forwarded-For` and `X-Forwarded-Proto`. Anyone
can send those headers, so they count only when the TCP peer is a listed proxy
(an address or a CIDR block); from anyone else the peer's own address and the
plain connection's scheme stand.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from typing import TypeAlias

__all__ = ["TrustedProxies", "check_networks"]

Header: TypeAlias = Callable[[str], "str | None"]
"""Looks a request header up by name, case-insensitively (None when absent)."""

_Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network


def _network(entry: str) -> _Network:
    return ipaddress.ip_network(entry.strip(), strict=False)


def check_networks(entries: Iterable[str]) -> str | None:
    """The first entry that is not an IP address or CIDR block, or None."""
    for entry in entries:
        try:
            _network(entry)
        except ValueError:
            return entry
    return None


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # ::ffff:127.0.0.1 on a dual-stack socket is 127.0.0.1
    return ip


class TrustedProxies:
    """The peers whose forwarding headers count. Raises ValueError on an entry
    that is not an address or CIDR block (the settings check them first)."""

    def __init__(self, entries: Iterable[str] = ()) -> None:
        self._networks = [_network(entry) for entry in entries]

    def trusts(self, peer: str) -> bool:
        """Whether `peer` (the TCP peer's address) is a listed proxy."""
        ip = _ip(peer) if self._networks else None
        return ip is not None and any(ip in network for network in self._networks)

    def client_address(self, header: Header, peer: str) -> str:
        """The client's address: from a trusted proxy, `X-Real-Ip`, else the
        last `X-Forwarded-For` entry (the one that proxy added), as Tornado's
        xheaders mode reads them; otherwise, or when that is not an IP, `peer`."""
        if not self.trusts(peer):
            return peer
        forwarded = header("X-Real-Ip") or (header("X-Forwarded-For") or "").split(",")[-1]
        return forwarded.strip() if _ip(forwarded) is not None else peer

    def scheme(self, header: Header, peer: str) -> str:
        """The scheme the client used: a trusted proxy's `X-Scheme` or
        `X-Forwarded-Proto` (its last entry, "http" or "https"; as Tornado's
        xheaders mode), else "http" (the server itself speaks no TLS)."""
        if self.trusts(peer):
            proto = header("X-Scheme") or header("X-Forwarded-Proto") or ""
            proto = proto.split(",")[-1].strip().lower()
            if proto in ("http", "https"):
                return proto
        return "http"
