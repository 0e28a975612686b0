"""Commands: the envelope of each client message, and the typed requests its
method's arguments are parsed into (bounded in depth, every field checked).

`parse_command` raises `ProtocolError` for a malformed command envelope; a
well-formed command with an unknown method comes back with `method` unknown
for the caller to answer 104; bad method arguments raise `ReplyError(107)`
from `parse_request`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cache
from typing import Any, get_type_hints

from ..errors import ErrorCode, ReplyError
from .values import ProtocolError, StreamPosition

__all__ = [
    "DEFAULT_MAX_DATA_DEPTH",
    "FLAG_REJECT_UNRECOVERED",
    "MAX_COMMAND_ID",
    "METHODS",
    "Command",
    "ConnectRequest",
    "HistoryRequest",
    "PresenceRequest",
    "PresenceStatsRequest",
    "PublishRequest",
    "RPCRequest",
    "RefreshRequest",
    "SendRequest",
    "SubRefreshRequest",
    "SubscribeRequest",
    "UnsubscribeRequest",
    "check_data",
    "parse_command",
    "parse_request",
    "validate_channel",
]

MAX_COMMAND_ID = 2**32 - 1

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
