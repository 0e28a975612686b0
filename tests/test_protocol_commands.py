"""Command envelopes and typed requests (server/protocol/commands.py)."""

from __future__ import annotations

from typing import Any

import pytest
from wsfan.errors import ErrorCode, ReplyError
from wsfan.protocol import (
    METHODS,
    Command,
    ConnectRequest,
    Encoding,
    HistoryRequest,
    PresenceRequest,
    PresenceStatsRequest,
    ProtocolError,
    PublishRequest,
    RefreshRequest,
    RPCRequest,
    SendRequest,
    StreamPosition,
    SubRefreshRequest,
    SubscribeRequest,
    UnsubscribeRequest,
    parse_command,
    parse_request,
    validate_channel,
)

JSON = Encoding.JSON
MSGPACK = Encoding.MSGPACK


# ---------------------------------------------------------------------------
# parse_command


def test_empty_map_is_a_pong() -> None:
    assert parse_command({}) == Command(0, "", None)


def test_command_carries_id_method_and_params() -> None:
    assert parse_command({"id": 1, "subscribe": {"channel": "a"}}) == Command(
        1, "subscribe", {"channel": "a"}
    )


@pytest.mark.parametrize("method", METHODS)
def test_every_known_method_is_recognised(method: str) -> None:
    assert parse_command({"id": 9, method: {}}).method == method


def test_send_without_id_is_accepted() -> None:
    assert parse_command({"send": {"data": "x"}}) == Command(0, "send", {"data": "x"})


@pytest.mark.parametrize("method", [m for m in METHODS if m != "send"])
def test_command_without_id_raises_protocol_error(method: str) -> None:
    with pytest.raises(ProtocolError):
        parse_command({method: {}})


def test_command_with_id_zero_raises_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        parse_command({"id": 0, "connect": {}})


def test_command_with_an_id_but_no_method_is_not_a_pong() -> None:
    # It keeps its id, so the session answers it (104, method not found).
    assert parse_command({"id": 5}) == Command(5, "", None)


@pytest.mark.parametrize(
    "cmd_id",
    [-1, 1.0, 1.5, "1", True, False, None, [1], 2**32],
    ids=["negative", "float", "fraction", "string", "true", "false", "null", "list", "2**32"],
)
def test_bad_command_id_raises_protocol_error(cmd_id: Any) -> None:
    with pytest.raises(ProtocolError):
        parse_command({"id": cmd_id, "connect": {}})


def test_largest_command_id_is_two_to_the_32_minus_one() -> None:
    assert parse_command({"id": 2**32 - 1, "connect": {}}).id == 2**32 - 1


@pytest.mark.parametrize("message", [[], [{"id": 1}], "connect", 1, None, b"{}"])
def test_command_that_is_not_a_map_raises_protocol_error(message: Any) -> None:
    with pytest.raises(ProtocolError):
        parse_command(message)


def test_unknown_method_comes_back_as_the_method_name() -> None:
    assert parse_command({"id": 4, "frobnicate": {"x": 1}}) == Command(4, "frobnicate", {"x": 1})


def test_command_params_that_are_not_a_map_raise_reply_error_107() -> None:
    command = parse_command({"id": 2, "subscribe": ["a"]})
    with pytest.raises(ReplyError) as info:
        parse_request(SubscribeRequest, command.params)
    assert info.value.code == ErrorCode.BAD_REQUEST


# ---------------------------------------------------------------------------
# parse_request


@pytest.mark.parametrize(
    ("cls", "params", "field"),
    [
        (SubscribeRequest, {}, "channel"),
        (UnsubscribeRequest, {}, "channel"),
        (PublishRequest, {"data": 1}, "channel"),
        (PublishRequest, {"channel": "a"}, "data"),
        (HistoryRequest, {"limit": 3}, "channel"),
        (PresenceRequest, {}, "channel"),
        (PresenceStatsRequest, {}, "channel"),
        (RefreshRequest, {}, "token"),
        (SubRefreshRequest, {"token": "t"}, "channel"),
        (SubRefreshRequest, {"channel": "a"}, "token"),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_missing_required_field_raises_107_naming_it(cls: Any, params: Any, field: str) -> None:
    with pytest.raises(ReplyError) as info:
        parse_request(cls, params)
    assert info.value.code == ErrorCode.BAD_REQUEST
    assert field in info.value.message


@pytest.mark.parametrize(
    ("cls", "params", "field"),
    [
        (ConnectRequest, {"token": 5}, "token"),
        (ConnectRequest, {"name": ["js"]}, "name"),
        (SubscribeRequest, {"channel": 1}, "channel"),
        (SubscribeRequest, {"channel": None}, "channel"),
        (SubscribeRequest, {"channel": "a", "recover": "yes"}, "recover"),
        (SubscribeRequest, {"channel": "a", "recover": 1}, "recover"),
        (SubscribeRequest, {"channel": "a", "offset": -1}, "offset"),
        (SubscribeRequest, {"channel": "a", "offset": 1.5}, "offset"),
        (SubscribeRequest, {"channel": "a", "offset": True}, "offset"),
        (SubscribeRequest, {"channel": "a", "offset": "12"}, "offset"),
        (SubscribeRequest, {"channel": "a", "epoch": 12}, "epoch"),
        (SubscribeRequest, {"channel": "a", "flag": -2}, "flag"),
        (UnsubscribeRequest, {"channel": {}}, "channel"),
        (PublishRequest, {"channel": 7, "data": {}}, "channel"),
        (HistoryRequest, {"channel": "a", "reverse": "true"}, "reverse"),
        (HistoryRequest, {"channel": "a", "since": "5"}, "since"),
        (HistoryRequest, {"channel": "a", "since": {"offset": "5", "epoch": "e"}}, "since.offset"),
        (HistoryRequest, {"channel": "a", "since": {"offset": -5, "epoch": "e"}}, "since.offset"),
        (HistoryRequest, {"channel": "a", "since": {"offset": 5, "epoch": 1}}, "since.epoch"),
        (HistoryRequest, {"channel": "a", "limit": "10"}, "limit"),
        (HistoryRequest, {"channel": "a", "limit": 1.0}, "limit"),
        (HistoryRequest, {"channel": "a", "limit": True}, "limit"),
        (RefreshRequest, {"token": None}, "token"),
        (SubRefreshRequest, {"channel": "a", "token": 1}, "token"),
        (RPCRequest, {"method": 1}, "method"),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_field_of_wrong_type_raises_107_naming_it(cls: Any, params: Any, field: str) -> None:
    with pytest.raises(ReplyError) as info:
        parse_request(cls, params)
    assert info.value.code == ErrorCode.BAD_REQUEST
    assert info.value.message.startswith(f"{field}:")


@pytest.mark.parametrize("cls", [ConnectRequest, RPCRequest, SendRequest])
def test_request_without_required_fields_accepts_missing_params(cls: Any) -> None:
    assert parse_request(cls, None) == cls()
    assert parse_request(cls, {}) == cls()


def test_connect_request_takes_every_field() -> None:
    params = {"token": "t", "data": {"a": 1}, "name": "js", "version": "5.0", "subs": {"x": {}}}
    assert parse_request(ConnectRequest, params) == ConnectRequest(
        token="t", data={"a": 1}, name="js", version="5.0", subs={"x": {}}
    )


def test_subscribe_request_takes_every_field() -> None:
    params: dict[str, Any] = {
        "channel": "chat:1",
        "token": "t",
        "recover": True,
        "epoch": "ab",
        "offset": 12,
        "data": [1],
        "positioned": True,
        "recoverable": True,
        "join_leave": True,
        "flag": 2,
    }
    assert parse_request(SubscribeRequest, params) == SubscribeRequest(**params)


def test_publish_request_accepts_any_data_including_null() -> None:
    assert parse_request(PublishRequest, {"channel": "a", "data": None}).data is None
    assert parse_request(PublishRequest, {"channel": "a", "data": b"\x00"}).data == b"\x00"


def test_rpc_and_send_requests_carry_their_data() -> None:
    assert parse_request(RPCRequest, {"method": "sum", "data": [1, 2]}) == RPCRequest("sum", [1, 2])
    assert parse_request(SendRequest, {"data": "hi"}) == SendRequest("hi")


def test_sub_refresh_request_carries_channel_and_token() -> None:
    assert parse_request(SubRefreshRequest, {"channel": "a", "token": "t"}) == SubRefreshRequest(
        "a", "t"
    )


def test_unknown_request_fields_are_ignored() -> None:
    request = parse_request(SubscribeRequest, {"channel": "a", "delta": "fossil", "x": [1]})
    assert request == SubscribeRequest(channel="a")


def test_history_request_defaults_to_position_only_forward() -> None:
    assert parse_request(HistoryRequest, {"channel": "a"}) == HistoryRequest(
        "a", limit=0, since=None, reverse=False
    )


def test_history_request_limit_minus_one_asks_for_everything() -> None:
    assert parse_request(HistoryRequest, {"channel": "a", "limit": -1}).limit == -1


def test_history_request_limit_minus_two_raises_107_naming_limit() -> None:
    with pytest.raises(ReplyError) as info:
        parse_request(HistoryRequest, {"channel": "a", "limit": -2})
    assert info.value.code == ErrorCode.BAD_REQUEST
    assert info.value.message.startswith("limit:")


def test_history_request_since_becomes_a_stream_position() -> None:
    request = parse_request(
        HistoryRequest,
        {"channel": "a", "limit": 10, "since": {"offset": 12, "epoch": "ab"}, "reverse": True},
    )
    assert request == HistoryRequest("a", 10, StreamPosition(12, "ab"), True)


def test_history_request_since_null_means_no_since() -> None:
    assert parse_request(HistoryRequest, {"channel": "a", "since": None}).since is None


def test_history_request_since_without_fields_is_the_start() -> None:
    request = parse_request(HistoryRequest, {"channel": "a", "since": {}})
    assert request.since == StreamPosition(0, "")


# ---------------------------------------------------------------------------
# validate_channel


def _code(channel: str, max_length: int = 255) -> int | None:
    try:
        validate_channel(channel, max_length)
    except ReplyError as exc:
        return int(exc.code)
    return None


def test_empty_channel_is_a_bad_request() -> None:
    assert _code("") == 107


@pytest.mark.parametrize(
    "channel", ["news", "chat:1", "a" * 255, "é" * 127 + "a", "☃" * 85, "😀" * 63 + "abc"]
)
def test_channel_of_at_most_max_length_bytes_is_valid(channel: str) -> None:
    assert len(channel.encode()) <= 255
    assert _code(channel) is None


@pytest.mark.parametrize("channel", ["a" * 256, "é" * 128, "☃" * 85 + "a", "😀" * 64])
def test_channel_of_max_length_plus_one_bytes_exceeds_the_limit(channel: str) -> None:
    assert len(channel.encode()) == 256
    assert _code(channel) == 106


def test_channel_length_limit_follows_the_configured_maximum() -> None:
    assert _code("abcd", max_length=4) is None
    assert _code("abcde", max_length=4) == 106
    assert _code("éé", max_length=4) is None
    assert _code("ééa", max_length=4) == 106


@pytest.mark.parametrize(
    "channel",
    ["a b", " a", "a\t", "a\nb", "a\rb", "a\x00b", "a\x1bb", "a\x7fb", "a\u00a0b", "a\u2028b"],
    ids=["space", "leading-space", "tab", "newline", "cr", "nul", "esc", "del", "nbsp", "u2028"],
)
def test_channel_with_whitespace_or_control_characters_is_a_bad_request(channel: str) -> None:
    assert _code(channel) == 107


def _nested(depth: int) -> object:
    value: object = 0
    for _ in range(depth):
        value = [value]
    return value


def test_data_nested_exactly_max_depth_levels_is_accepted() -> None:
    request = parse_request(PublishRequest, {"channel": "a", "data": _nested(5)}, max_depth=5)
    assert request.data == _nested(5)


def test_data_nested_one_level_deeper_than_max_depth_answers_107() -> None:
    with pytest.raises(ReplyError) as exc:
        parse_request(PublishRequest, {"channel": "a", "data": _nested(6)}, max_depth=5)
    assert exc.value.code == ErrorCode.BAD_REQUEST and "data" in exc.value.message
