"""Bytes in, messages out and back: the JSON and msgpack codecs of one frame,
the shapes of replies and pushes, and answers spliced from values encoded already.

- `decode_frame` returns every message of a frame in order or raises
  `ProtocolError` (the connection closes with 3501); it never raises anything else.
- `encode` never fails on data that passed `parse_request` (or `check_data`):
  values one encoding cannot carry (binary in JSON, huge integers or lone
  surrogates in msgpack, NaN in JSON) are converted, never dropped.
- `encode_reply` gives the bytes `encode` would for the same reply, splicing in
  values encoded already (`Encoded`), so a large answer is measured piece by
  piece and encoded once.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from ..errors import ReplyError
from .values import Encoding, ProtocolError

__all__ = [
    "PING",
    "Encoded",
    "Spliced",
    "array_growth",
    "decode_frame",
    "encode",
    "encode_reply",
    "encode_spliced",
    "error_reply",
    "join_frame",
    "push",
    "reply",
    "reply_overhead",
]


# ---------------------------------------------------------------------------
# Frames.


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# One decoder for every message (json.loads with options would build one per call).
_json_decode = json.JSONDecoder(parse_constant=_reject_constant).decode


def decode_frame(data: bytes | str, encoding: Encoding) -> list[Any]:
    """All messages of one frame, in order. Raises ProtocolError and nothing else."""
    try:
        if encoding is Encoding.JSON:
            text = data if isinstance(data, str) else data.decode("utf-8")
            return [_json_decode(line) for line in text.split("\n") if line.strip()]
        raw = data.encode("utf-8") if isinstance(data, str) else data
        unpacker = msgpack.Unpacker(
            raw=False, strict_map_key=False, max_buffer_size=max(len(raw), 1)
        )
        unpacker.feed(raw)
        messages = []
        while unpacker.tell() < len(raw):  # a partial trailing map raises OutOfData
            messages.append(unpacker.unpack())
        return messages
    except Exception as exc:  # the boundary: any decoder failure is the peer's fault
        raise ProtocolError(f"malformed {encoding.value} frame") from exc


def _json_default(obj: Any) -> Any:
    # msgpack.ExtType is a namedtuple, so JSON carries it as [code, base64 data].
    if isinstance(obj, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(obj)).decode("ascii")
    if isinstance(obj, msgpack.Timestamp):
        return obj.to_unix()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _json_key(key: Any) -> str:
    """A map key as the json module writes it (True -> "true"), whatever else the map holds."""
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, bool | int | float):
        return json.dumps(_json_safe(key))
    return str(_json_safe(key))


def _json_safe(obj: Any) -> Any:
    """A copy JSON can carry: string keys, no NaN or infinity, binary as base64."""
    if isinstance(obj, dict):
        return {_json_key(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, str | int | float | bool) or obj is None:
        return obj
    return _json_default(obj)


_INT_MIN, _UINT_MAX = -(2**63), 2**64 - 1


def _msgpack_safe(obj: Any) -> Any:
    """A copy msgpack can carry: integers outside 64 bits become strings, and lone
    surrogates (valid in a JSON escape, not in UTF-8) become U+FFFD."""
    if isinstance(obj, str):
        return obj.encode("utf-8", "replace").decode("utf-8")
    if isinstance(obj, dict):
        return {_msgpack_safe(k): _msgpack_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_msgpack_safe(v) for v in obj]
    if isinstance(obj, int) and not isinstance(obj, bool) and not _INT_MIN <= obj <= _UINT_MAX:
        return str(obj)
    return obj


_json_encoder = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_json_default
)
_ascii_json_encoder = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=True, allow_nan=False, default=_json_default
)


def encode(message: Any, encoding: Encoding) -> bytes:
    """One message as bytes; never fails for values a decoder could have produced."""
    if encoding is Encoding.JSON:
        try:
            return _json_encoder.encode(message).encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: JSON can carry it escaped
            return _ascii_json_encoder.encode(_json_safe(message)).encode("ascii")
        except (TypeError, ValueError):
            return _json_encoder.encode(_json_safe(message)).encode("utf-8")
    try:
        return msgpack.packb(message, use_bin_type=True)
    except (OverflowError, TypeError, ValueError):  # UnicodeEncodeError is a ValueError
        return msgpack.packb(_msgpack_safe(message), use_bin_type=True, default=_json_default)


def join_frame(messages: Sequence[bytes], encoding: Encoding) -> bytes:
    """Several encoded messages as one frame (JSON: newline-delimited)."""
    if len(messages) == 1:
        return messages[0]
    return (b"\n" if encoding is Encoding.JSON else b"").join(messages)


PING: dict[str, Any] = {}
"""The server ping and the client pong: an empty message."""


# ---------------------------------------------------------------------------
# Replies and pushes (as maps; `encode` turns them into bytes).


def reply(cmd_id: int, method: str, result: dict[str, Any]) -> dict[str, Any]:
    return {"id": cmd_id, method: result}


def error_reply(cmd_id: int, error: ReplyError) -> dict[str, Any]:
    return {"id": cmd_id, "error": error.to_dict()}


def push(channel: str, kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """A push: kind is pub, join, leave, unsubscribe, subscribe, message or disconnect."""
    inner: dict[str, Any] = {kind: body}
    if channel:
        inner["channel"] = channel
    return {"push": inner}


# ---------------------------------------------------------------------------
# Answers assembled from values encoded already.


@dataclass(slots=True)
class Encoded:
    """Values encoded already, in one encoding (publications, one by one): a
    `Spliced` map carries them as an array without encoding them again."""

    items: list[bytes] = field(default_factory=list)
    size: int = 0  # bytes of the items

    def append(self, data: bytes) -> None:
        self.items.append(data)
        self.size += len(data)

    def pop(self) -> None:
        self.size -= len(self.items.pop())

    def __len__(self) -> int:
        return len(self.items)


class Spliced(dict[str, Any]):
    """A map some of whose values are `Encoded` or `Spliced` (others are encoded as
    usual); only `encode_reply` understands it."""


def _array_header(count: int) -> bytes:
    if count < 16:
        return bytes([0x90 | count])
    if count < 1 << 16:
        return b"\xdc" + count.to_bytes(2, "big")
    return b"\xdd" + count.to_bytes(4, "big")


def _map_header(count: int) -> bytes:
    if count < 16:
        return bytes([0x80 | count])
    if count < 1 << 16:
        return b"\xde" + count.to_bytes(2, "big")
    return b"\xdf" + count.to_bytes(4, "big")


def array_growth(count: int, encoding: Encoding) -> int:
    """Bytes an array of `count` items takes beyond its items and an empty array's."""
    if encoding is Encoding.JSON:
        return max(count - 1, 0)  # the commas
    return len(_array_header(count)) - 1


def encode_spliced(value: Any, encoding: Encoding) -> bytes:
    """`value` encoded, with what `Spliced` maps hold spliced in (see `Encoded`)."""
    if isinstance(value, Encoded):
        if encoding is Encoding.JSON:
            return b"[" + b",".join(value.items) + b"]"
        return _array_header(len(value.items)) + b"".join(value.items)
    if not isinstance(value, Spliced):
        return encode(value, encoding)
    if encoding is Encoding.JSON:
        pairs = (encode(k, encoding) + b":" + encode_spliced(v, encoding) for k, v in value.items())
        return b"{" + b",".join(pairs) + b"}"
    pairs = (encode(k, encoding) + encode_spliced(v, encoding) for k, v in value.items())
    return _map_header(len(value)) + b"".join(pairs)


def encode_reply(cmd_id: int, method: str, result: dict[str, Any], encoding: Encoding) -> bytes:
    """`encode(reply(cmd_id, method, result))`, with `Spliced` results spliced together."""
    if isinstance(result, Spliced):
        return encode_spliced(Spliced({"id": cmd_id, method: result}), encoding)
    return encode(reply(cmd_id, method, result), encoding)


def reply_overhead(cmd_id: int, method: str, encoding: Encoding) -> int:
    """Bytes a reply takes around its result map: a reply's size is this plus the
    size of its encoded result."""
    return len(encode(reply(cmd_id, method, {}), encoding)) - len(encode({}, encoding))
