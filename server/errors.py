"""Errors as values: a reply error answers one command, a disconnect ends the connection.

Both map to the Centrifugo client protocol's numeric codes in exactly one place
(this module), so handlers raise meaning and never invent numbers; so do the
WebSocket protocol's own close codes (`CloseCode`, RFC 6455 section 7.4).
Messages are generic on purpose: internal details never reach the peer.
"""

from __future__ import annotations

from enum import IntEnum
from http import HTTPStatus

__all__ = [
    "CONNECTION_CLOSED",
    "CUSTOM_DISCONNECT_CODES",
    "CUSTOM_ERROR_CODES",
    "HTTP_ERROR_CODES",
    "HTTP_MESSAGES",
    "NO_CLOSE_FRAME",
    "NO_RECONNECT_FROM",
    "RESUBSCRIBE_CODES",
    "CloseCode",
    "Disconnect",
    "DisconnectCode",
    "ErrorCode",
    "ReplyError",
    "UnsubscribeCode",
    "valid_close_code",
]


class ErrorCode(IntEnum):
    """Reply error codes (the client keeps its connection)."""

    INTERNAL = 100
    UNAUTHORIZED = 101
    UNKNOWN_CHANNEL = 102
    PERMISSION_DENIED = 103
    METHOD_NOT_FOUND = 104
    ALREADY_SUBSCRIBED = 105
    LIMIT_EXCEEDED = 106
    BAD_REQUEST = 107
    NOT_AVAILABLE = 108
    TOKEN_EXPIRED = 109
    EXPIRED = 110
    TOO_MANY_REQUESTS = 111
    UNRECOVERABLE_POSITION = 112


_ERROR_MESSAGES: dict[int, str] = {
    ErrorCode.INTERNAL: "internal server error",
    ErrorCode.UNAUTHORIZED: "unauthorized",
    ErrorCode.UNKNOWN_CHANNEL: "unknown channel",
    ErrorCode.PERMISSION_DENIED: "permission denied",
    ErrorCode.METHOD_NOT_FOUND: "method not found",
    ErrorCode.ALREADY_SUBSCRIBED: "already subscribed",
    ErrorCode.LIMIT_EXCEEDED: "limit exceeded",
    ErrorCode.BAD_REQUEST: "bad request",
    ErrorCode.NOT_AVAILABLE: "not available",
    ErrorCode.TOKEN_EXPIRED: "token expired",
    ErrorCode.EXPIRED: "expired",
    ErrorCode.TOO_MANY_REQUESTS: "too many requests",
    ErrorCode.UNRECOVERABLE_POSITION: "unrecoverable position",
}

# Errors the client may retry: the SDKs resubscribe or reconnect on these.
_TEMPORARY = {ErrorCode.INTERNAL, ErrorCode.TOO_MANY_REQUESTS}


CUSTOM_ERROR_CODES = range(400, 2000)
"""Reply error codes an application may choose (a hook, a proxy backend), passed
to the client unchanged; Centrifugo keeps 400-1999 for them."""


class ReplyError(Exception):
    """An error reply to one command: `{"id": N, "error": {"code", "message"}}`.

    `code` is an `ErrorCode`, or any other code in `CUSTOM_ERROR_CODES` (kept as
    a plain int); anything else raises ValueError. `message` defaults to the
    protocol's wording for the code; a more precise message may name what was
    wrong with the request, never server internals.
    """

    def __init__(
        self, code: ErrorCode | int, message: str | None = None, temporary: bool | None = None
    ):
        self.code: ErrorCode | int
        if code in ErrorCode._value2member_map_:
            self.code = ErrorCode(code)
        elif code in CUSTOM_ERROR_CODES:
            self.code = int(code)
        else:
            raise ValueError(f"{code!r} is not a reply error code")
        self.message = message or _ERROR_MESSAGES.get(self.code, "error")
        self.temporary = self.code in _TEMPORARY if temporary is None else temporary
        super().__init__(f"{int(self.code)}: {self.message}")

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"code": int(self.code), "message": self.message}
        if self.temporary:
            out["temporary"] = True
        return out


class DisconnectCode(IntEnum):
    """Close codes: 3000-3499 the SDKs reconnect, 3500-3999 they do not."""

    SHUTDOWN = 3001
    INTERNAL = 3004
    EXPIRED = 3005
    SLOW = 3008
    INSUFFICIENT_STATE = 3010
    FORCE_RECONNECT = 3011
    NO_PONG = 3012
    TOO_MANY_REQUESTS = 3013
    INVALID_TOKEN = 3500
    BAD_REQUEST = 3501
    STALE = 3502
    FORCE_DISCONNECT = 3503
    CONNECTION_LIMIT = 3504
    CHANNEL_LIMIT = 3505
    PERMISSION_DENIED = 3507
    MESSAGE_TOO_BIG = 1009


_DISCONNECT_REASONS: dict[int, str] = {
    DisconnectCode.SHUTDOWN: "shutdown",
    DisconnectCode.INTERNAL: "internal server error",
    DisconnectCode.EXPIRED: "connection expired",
    DisconnectCode.SLOW: "slow",
    DisconnectCode.INSUFFICIENT_STATE: "insufficient state",
    DisconnectCode.FORCE_RECONNECT: "force reconnect",
    DisconnectCode.NO_PONG: "no pong",
    DisconnectCode.TOO_MANY_REQUESTS: "too many requests",
    DisconnectCode.INVALID_TOKEN: "invalid token",
    DisconnectCode.BAD_REQUEST: "bad request",
    DisconnectCode.STALE: "stale",
    DisconnectCode.FORCE_DISCONNECT: "force disconnect",
    DisconnectCode.CONNECTION_LIMIT: "connection limit",
    DisconnectCode.CHANNEL_LIMIT: "channel limit",
    DisconnectCode.PERMISSION_DENIED: "permission denied",
    DisconnectCode.MESSAGE_TOO_BIG: "message too big",
}


class CloseCode(IntEnum):
    """RFC 6455's own close codes (section 7.4.1 and the IANA registry): what the
    WebSocket layer closes with when the peer breaks the protocol or a frame limit.
    The application's codes (3000-4999) are `DisconnectCode`."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    INVALID_DATA = 1007  # e.g. a text message that is not UTF-8
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = DisconnectCode.MESSAGE_TOO_BIG.value  # past max_frame_bytes / max_fragments
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014


class UnsubscribeCode(IntEnum):
    """Codes of the unsubscribe push: below 2500 the client stays unsubscribed;
    from 2500 the SDKs resubscribe (recovering where they can)."""

    SERVER = 2000  # the server ended the subscription
    INSUFFICIENT_STATE = 2500  # the server lost track of the stream: resubscribe
    EXPIRED = 2501  # the subscription token expired unrefreshed: resubscribe with a new one


HTTP_ERROR_CODES: dict[int, ErrorCode] = {
    HTTPStatus.BAD_REQUEST: ErrorCode.BAD_REQUEST,
    HTTPStatus.UNAUTHORIZED: ErrorCode.UNAUTHORIZED,
    HTTPStatus.FORBIDDEN: ErrorCode.PERMISSION_DENIED,
    HTTPStatus.NOT_FOUND: ErrorCode.METHOD_NOT_FOUND,
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: ErrorCode.LIMIT_EXCEEDED,
    HTTPStatus.SERVICE_UNAVAILABLE: ErrorCode.INTERNAL,
}
"""The error code the server API's body carries with each HTTP status it answers."""

HTTP_MESSAGES: dict[int, str] = {
    HTTPStatus.BAD_REQUEST: "bad request",
    HTTPStatus.UNAUTHORIZED: "unauthorized: missing or wrong API key",
    HTTPStatus.NOT_FOUND: "method not found",
    HTTPStatus.METHOD_NOT_ALLOWED: "method not allowed: use POST",
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: "request body too large",
    HTTPStatus.INTERNAL_SERVER_ERROR: "internal server error",
    HTTPStatus.SERVICE_UNAVAILABLE: "API key store unavailable",
}
"""The server API's default message for each HTTP status."""


def valid_close_code(code: int) -> bool:
    """Whether a peer may send `code` in a close frame: one of `CloseCode`, or an
    application code (3000-4999). 1005, 1006 and 1015 stand for "no code" or a
    TLS failure and must never be sent; the rest below 3000 are unassigned."""
    return code in CloseCode._value2member_map_ or 3000 <= code < 5000


CUSTOM_DISCONNECT_CODES = range(3000, 5000)
"""Codes an application may choose (the server API's disconnect): the SDKs reconnect
after 3000-3499 and 4000-4499, not after 3500-3999 and 4500-4999."""

CONNECTION_CLOSED = 3000
"""What a `disconnected` hook is told when the client went away (Centrifugo's
"connection closed"); never sent, there being no one to send it to."""


NO_CLOSE_FRAME = 1006
"""The close code a WebSocket client reports when the connection ended without a
close frame (RFC 6455 section 7.1.5). Never sent, so not a `CloseCode`."""

NO_RECONNECT_FROM = DisconnectCode.INVALID_TOKEN.value
"""3500: the SDKs do not reconnect after a close code from here to 3999 (nor from
4500 to 4999); the load tester reconnects only below it."""

RESUBSCRIBE_CODES = range(UnsubscribeCode.INSUFFICIENT_STATE.value, 3000)
"""Unsubscribe push codes after which the SDKs resubscribe (see `UnsubscribeCode`)."""


class Disconnect(Exception):
    """Ends the connection with a close frame carrying `code` and `reason`.

    `code` is a `DisconnectCode`, or any other code in `CUSTOM_DISCONNECT_CODES`
    (kept as a plain int); anything else raises ValueError.
    """

    def __init__(self, code: DisconnectCode | int, reason: str | None = None):
        self.code: DisconnectCode | int
        if code in DisconnectCode._value2member_map_:
            self.code = DisconnectCode(code)
        elif code in CUSTOM_DISCONNECT_CODES:
            self.code = int(code)
        else:
            raise ValueError(f"{code!r} is not a disconnect code")
        self.reason = reason or _DISCONNECT_REASONS.get(self.code, "disconnect")
        super().__init__(f"{int(self.code)}: {self.reason}")

    @property
    def reconnect(self) -> bool:
        """Whether the official SDKs will reconnect after this close code."""
        return 3000 <= self.code < 3500 or 4000 <= self.code < 4500
