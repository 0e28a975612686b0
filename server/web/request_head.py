"""Request heads peeked at on a socket before Tornado or the upgrade fast path
reads them: whether a whole head has arrived, and the WebSocket upgrade request
the fast path answers itself (see wsfan.web.upgrade).
"""

from __future__ import annotations

import re
import socket

from ..auth.proxies import TrustedProxies
from .handshake import WEBSOCKET_PATH

__all__ = [
    "HEAD_END",
    "MAX_HEAD",
    "client_address",
    "head_arrived",
    "parse_upgrade",
]

MAX_HEAD = 8192
"""Bytes peeked at for the request head; a longer head goes to Tornado."""
HEAD_END = re.compile(rb"\r?\n\r?\n")
"""The end of a request head, as Tornado finds it."""


def parse_upgrade(data: bytes, path: str = WEBSOCKET_PATH) -> tuple[dict[str, str], int] | None:
    """The headers (names lower-cased, repeats comma-joined) and head length of a
    complete `GET path` HTTP/1.1 request at the start of `data`, or None."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = data[:end].decode("latin-1").split("\r\n")
    request = lines[0].split(" ")
    if len(request) != 3 or request[0] != "GET" or request[2] != "HTTP/1.1":
        return None
    if request[1].partition("?")[0] != path:
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            return None  # let Tornado judge anything unusual
        key, value = name.lower(), value.strip()
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    return headers, end + 4


def client_address(headers: dict[str, str], peer: str, proxies: TrustedProxies) -> str:
    """The client's address: from a trusted proxy X-Real-Ip, else the last
    X-Forwarded-For entry (as Tornado's xheaders mode reads them); from anyone
    else, or when that is not an IP, the peer's."""
    return proxies.client_address(lambda name: headers.get(name.lower()), peer)


def head_arrived(sock: socket.socket) -> bool:
    """Whether a whole request head (or all MAX_HEAD bytes, or the end) is waiting
    on `sock`; True too when peeking fails (whoever reads it next finds out)."""
    try:
        data = sock.recv(MAX_HEAD, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return False
    except OSError:
        return True
    return not data or len(data) >= MAX_HEAD or HEAD_END.search(data) is not None
