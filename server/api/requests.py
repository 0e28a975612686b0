"""Bodies of the server API's methods: parsed and validated, no I/O.

Field names and meanings follow Centrifugo's server API (what the `cent`
library sends). `parse(cls, params, limits)` returns the method's request or
raises `ReplyError(107)` whose message names the field at fault; unknown
fields are ignored (newer clients send options this server does not act on).

Besides each field's type, every field but the free-form ones (`data`, `info`,
`override`) must hold what Redis, msgpack and the SDKs can carry: integers up
to MAX_INTEGER, and strings that are valid UTF-8 (JSON escapes can make lone
surrogates, which are not). Free-form values are carried whatever they hold
(see protocol.encode).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, fields
from typing import Any

from ..errors import CUSTOM_DISCONNECT_CODES, DisconnectCode, ErrorCode, ReplyError
from ..protocol import HistoryRequest, StreamPosition, parse_request
from .pattern import compile_pattern

__all__ = [
    "MAX_INTEGER",
    "MAX_REASON_BYTES",
    "BatchRequest",
    "BroadcastRequest",
    "ChannelRequest",
    "ChannelsRequest",
    "DisconnectRequest",
    "HistoryRequest",
    "Limits",
    "PublishRequest",
    "RefreshRequest",
    "StateRequest",
    "SubscribeRequest",
    "UnsubscribeRequest",
    "bad_request",
    "parse",
]

MAX_REASON_BYTES = 123
"""A close frame's reason must fit in 123 bytes."""
MAX_INTEGER = 2**63 - 1
"""The largest integer a request field may hold: a signed 64-bit one."""
_FREE_FORM = frozenset({"data", "info", "override", "commands"})  # checked elsewhere


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
"""Default of `data`: tells an absent field from an explicit null."""


@dataclass(frozen=True, slots=True)
class Limits:
    """The settings requests are checked against."""

    max_data_depth: int = 64
    max_broadcast_channels: int = 1000
    max_batch_commands: int = 1000


def bad_request(name: str, problem: str) -> ReplyError:
    return ReplyError(ErrorCode.BAD_REQUEST, f"{name}: {problem}")


def _strings(name: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_request(name, "expected a list of strings")
    return value


def _b64(name: str, value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request(name, "expected base64") from None


def _payload(data: Any, b64data: str) -> Any:
    """`b64data` (binary) wins over `data`; one of them is required."""
    if b64data:
        return _b64("b64data", b64data)
    if data is MISSING:
        raise bad_request("data", "missing field")
    return data


def _user(user: str, client: str) -> None:
    """A user is required, except that `client` alone may name an anonymous connection."""
    if not user and not client:
        raise bad_request("user", "must not be empty (or name a client)")


@dataclass(slots=True)
class ChannelRequest:
    """presence, presence_stats, history_remove."""

    channel: str


@dataclass(slots=True)
class StateRequest:
    """state_set (our extension): a retained channel's explicit state; publish adds to it."""

    channel: str
    data: Any = MISSING
    b64data: str = ""

    def __post_init__(self) -> None:
        self.data = _payload(self.data, self.b64data)


@dataclass(slots=True)
class PublishRequest(StateRequest):
    skip_history: bool = False
    tags: dict[str, str] | None = None
    idempotency_key: str = ""


@dataclass(slots=True)
class BroadcastRequest:
    channels: Any
    data: Any = MISSING
    b64data: str = ""
    skip_history: bool = False
    tags: dict[str, str] | None = None
    idempotency_key: str = ""

    def __post_init__(self) -> None:
        self.channels = _strings("channels", self.channels)
        if not self.channels:
            raise bad_request("channels", "must not be empty")
        self.data = _payload(self.data, self.b64data)


@dataclass(slots=True)
class SubscribeRequest:
    user: str
    channel: str
    client: str = ""
    session: str = ""  # accepted; a connection here has no separate session id
    info: Any = None
    b64info: str = ""
    data: Any = None
    b64data: str = ""
    recover_since: StreamPosition | None = None
    override: Any = None  # accepted, not acted on: channel options come from config

    def __post_init__(self) -> None:
        _user(self.user, self.client)
        if self.b64info:
            self.info = _b64("b64info", self.b64info)
        if self.b64data:
            self.data = _b64("b64data", self.b64data)


@dataclass(slots=True)
class UnsubscribeRequest:
    user: str
    channel: str
    client: str = ""
    session: str = ""

    def __post_init__(self) -> None:
        _user(self.user, self.client)


@dataclass(slots=True)
class DisconnectRequest:
    """After parsing, `disconnect` is always `{"code": int, "reason": str}`."""

    user: str
    client: str = ""
    session: str = ""
    whitelist: Any = None
    disconnect: Any = None

    def __post_init__(self) -> None:
        _user(self.user, self.client)
        self.whitelist = [] if self.whitelist is None else _strings("whitelist", self.whitelist)
        if self.disconnect is None:
            self.disconnect = {
                "code": int(DisconnectCode.FORCE_DISCONNECT),
                "reason": "force disconnect",
            }
            return
        if not isinstance(self.disconnect, dict):
            raise bad_request("disconnect", "expected a map with code and reason")
        code = self.disconnect.get("code")
        if type(code) is not int or code not in CUSTOM_DISCONNECT_CODES:
            codes = CUSTOM_DISCONNECT_CODES
            expected = f"expected an integer from {codes.start} to {codes.stop - 1}"
            raise bad_request("disconnect.code", expected)
        reason = self.disconnect.get("reason", "")
        if not isinstance(reason, str):
            raise bad_request("disconnect.reason", "expected a string")
        if len(reason.encode("utf-8", "surrogatepass")) > MAX_REASON_BYTES:
            raise bad_request("disconnect.reason", f"longer than {MAX_REASON_BYTES} bytes")
        self.disconnect = {"code": code, "reason": reason or "disconnect"}


@dataclass(slots=True)
class RefreshRequest:
    user: str
    client: str = ""
    session: str = ""
    expired: bool = False
    expire_at: int = 0  # Unix seconds; 0: the connection does not expire

    def __post_init__(self) -> None:
        _user(self.user, self.client)


@dataclass(slots=True)
class ChannelsRequest:
    pattern: str = ""

    def __post_init__(self) -> None:
        if self.pattern:
            try:
                compile_pattern(self.pattern)
            except ValueError as exc:
                raise bad_request("pattern", str(exc)) from None


@dataclass(slots=True)
class BatchRequest:
    commands: Any
    parallel: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.commands, list):
            raise bad_request("commands", "expected a list of commands")


def _check_portable(name: str, value: Any) -> None:
    """ReplyError(107) when `value` holds an integer or a string that cannot travel."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise bad_request(name, "not valid UTF-8 (a lone surrogate)") from None
    elif isinstance(value, int) and not isinstance(value, bool):
        if value > MAX_INTEGER:
            raise bad_request(name, f"larger than {MAX_INTEGER}")
    elif isinstance(value, StreamPosition):
        _check_portable(f"{name}.offset", value.offset)
        _check_portable(f"{name}.epoch", value.epoch)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_portable(f"{name}[{i}]", item)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_portable(f"{name} key", key)
            _check_portable(f"{name}.{key}", item)


def parse(cls: type[Any], params: Any, limits: Limits) -> Any:
    """The request `cls` from a method's body; ReplyError(107) names the bad field."""
    request = parse_request(cls, params, limits.max_data_depth)
    for field in fields(request):
        if field.name not in _FREE_FORM:
            _check_portable(field.name, getattr(request, field.name))
    if isinstance(request, BroadcastRequest) and (
        len(request.channels) > limits.max_broadcast_channels
    ):
        raise ReplyError(
            ErrorCode.LIMIT_EXCEEDED,
            f"channels: more than {limits.max_broadcast_channels} in one broadcast",
        )
    if isinstance(request, BatchRequest) and len(request.commands) > limits.max_batch_commands:
        raise ReplyError(
            ErrorCode.LIMIT_EXCEEDED,
            f"commands: more than {limits.max_batch_commands} in one batch",
        )
    return request
