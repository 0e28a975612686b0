"""The WebSocket opening handshake (RFC 6455 section 4), without I/O: whether an
upgrade request is refused and with which HTTP status, and what the 101 answer
carries. Both the Tornado handler (wsfan.web.websocket) and the listener's fast
path (wsfan.web.upgrade) decide with these, so they refuse and accept alike.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from http import HTTPStatus
from typing import TYPE_CHECKING

from ..auth.proxies import Header
from ..protocol import Encoding

if TYPE_CHECKING:
    from .endpoint import Endpoint

__all__ = [
    "MSGPACK_SUBPROTOCOL",
    "SUPPORTED_VERSIONS",
    "WEBSOCKET_PATH",
    "accept_key",
    "handshake_problem",
    "negotiated_encoding",
    "peer_of",
    "upgrade_headers",
    "valid_key",
]

WEBSOCKET_PATH = "/connection/websocket"
MSGPACK_SUBPROTOCOL = "msgpack"
SUPPORTED_VERSIONS = ("7", "8", "13")
"""Sec-WebSocket-Version values accepted; a 426 answer names them."""
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_key(key: str) -> str:
    """Sec-WebSocket-Accept for a client's Sec-WebSocket-Key (RFC 6455 section 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()


def valid_key(key: str | None) -> bool:
    """Whether `key` is a Sec-WebSocket-Key: base64 of 16 bytes (RFC 6455 section 4.1)."""
    if key is None or len(key) != 24:
        return False
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except binascii.Error:
        return False


def handshake_problem(endpoint: Endpoint, header: Header, peer: str) -> tuple[int, str] | None:
    """Why an upgrade request is refused (HTTP status, message), or None to accept.

    `header` looks a request header up by name, case-insensitively; `peer` is the
    TCP peer's address (whose X-Forwarded-Proto counts if it is a trusted proxy).
    """
    node = endpoint.node
    if node.metrics.open_connections >= node.settings.server.max_connections:
        # A clean 503 the client can retry elsewhere, instead of failing at the
        # open-files limit.
        return HTTPStatus.SERVICE_UNAVAILABLE, "connection limit reached"
    if (header("Upgrade") or "").lower() != "websocket":
        return HTTPStatus.BAD_REQUEST, 'Can "Upgrade" only to "WebSocket".'
    if "upgrade" not in (p.strip().lower() for p in (header("Connection") or "").split(",")):
        return HTTPStatus.BAD_REQUEST, '"Connection" must be "Upgrade".'
    origin = header("Origin")
    if origin is not None:
        scheme = endpoint.proxies.scheme(header, peer)
        if not endpoint.origins.allows(origin, header("Host"), scheme):
            return HTTPStatus.FORBIDDEN, "Cross origin websockets not allowed"
    if header("Sec-WebSocket-Version") not in SUPPORTED_VERSIONS:
        return HTTPStatus.UPGRADE_REQUIRED, "Upgrade Required"
    if not valid_key(header("Sec-WebSocket-Key")):
        return HTTPStatus.BAD_REQUEST, "Sec-WebSocket-Key must be the base64 of 16 bytes"
    return None


def upgrade_headers(key: str, encoding: Encoding) -> list[tuple[str, str]]:
    """The headers of the 101 answer to a client's Sec-WebSocket-Key."""
    headers = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", accept_key(key)),
    ]
    if encoding is Encoding.MSGPACK:
        headers.append(("Sec-WebSocket-Protocol", MSGPACK_SUBPROTOCOL))
    return headers


def negotiated_encoding(offered: str | None) -> Encoding:
    """msgpack when the client offers our msgpack subprotocol, JSON otherwise."""
    protocols = [p.strip() for p in (offered or "").split(",")]
    return Encoding.MSGPACK if MSGPACK_SUBPROTOCOL in protocols else Encoding.JSON


def peer_of(connection: object, fallback: str | None) -> str:
    """The TCP peer's address of a Tornado request's `connection` (before any X-
    header), or `fallback` when it has none."""
    address = getattr(getattr(connection, "context", None), "address", None)
    if isinstance(address, tuple) and address:
        return str(address[0])
    return fallback or ""
