"""The client protocol as the load tester speaks it: commands out, messages in.

No I/O, no dependency on the server package: the tool must drive any server
speaking the Centrifugo client protocol (JSON: newline-delimited messages in a
text frame) or our msgpack variant (concatenated maps in a binary frame, under
the `msgpack` subprotocol).
"""

from __future__ import annotations

import json
import time
from typing import Any

import msgpack

__all__ = ["MSGPACK_SUBPROTOCOL", "Codec", "mint_token", "payload"]

MSGPACK_SUBPROTOCOL = "msgpack"

CONNECT_ID = 1
SUBSCRIBE_ID = 2


class Codec:
    """Encodes and decodes messages of one encoding ("json" or "msgpack")."""

    __slots__ = ("_pack", "binary", "name", "pong")

    def __init__(self, name: str) -> None:
        self.name = name
        self.binary = name == "msgpack"
        self.pong = b"\x80" if self.binary else b"{}"
        self._pack = msgpack.Packer(use_bin_type=True).pack

    @property
    def subprotocol_headers(self) -> dict[str, str]:
        return {"Sec-WebSocket-Protocol": MSGPACK_SUBPROTOCOL} if self.binary else {}

    def encode(self, messages: list[dict[str, Any]]) -> bytes:
        """One frame carrying `messages` in order."""
        if self.binary:
            return b"".join(self._pack(m) for m in messages)
        return "\n".join(json.dumps(m, separators=(",", ":")) for m in messages).encode()

    def decode(self, frame: bytes) -> list[Any]:
        """Every message of a frame; raises ValueError for a malformed one."""
        if self.binary:
            unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
            unpacker.feed(frame)
            return list(unpacker)
        return [json.loads(line) for line in frame.split(b"\n") if line]

    # Commands ---------------------------------------------------------------

    def hello(
        self,
        channel: str,
        token: str = "",
        position: tuple[int, str] | None = None,
    ) -> bytes:
        """connect and subscribe in one frame; with `position` (offset, epoch) the
        subscribe asks to recover what was published after it."""
        return self.encode([self._connect(token), self._subscribe(channel, position)])

    def hello_many(
        self, subscriptions: list[tuple[str, tuple[int, str] | None]], token: str = ""
    ) -> bytes:
        """connect and one subscribe per (channel, position) in one frame, the
        subscribes numbered SUBSCRIBE_ID, SUBSCRIBE_ID + 1, ... in order."""
        return self.encode(
            [
                self._connect(token),
                *(
                    self._subscribe(channel, position, SUBSCRIBE_ID + i)
                    for i, (channel, position) in enumerate(subscriptions)
                ),
            ]
        )

    def connect(self, token: str = "") -> bytes:
        """connect alone: an HTTP stream's request, its subscribe to follow."""
        return self.encode([self._connect(token)])

    def subscribe(
        self, channel: str, position: tuple[int, str] | None, cmd_id: int = SUBSCRIBE_ID
    ) -> bytes:
        """subscribe alone: after an HTTP stream's connect, or on a connection the
        server unsubscribed (code 2500..2999)."""
        return self.encode([self._subscribe(channel, position, cmd_id)])

    resubscribe = subscribe

    @staticmethod
    def _connect(token: str) -> dict[str, Any]:
        connect: dict[str, Any] = {"name": "loadtest"}
        if token:
            connect["token"] = token
        return {"id": CONNECT_ID, "connect": connect}

    @staticmethod
    def _subscribe(
        channel: str, position: tuple[int, str] | None, cmd_id: int = SUBSCRIBE_ID
    ) -> dict[str, Any]:
        subscribe: dict[str, Any] = {"channel": channel}
        if position is not None:
            subscribe.update(recover=True, offset=position[0], epoch=position[1])
        return {"id": cmd_id, "subscribe": subscribe}

    def connect_only(self, token: str = "") -> bytes:
        connect: dict[str, Any] = {"name": "loadtest-publisher"}
        if token:
            connect["token"] = token
        return self.encode([{"id": CONNECT_ID, "connect": connect}])

    def publish(self, cmd_id: int, channel: str, data: Any) -> bytes:
        """One encoded publish command (join several with `join`)."""
        message = {"id": cmd_id, "publish": {"channel": channel, "data": data}}
        if self.binary:
            return self._pack(message)
        return json.dumps(message, separators=(",", ":")).encode()

    def join(self, encoded: list[bytes]) -> bytes:
        return (b"" if self.binary else b"\n").join(encoded)


def payload(step: int, seq: int, pad: str) -> dict[str, Any]:
    """Publication data: send time (ns since the epoch), ramp step, sequence, padding."""
    return {"ts": time.time_ns(), "s": step, "n": seq, "p": pad}


PAYLOAD_OVERHEAD = len(json.dumps(payload(0, 0, ""), separators=(",", ":"))) + 4


def padding(size: int) -> str:
    """Padding that brings the JSON data of a publication to about `size` bytes."""
    return "x" * max(size - PAYLOAD_OVERHEAD, 0)


def mint_token(secret: str, user: str, ttl: float) -> str:
    """An HS256 connection token for `user` (`sub`), expiring in `ttl` seconds."""
    import jwt  # the loadtest extra; only needed with a secret

    claims = {"sub": user, "exp": int(time.time() + ttl)}
    return str(jwt.encode(claims, secret, algorithm="HS256"))
