"""Parsing and validating server API bodies: pure, no server involved."""

from __future__ import annotations

from typing import Any

import pytest
from wsfan.api.requests import (
    MAX_INTEGER,
    BatchRequest,
    BroadcastRequest,
    ChannelsRequest,
    DisconnectRequest,
    Limits,
    PublishRequest,
    RefreshRequest,
    SubscribeRequest,
    UnsubscribeRequest,
    parse,
)
from wsfan.errors import ErrorCode, ReplyError
from wsfan.protocol import StreamPosition

LIMITS = Limits(max_data_depth=8, max_broadcast_channels=3, max_batch_commands=2)


def error(cls: type[Any], params: Any) -> ReplyError:
    with pytest.raises(ReplyError) as info:
        parse(cls, params, LIMITS)
    return info.value


def test_publish_takes_channel_data_tags_and_idempotency_key() -> None:
    request = parse(
        PublishRequest,
        {"channel": "a", "data": {"x": 1}, "tags": {"k": "v"}, "idempotency_key": "i1"},
        LIMITS,
    )
    assert (request.channel, request.data, request.tags) == ("a", {"x": 1}, {"k": "v"})
    assert request.idempotency_key == "i1"
    assert request.skip_history is False


def test_publish_accepts_null_data() -> None:
    assert parse(PublishRequest, {"channel": "a", "data": None}, LIMITS).data is None


def test_publish_without_data_names_the_field() -> None:
    exc = error(PublishRequest, {"channel": "a"})
    assert exc.code is ErrorCode.BAD_REQUEST
    assert exc.message == "data: missing field"


def test_publish_without_channel_names_the_field() -> None:
    assert error(PublishRequest, {"data": 1}).message == "missing field: channel"


def test_publish_b64data_is_binary_data() -> None:
    request = parse(PublishRequest, {"channel": "a", "b64data": "AAH/"}, LIMITS)
    assert request.data == b"\x00\x01\xff"


def test_publish_bad_b64data_names_the_field() -> None:
    assert error(PublishRequest, {"channel": "a", "b64data": "!!"}).message == (
        "b64data: expected base64"
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"channel": 5, "data": 1}, "channel: expected a string"),
        ({"channel": "a", "data": 1, "tags": {"k": 1}}, "tags: expected a map of strings"),
        ({"channel": "a", "data": 1, "skip_history": "yes"}, "skip_history: expected a boolean"),
        ({"channel": "a", "data": 1, "idempotency_key": 7}, "idempotency_key: expected a string"),
    ],
)
def test_publish_field_of_the_wrong_type_is_named(params: dict[str, Any], message: str) -> None:
    assert error(PublishRequest, params).message == message


def test_data_nested_deeper_than_the_limit_is_refused() -> None:
    data: Any = 1
    for _ in range(9):
        data = [data]
    assert (
        "data: nested deeper than 8"
        in error(PublishRequest, {"channel": "a", "data": data}).message
    )


def test_broadcast_takes_a_list_of_channels() -> None:
    request = parse(BroadcastRequest, {"channels": ["a", "b"], "data": 1}, LIMITS)
    assert request.channels == ["a", "b"]


@pytest.mark.parametrize(
    ("channels", "message"),
    [
        ("a", "channels: expected a list of strings"),
        (["a", 1], "channels: expected a list of strings"),
        ([], "channels: must not be empty"),
    ],
)
def test_broadcast_channels_must_be_a_non_empty_list_of_strings(
    channels: Any, message: str
) -> None:
    assert error(BroadcastRequest, {"channels": channels, "data": 1}).message == message


def test_broadcast_to_exactly_the_channel_limit_is_accepted() -> None:
    assert (
        len(parse(BroadcastRequest, {"channels": ["a", "b", "c"], "data": 1}, LIMITS).channels) == 3
    )


def test_broadcast_over_the_channel_limit_answers_106() -> None:
    exc = error(BroadcastRequest, {"channels": ["a", "b", "c", "d"], "data": 1})
    assert exc.code is ErrorCode.LIMIT_EXCEEDED
    assert "channels: more than 3" in exc.message


def test_batch_of_exactly_the_command_limit_is_accepted() -> None:
    assert len(parse(BatchRequest, {"commands": [{}, {}]}, LIMITS).commands) == 2


def test_batch_over_the_command_limit_answers_106() -> None:
    exc = error(BatchRequest, {"commands": [{}, {}, {}]})
    assert exc.code is ErrorCode.LIMIT_EXCEEDED


def test_batch_commands_must_be_a_list() -> None:
    assert error(BatchRequest, {"commands": {}}).message == "commands: expected a list of commands"


@pytest.mark.parametrize("cls", [SubscribeRequest, UnsubscribeRequest])
def test_user_is_required_unless_a_client_is_named(cls: type[Any]) -> None:
    assert error(cls, {"channel": "a"}).message == "missing field: user"
    assert "user: must not be empty" in error(cls, {"user": "", "channel": "a"}).message
    assert parse(cls, {"user": "", "client": "c1", "channel": "a"}, LIMITS).client == "c1"


def test_subscribe_takes_info_data_and_recover_since() -> None:
    request = parse(
        SubscribeRequest,
        {
            "user": "u",
            "channel": "a",
            "info": {"role": "x"},
            "data": [1],
            "recover_since": {"offset": 3, "epoch": "e"},
        },
        LIMITS,
    )
    assert request.info == {"role": "x"} and request.data == [1]
    assert request.recover_since == StreamPosition(3, "e")


def test_subscribe_b64_fields_are_binary() -> None:
    request = parse(
        SubscribeRequest,
        {"user": "u", "channel": "a", "b64info": "AQ==", "b64data": "Ag=="},
        LIMITS,
    )
    assert (request.info, request.data) == (b"\x01", b"\x02")


def test_disconnect_defaults_to_3503_force_disconnect() -> None:
    request = parse(DisconnectRequest, {"user": "u"}, LIMITS)
    assert request.disconnect == {"code": 3503, "reason": "force disconnect"}
    assert request.whitelist == []


def test_disconnect_takes_a_custom_code_and_reason() -> None:
    params = {"user": "u", "disconnect": {"code": 4500, "reason": "bye"}, "whitelist": ["c1"]}
    request = parse(DisconnectRequest, params, LIMITS)
    assert request.disconnect == {"code": 4500, "reason": "bye"}
    assert request.whitelist == ["c1"]


@pytest.mark.parametrize("code", [2999, 5000, 1000, "3500", True])
def test_disconnect_code_outside_3000_to_4999_is_refused(code: Any) -> None:
    exc = error(DisconnectRequest, {"user": "u", "disconnect": {"code": code, "reason": ""}})
    assert exc.message == "disconnect.code: expected an integer from 3000 to 4999"


def test_disconnect_reason_of_123_bytes_is_accepted_and_124_refused() -> None:
    ok = {"user": "u", "disconnect": {"code": 4000, "reason": "é" * 61 + "x"}}
    assert parse(DisconnectRequest, ok, LIMITS).disconnect["reason"] == "é" * 61 + "x"
    too_long = {"user": "u", "disconnect": {"code": 4000, "reason": "é" * 62}}
    assert error(DisconnectRequest, too_long).message == "disconnect.reason: longer than 123 bytes"


def test_disconnect_whitelist_must_be_strings() -> None:
    assert error(DisconnectRequest, {"user": "u", "whitelist": [1]}).message == (
        "whitelist: expected a list of strings"
    )


def test_refresh_takes_expired_and_expire_at() -> None:
    request = parse(RefreshRequest, {"user": "u", "expired": True, "expire_at": 5}, LIMITS)
    assert (request.expired, request.expire_at) == (True, 5)


def test_refresh_expire_at_must_be_a_non_negative_integer() -> None:
    assert error(RefreshRequest, {"user": "u", "expire_at": -1}).message == (
        "expire_at: expected a non-negative integer"
    )


def test_channels_pattern_is_checked() -> None:
    assert parse(ChannelsRequest, {"pattern": "chat:*"}, LIMITS).pattern == "chat:*"
    assert error(ChannelsRequest, {"pattern": "[a"}).message == "pattern: unclosed ["


def test_unknown_fields_are_ignored() -> None:
    request = parse(PublishRequest, {"channel": "a", "data": 1, "delta": True}, LIMITS)
    assert request.channel == "a"


# What Redis, msgpack and the SDKs can carry ------------------------------------


def test_an_integer_of_64_bits_is_accepted_and_one_more_refused() -> None:
    assert parse(RefreshRequest, {"user": "u", "expire_at": MAX_INTEGER}, LIMITS).expire_at == (
        MAX_INTEGER
    )
    assert error(RefreshRequest, {"user": "u", "expire_at": MAX_INTEGER + 1}).message == (
        f"expire_at: larger than {MAX_INTEGER}"
    )


def test_a_position_past_64_bits_is_refused() -> None:
    params = {"user": "u", "channel": "a", "recover_since": {"offset": 2**70, "epoch": "e"}}
    assert error(SubscribeRequest, params).message == (
        f"recover_since.offset: larger than {MAX_INTEGER}"
    )


@pytest.mark.parametrize(
    ("cls", "params", "field"),
    [
        (PublishRequest, {"channel": "\ud800", "data": 1}, "channel"),
        (
            PublishRequest,
            {"channel": "a", "data": 1, "idempotency_key": "\udfff"},
            "idempotency_key",
        ),
        (PublishRequest, {"channel": "a", "data": 1, "tags": {"\ud800": "v"}}, "tags key"),
        (PublishRequest, {"channel": "a", "data": 1, "tags": {"k": "\ud800"}}, "tags.k"),
        (DisconnectRequest, {"user": "\ud800"}, "user"),
        (DisconnectRequest, {"user": "u", "whitelist": ["\ud800"]}, "whitelist[0]"),
        (ChannelsRequest, {"pattern": "\ud800*"}, "pattern"),
    ],
    ids=["channel", "idempotency-key", "tag-key", "tag-value", "user", "whitelist", "pattern"],
)
def test_a_lone_surrogate_outside_free_form_data_is_refused(
    cls: type[Any], params: dict[str, Any], field: str
) -> None:
    assert error(cls, params).message == f"{field}: not valid UTF-8 (a lone surrogate)"


def test_free_form_data_may_hold_anything_a_decoder_produced() -> None:
    data = {"s": "\ud800", "big": 2**70, "bin": b"\x00"}
    assert parse(PublishRequest, {"channel": "a", "data": data}, LIMITS).data == data
