"""The client protocol core: frames in, commands out; replies and pushes in, bytes out.

Pure functions and value types, no I/O. Speaks the Centrifugo client protocol v2:
JSON (newline-delimited messages in a frame) and our MessagePack variant (the same
maps, concatenated in a binary frame, selected by the `msgpack` subprotocol).

Contract:
- `decode_frame` returns every message of a frame in order or raises
  `ProtocolError` (the connection closes with 3501); it never raises anything else.
- `parse_command` raises `ProtocolError` for a malformed command envelope; a
  well-formed command with an unknown method comes back with `method` unknown
  for the caller to answer 104; bad method arguments raise `ReplyError(107)`
  from `parse_request`.
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
from dataclasses import dataclass, field, fields
from enum import StrEnum
from functools import cache
from typing import Any, get_type_hints

import msgpack

from server.errors import ErrorCode, ReplyError

__all__ = [
    "METHODS",
    "PING",
    "ClientInfo",
    "Command",
    "ConnectRequest",
    "Encoded",
    "Encoding",
    "HistoryRequest",
    "PresenceRequest",
    "PresenceStatsRequest",
    "ProtocolError",
    "Publication",
    "PublishRequest",
    "RPCRequest",
    "RefreshRequest",
    "SendRequest",
    "Spliced",
    "StreamPosition",
    "SubRefreshRequest",
    "SubscribeRequest",
    "UnsubscribeRequest",
    "array_growth",
    "check_data",
    "decode_frame",
    "encode",
    "encode_reply",
    "encode_spliced",
    "error_reply",
    "join_frame",
    "parse_command",
    "parse_request",
    "push",
    "reply",
    "reply_overhead",
    "validate_channel",
]

MAX_COMMAND_ID = 2**32 - 1


class Encoding(StrEnum):
    JSON = "json"
    MSGPACK = "msgpack"


class ProtocolError(Exception):
    """The peer broke the framing or envelope rules; the answer is close 3501."""


# ---------------------------------------------------------------------------
# Value types shared with the broker and the hub.


@dataclass(slots=True, frozen=True)
class StreamPosition:
    """A place in a channel's stream: offsets rise by one per publication within an epoch."""

    offset: int
    epoch: str


@dataclass(slots=True, frozen=True)
class ClientInfo:
    """Who a publication, join or leave came from."""

    user: str
    client: str
    conn_info: Any = None
    chan_info: Any = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"user": self.user, "client": self.client}
        if self.conn_info is not None:
            out["conn_info"] = self.conn_info
        if self.chan_info is not None:
            out["chan_info"] = self.chan_info
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClientInfo:
        return cls(d.get("user", ""), d.get("client", ""), d.get("conn_info"), d.get("chan_info"))


@dataclass(slots=True, frozen=True)
class Publication:
    """One message in a channel. `offset` is 0 when the channel keeps no history.

    `epoch` travels between nodes (so a subscriber notices a stream that restarted)
    but not to clients: the wire carries it in subscribe and history replies.
    """

    data: Any
    offset: int = 0
    info: ClientInfo | None = None
    tags: dict[str, str] | None = None
    epoch: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"data": self.data}
        if self.offset:
            out["offset"] = self.offset
        if self.info is not None:
            out["info"] = self.info.to_dict()
        if self.tags:
            out["tags"] = self.tags
        return out

    @classmethod
    def from_dict(
        cls, d: dict[str, Any], offset: int | None = None, epoch: str = ""
    ) -> Publication:
        """From its map; `offset` and `epoch` given here win (brokers keep them beside it)."""
        info = d.get("info")
        return cls(
            d.get("data"),
            d.get("offset", 0) if offset is None else offset,
            ClientInfo.from_dict(info) if info else None,
            d.get("tags") or None,
            epoch,
        )


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
# Commands.

METHODS = (
    "connect",
    "subscribe",
    "unsubscribe",
    "publish",
    "presence",
    "presence_stats",
    "history",
    "send",
    "rpc",
    "refresh",
    "sub_refresh",
)


@dataclass(slots=True, frozen=True)
class Command:
    """A command envelope. `method` is "" for a pong, or may name an unknown method."""

    id: int
    method: str
    params: Any


def parse_command(message: Any) -> Command:
    """Validate the envelope: a map, a positive integer id (none only for pong and send)."""
    if not isinstance(message, dict):
        raise ProtocolError("command is not a map")
    cmd_id = message.get("id", 0)
    if type(cmd_id) is not int or not 0 <= cmd_id <= MAX_COMMAND_ID:
        raise ProtocolError("bad command id")
    method = next((m for m in METHODS if m in message), None)
    if method is None:
        others = [k for k in message if k != "id"]
        if not others and cmd_id == 0:
            return Command(0, "", None)
        method = str(others[0]) if others else ""
    if cmd_id == 0 and method != "send":
        raise ProtocolError("command without id")
    return Command(cmd_id, method, message.get(method))


def _bad(name: str, expected: str) -> ReplyError:
    return ReplyError(ErrorCode.BAD_REQUEST, f"{name}: expected {expected}")


DEFAULT_MAX_DATA_DEPTH = 64


def check_data(name: str, value: Any, max_depth: int = DEFAULT_MAX_DATA_DEPTH) -> None:
    """Free-form data must nest at most `max_depth` levels, so every encoder can carry it.

    Iterative, and cheap for the shallow payloads real-time messages are.
    """
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list | tuple):
            if depth > max_depth:
                raise ReplyError(
                    ErrorCode.BAD_REQUEST, f"{name}: nested deeper than {max_depth} levels"
                )
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


def _check(name: str, kind: Any, value: Any, max_depth: int) -> Any:
    if kind is Any:
        check_data(name, value, max_depth)
        return value
    if kind is bool:
        if type(value) is not bool:
            raise _bad(name, "a boolean")
    elif kind is int:
        if type(value) is not int or value < 0:
            raise _bad(name, "a non-negative integer")
    elif kind is str:
        if not isinstance(value, str):
            raise _bad(name, "a string")
    elif kind is StreamPosition:
        if not isinstance(value, dict):
            raise _bad(name, "a map with offset and epoch")
        return StreamPosition(
            _check(f"{name}.offset", int, value.get("offset", 0), max_depth),
            _check(f"{name}.epoch", str, value.get("epoch", ""), max_depth),
        )
    elif kind == dict[str, str]:
        strings = isinstance(value, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        )
        if not strings:
            raise _bad(name, "a map of strings")
    return value


@cache
def _schema(cls: Any) -> tuple[tuple[str, Any, bool], ...]:
    hints = get_type_hints(cls)
    out = []
    for f in fields(cls):
        kind = hints[f.name]
        optional = False
        if getattr(kind, "__args__", None) and type(None) in kind.__args__:
            kind = next(a for a in kind.__args__ if a is not type(None))
            optional = True
        out.append((f.name, kind, optional))
    return tuple(out)


def parse_request(cls: Any, params: Any, max_depth: int = DEFAULT_MAX_DATA_DEPTH) -> Any:
    """Build a request dataclass from command params; ReplyError(107) names the bad field.

    Unknown fields are ignored (SDKs send optional flags we may not act on); a
    field typed `int` must be a non-negative integer unless the class says otherwise;
    free-form (`Any`) fields may nest at most `max_depth` levels.
    """
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ReplyError(ErrorCode.BAD_REQUEST, "command params must be a map")
    kwargs = {}
    for name, kind, optional in _schema(cls):
        if name in params:
            value = params[name]
            if value is None and optional:
                continue
            kwargs[name] = _check(name, kind, value, max_depth)
    try:
        request = cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        missing = [n for n, _, _ in _schema(cls) if n not in kwargs]
        raise ReplyError(ErrorCode.BAD_REQUEST, f"missing field: {missing[0]}") from exc
    return request


@dataclass(slots=True)
class ConnectRequest:
    token: str = ""
    data: Any = None
    name: str = ""
    version: str = ""
    subs: Any = None


@dataclass(slots=True)
class SubscribeRequest:
    channel: str
    token: str = ""
    recover: bool = False
    epoch: str = ""
    offset: int = 0
    data: Any = None
    positioned: bool = False
    recoverable: bool = False
    join_leave: bool = False
    flag: int = 0


FLAG_REJECT_UNRECOVERED = 2
"""Subscribe flag: answer error 112 instead of `recovered: false`."""


@dataclass(slots=True)
class UnsubscribeRequest:
    channel: str


@dataclass(slots=True)
class PublishRequest:
    channel: str
    data: Any


@dataclass(slots=True)
class HistoryRequest:
    channel: str
    limit: Any = 0  # -1 asks for as many as the server allows
    since: StreamPosition | None = None
    reverse: bool = False

    def __post_init__(self) -> None:
        if type(self.limit) is not int or self.limit < -1:
            raise _bad("limit", "an integer >= -1")


@dataclass(slots=True)
class PresenceRequest:
    channel: str


@dataclass(slots=True)
class PresenceStatsRequest:
    channel: str


@dataclass(slots=True)
class RefreshRequest:
    token: str


@dataclass(slots=True)
class SubRefreshRequest:
    channel: str
    token: str


@dataclass(slots=True)
class RPCRequest:
    method: str = ""
    data: Any = None


@dataclass(slots=True)
class SendRequest:
    data: Any = None


def validate_channel(channel: str, max_length: int) -> None:
    """A channel name is 1..max_length bytes of printable, non-space characters."""
    if not channel:
        raise ReplyError(ErrorCode.BAD_REQUEST, "channel: must not be empty")
    if len(channel.encode("utf-8", "surrogatepass")) > max_length:
        raise ReplyError(ErrorCode.LIMIT_EXCEEDED, f"channel: longer than {max_length} bytes")
    if not channel.isprintable() or any(c.isspace() for c in channel):
        raise ReplyError(
            ErrorCode.BAD_REQUEST, "channel: whitespace and control characters not allowed"
        )


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
