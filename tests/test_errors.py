"""Errors as values (server/errors.py): reply errors and disconnects, and their wire shape."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from wsfan.errors import (
    CUSTOM_ERROR_CODES,
    NO_CLOSE_FRAME,
    NO_RECONNECT_FROM,
    RESUBSCRIBE_CODES,
    Disconnect,
    DisconnectCode,
    ErrorCode,
    ReplyError,
    UnsubscribeCode,
    valid_close_code,
)

# ---------------------------------------------------------------------------
# Reply errors


def test_error_codes_are_the_protocols_numbers() -> None:
    assert {c.name: int(c) for c in ErrorCode} == {
        "INTERNAL": 100,
        "UNAUTHORIZED": 101,
        "UNKNOWN_CHANNEL": 102,
        "PERMISSION_DENIED": 103,
        "METHOD_NOT_FOUND": 104,
        "ALREADY_SUBSCRIBED": 105,
        "LIMIT_EXCEEDED": 106,
        "BAD_REQUEST": 107,
        "NOT_AVAILABLE": 108,
        "TOKEN_EXPIRED": 109,
        "EXPIRED": 110,
        "TOO_MANY_REQUESTS": 111,
        "UNRECOVERABLE_POSITION": 112,
    }


@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda c: c.name)
def test_every_error_code_has_a_default_message(code: ErrorCode) -> None:
    assert ReplyError(code).message


def test_error_messages_are_distinct() -> None:
    messages = [ReplyError(code).message for code in ErrorCode]
    assert len(set(messages)) == len(messages)


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (ErrorCode.INTERNAL, "internal server error"),
        (ErrorCode.UNAUTHORIZED, "unauthorized"),
        (ErrorCode.UNKNOWN_CHANNEL, "unknown channel"),
        (ErrorCode.PERMISSION_DENIED, "permission denied"),
        (ErrorCode.METHOD_NOT_FOUND, "method not found"),
        (ErrorCode.ALREADY_SUBSCRIBED, "already subscribed"),
        (ErrorCode.LIMIT_EXCEEDED, "limit exceeded"),
        (ErrorCode.BAD_REQUEST, "bad request"),
        (ErrorCode.NOT_AVAILABLE, "not available"),
        (ErrorCode.TOKEN_EXPIRED, "token expired"),
        (ErrorCode.EXPIRED, "expired"),
        (ErrorCode.TOO_MANY_REQUESTS, "too many requests"),
        (ErrorCode.UNRECOVERABLE_POSITION, "unrecoverable position"),
    ],
    ids=lambda v: v.name if isinstance(v, ErrorCode) else None,
)
def test_default_message_is_the_centrifugo_wording(code: ErrorCode, message: str) -> None:
    assert ReplyError(code).message == message


def test_reply_error_accepts_a_plain_integer_code() -> None:
    error = ReplyError(103)  # type: ignore[arg-type]
    assert error.code is ErrorCode.PERMISSION_DENIED


@pytest.mark.parametrize("code", [CUSTOM_ERROR_CODES.start, 1000, CUSTOM_ERROR_CODES.stop - 1])
def test_an_application_error_code_is_kept_as_it_is(code: int) -> None:
    error = ReplyError(code, "not today")
    assert type(error.code) is int and error.code == code
    assert error.to_dict() == {"code": code, "message": "not today"}


@pytest.mark.parametrize(
    "code", [0, 99, 113, CUSTOM_ERROR_CODES.start - 1, CUSTOM_ERROR_CODES.stop]
)
def test_a_code_that_is_neither_the_protocols_nor_an_applications_is_refused(code: int) -> None:
    with pytest.raises(ValueError, match="not a reply error code"):
        ReplyError(code)


def test_reply_error_with_an_unknown_code_raises_value_error() -> None:
    with pytest.raises(ValueError):
        ReplyError(199)  # type: ignore[arg-type]


@pytest.mark.parametrize("code", [ErrorCode.INTERNAL, ErrorCode.TOO_MANY_REQUESTS])
def test_internal_and_too_many_requests_are_temporary(code: ErrorCode) -> None:
    assert ReplyError(code).temporary is True


@pytest.mark.parametrize(
    "code",
    [c for c in ErrorCode if c not in (ErrorCode.INTERNAL, ErrorCode.TOO_MANY_REQUESTS)],
    ids=lambda c: c.name,
)
def test_other_errors_are_not_temporary(code: ErrorCode) -> None:
    assert ReplyError(code).temporary is False


def test_temporary_flag_can_be_set_explicitly() -> None:
    assert ReplyError(ErrorCode.NOT_AVAILABLE, temporary=True).temporary is True
    assert ReplyError(ErrorCode.INTERNAL, temporary=False).temporary is False


def test_a_precise_message_replaces_the_default() -> None:
    error = ReplyError(ErrorCode.BAD_REQUEST, "channel: expected a string")
    assert error.message == "channel: expected a string"
    assert error.code is ErrorCode.BAD_REQUEST


def test_to_dict_is_code_and_message() -> None:
    assert ReplyError(ErrorCode.PERMISSION_DENIED).to_dict() == {
        "code": 103,
        "message": "permission denied",
    }


def test_to_dict_of_a_temporary_error_adds_temporary_true() -> None:
    assert ReplyError(ErrorCode.TOO_MANY_REQUESTS).to_dict() == {
        "code": 111,
        "message": "too many requests",
        "temporary": True,
    }


def test_to_dict_code_is_a_plain_integer() -> None:
    code = ReplyError(ErrorCode.BAD_REQUEST).to_dict()["code"]
    assert type(code) is int


def test_reply_error_text_is_code_and_message() -> None:
    assert str(ReplyError(ErrorCode.UNKNOWN_CHANNEL)) == "102: unknown channel"


# ---------------------------------------------------------------------------
# Disconnects


def test_disconnect_codes_are_the_protocols_numbers() -> None:
    assert {c.name: int(c) for c in DisconnectCode} == {
        "SHUTDOWN": 3001,
        "INTERNAL": 3004,
        "EXPIRED": 3005,
        "SLOW": 3008,
        "INSUFFICIENT_STATE": 3010,
        "FORCE_RECONNECT": 3011,
        "NO_PONG": 3012,
        "TOO_MANY_REQUESTS": 3013,
        "INVALID_TOKEN": 3500,
        "BAD_REQUEST": 3501,
        "STALE": 3502,
        "FORCE_DISCONNECT": 3503,
        "CONNECTION_LIMIT": 3504,
        "CHANNEL_LIMIT": 3505,
        "PERMISSION_DENIED": 3507,
        "MESSAGE_TOO_BIG": 1009,
    }


@pytest.mark.parametrize("code", list(DisconnectCode), ids=lambda c: c.name)
def test_every_disconnect_code_has_a_reason_that_fits_a_close_frame(code: DisconnectCode) -> None:
    reason = Disconnect(code).reason
    assert reason
    assert len(reason.encode("utf-8")) <= 123  # a close frame's payload is at most 125 bytes


@pytest.mark.parametrize(
    "code", [c for c in DisconnectCode if 3000 <= c < 3500], ids=lambda c: c.name
)
def test_disconnect_below_3500_tells_the_client_to_reconnect(code: DisconnectCode) -> None:
    assert Disconnect(code).reconnect is True


@pytest.mark.parametrize(
    "code", [c for c in DisconnectCode if 3500 <= c < 4000], ids=lambda c: c.name
)
def test_disconnect_from_3500_tells_the_client_not_to_reconnect(code: DisconnectCode) -> None:
    assert Disconnect(code).reconnect is False


def test_message_too_big_close_is_not_followed_by_a_reconnect() -> None:
    # centrifuge-js maps close 1009 to disconnected state "message size limit exceeded"
    # with needReconnect = false; `reconnect` promises to say what the SDKs will do.
    assert Disconnect(DisconnectCode.MESSAGE_TOO_BIG).reconnect is False


def test_disconnect_accepts_a_custom_reason() -> None:
    disconnect = Disconnect(DisconnectCode.BAD_REQUEST, "already connected")
    assert disconnect.reason == "already connected"
    assert disconnect.code is DisconnectCode.BAD_REQUEST


def test_disconnect_accepts_a_plain_integer_code() -> None:
    assert Disconnect(3012).code is DisconnectCode.NO_PONG  # type: ignore[arg-type]


def test_disconnect_text_is_code_and_reason() -> None:
    assert str(Disconnect(DisconnectCode.SHUTDOWN)) == "3001: shutdown"


@pytest.mark.parametrize(
    ("code", "reconnect"), [(3000, True), (4000, True), (4499, True), (4500, False), (4999, False)]
)
def test_disconnect_takes_application_codes_from_3000_to_4999(code: int, reconnect: bool) -> None:
    disconnect = Disconnect(code, "custom")
    assert disconnect.code == code and type(disconnect.code) is int
    assert disconnect.reconnect is reconnect


def test_an_application_disconnect_code_without_reason_says_disconnect() -> None:
    assert Disconnect(4321).reason == "disconnect"


@pytest.mark.parametrize("code", [0, 1000, 2999, 5000])
def test_disconnect_codes_outside_the_known_and_application_ones_raise(code: int) -> None:
    with pytest.raises(ValueError):
        Disconnect(code)


def test_unsubscribe_codes_below_2500_keep_the_client_out_and_above_let_it_resubscribe() -> None:
    from wsfan.errors import UnsubscribeCode

    assert UnsubscribeCode.SERVER == 2000 < 2500
    assert UnsubscribeCode.INSUFFICIENT_STATE == 2500
    assert UnsubscribeCode.EXPIRED == 2501


def test_every_http_status_the_api_answers_has_an_error_code() -> None:
    from wsfan.errors import HTTP_ERROR_CODES, ErrorCode

    assert HTTP_ERROR_CODES[401] is ErrorCode.UNAUTHORIZED
    assert HTTP_ERROR_CODES[503] is ErrorCode.INTERNAL
    assert all(isinstance(code, ErrorCode) for code in HTTP_ERROR_CODES.values())


# ---------------------------------------------------------------------------
# One table of codes

SERVER = Path(__file__).resolve().parent.parent / "server"
CODE_TAKERS = frozenset(
    {"Disconnect", "ReplyError", "FrameError", "close", "close_frame", "_fail", "closed"}
)
"""Callables whose arguments are reply, close or disconnect codes."""


def _is_code(value: object) -> bool:
    """Whether `value` looks like a reply (100-112), RFC 6455 close (1000-1015),
    unsubscribe (2000-2999) or disconnect (3000-4999) code."""
    if not isinstance(value, int) or isinstance(value, bool):
        return False
    return 100 <= value <= 112 or 1000 <= value <= 1015 or 2000 <= value < 5000


def _literal_codes(source: str) -> list[tuple[int, str, int]]:
    """(line, callee, value) of each int literal that looks like a code and is passed
    to one of CODE_TAKERS, or to any callable as `code=`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        args = list(node.args) if name in CODE_TAKERS else []
        args += [k.value for k in node.keywords if k.arg == "code" or name in CODE_TAKERS]
        found += [
            (arg.lineno, name, arg.value)
            for arg in args
            if isinstance(arg, ast.Constant) and _is_code(arg.value)
        ]
    return found


@pytest.mark.parametrize(
    "source",
    [
        "self._fail(1011, 'internal error')",
        "raise FrameError(1002, 'reserved bits set')",
        "raise Disconnect(3504)",
        "transport.write(close_frame(1000))",
        "push(code=2500)",
    ],
)
def test_the_scan_finds_a_literal_code(source: str) -> None:
    assert _literal_codes(source)


def test_the_scan_leaves_named_codes_and_other_numbers_alone() -> None:
    source = "self._fail(CloseCode.INTERNAL_ERROR, 'x')\nfield(default=1000)\nsleep(3600)"
    assert _literal_codes(source) == []


def test_no_module_but_errors_passes_a_literal_code() -> None:
    stray = {
        f"{path.relative_to(SERVER.parent)}:{line} {name}({value})"
        for path in SERVER.rglob("*.py")
        if path.name != "errors.py" or path.parent != SERVER
        for line, name, value in _literal_codes(path.read_text())
    }
    assert not stray, "use the names in server/errors.py"


def test_the_load_testers_code_ranges_are_the_protocols() -> None:
    assert NO_CLOSE_FRAME == 1006 and not valid_close_code(NO_CLOSE_FRAME)
    assert NO_RECONNECT_FROM == 3500 and not Disconnect(NO_RECONNECT_FROM).reconnect
    assert Disconnect(NO_RECONNECT_FROM - 1).reconnect
    assert (RESUBSCRIBE_CODES.start, RESUBSCRIBE_CODES.stop) == (2500, 3000)
    assert UnsubscribeCode.SERVER not in RESUBSCRIBE_CODES
    assert UnsubscribeCode.INSUFFICIENT_STATE in RESUBSCRIBE_CODES
