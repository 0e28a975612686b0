"""The protocol core (server/protocol.py): frame codecs, command envelopes, requests, shapes.

Codec tests round-trip fixed byte strings so that a change of wire format shows up
as a failing literal, not as two halves of the code agreeing with each other.
"""

from __future__ import annotations

import json
from typing import Any

import msgpack
import pytest

from server.errors import ErrorCode, ReplyError
from server.protocol import (
    METHODS,
    PING,
    ClientInfo,
    Command,
    ConnectRequest,
    Encoding,
    HistoryRequest,
    PresenceRequest,
    PresenceStatsRequest,
    ProtocolError,
    Publication,
    PublishRequest,
    RefreshRequest,
    RPCRequest,
    SendRequest,
    StreamPosition,
    SubRefreshRequest,
    SubscribeRequest,
    UnsubscribeRequest,
    decode_frame,
    encode,
    error_reply,
    join_frame,
    parse_command,
    parse_request,
    push,
    reply,
    validate_channel,
)

JSON = Encoding.JSON
MSGPACK = Encoding.MSGPACK

# ---------------------------------------------------------------------------
# decode_frame: JSON


def test_json_frame_with_two_lines_decodes_to_two_commands() -> None:
    frame = b'{"id":1,"connect":{}}\n{"id":2,"subscribe":{"channel":"a"}}'
    assert decode_frame(frame, JSON) == [
        {"id": 1, "connect": {}},
        {"id": 2, "subscribe": {"channel": "a"}},
    ]


def test_json_frame_with_one_message_decodes_to_a_list_of_one() -> None:
    assert decode_frame(b'{"id":7,"presence":{"channel":"x"}}', JSON) == [
        {"id": 7, "presence": {"channel": "x"}}
    ]


def test_json_frame_with_trailing_newline_and_blank_lines_ignores_them() -> None:
    frame = b'\n{"id":1,"connect":{}}\n\n{"id":2,"refresh":{"token":"t"}}\n'
    assert decode_frame(frame, JSON) == [
        {"id": 1, "connect": {}},
        {"id": 2, "refresh": {"token": "t"}},
    ]


def test_json_text_frame_decodes_like_the_same_bytes() -> None:
    text = '{"id":1,"publish":{"channel":"a","data":"é"}}'
    assert decode_frame(text, JSON) == decode_frame(text.encode("utf-8"), JSON)


def test_json_frame_keeps_non_ascii_text() -> None:
    frame = '{"id":1,"publish":{"channel":"a","data":"héllo ☃"}}'.encode()
    assert decode_frame(frame, JSON)[0]["publish"]["data"] == "héllo ☃"


def test_json_empty_frame_decodes_to_no_messages() -> None:
    assert decode_frame(b"", JSON) == []


def test_json_pong_frame_decodes_to_an_empty_map() -> None:
    assert decode_frame(b"{}", JSON) == [{}]


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(b'{"id":1,"connect":{"name":"\xff\xfe"}}', id="invalid-utf8"),
        pytest.param(b'{"id":1,"connect":{', id="truncated-json"),
        pytest.param(b'{"id":1} trailing', id="garbage-after-json"),
        pytest.param(b"{'id':1}", id="single-quotes"),
        pytest.param(b'{"id":1,"publish":{"channel":"a","data":NaN}}', id="NaN"),
        pytest.param(b'{"id":1,"publish":{"channel":"a","data":Infinity}}', id="Infinity"),
        pytest.param(b'{"id":1,"publish":{"channel":"a","data":-Infinity}}', id="-Infinity"),
        pytest.param(b"[" * 100_000, id="deeply-nested"),
        pytest.param(b'{"id":1}\n{"id":', id="second-line-broken"),
    ],
)
def test_malformed_json_frame_raises_protocol_error(frame: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_frame(frame, JSON)


def test_deeply_nested_but_balanced_json_raises_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        decode_frame(b"[" * 100_000 + b"]" * 100_000, JSON)


# ---------------------------------------------------------------------------
# decode_frame: msgpack


def test_msgpack_frame_with_one_map_decodes_to_it() -> None:
    # {"id": 1, "connect": {}} built by hand: fixmap(2), fixstr "id", 1, fixstr "connect", {}
    frame = b"\x82\xa2id\x01\xa7connect\x80"
    assert decode_frame(frame, MSGPACK) == [{"id": 1, "connect": {}}]


def test_msgpack_frame_with_concatenated_maps_decodes_to_each_in_order() -> None:
    frame = b"\x82\xa2id\x01\xa7connect\x80\x82\xa2id\x02\xa9subscribe\x81\xa7channel\xa1a"
    assert decode_frame(frame, MSGPACK) == [
        {"id": 1, "connect": {}},
        {"id": 2, "subscribe": {"channel": "a"}},
    ]


def test_msgpack_frame_keeps_binary_data_as_bytes() -> None:
    frame = msgpack.packb(
        {"id": 3, "publish": {"channel": "a", "data": b"\x00\xff"}}, use_bin_type=True
    )
    assert decode_frame(frame, MSGPACK) == [
        {"id": 3, "publish": {"channel": "a", "data": b"\x00\xff"}}
    ]


def test_msgpack_frame_accepts_non_string_map_keys_in_data() -> None:
    frame = msgpack.packb({"id": 1, "publish": {"channel": "a", "data": {1: "one"}}})
    assert decode_frame(frame, MSGPACK)[0]["publish"]["data"] == {1: "one"}


def test_msgpack_empty_frame_decodes_to_no_messages() -> None:
    assert decode_frame(b"", MSGPACK) == []


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(b"\x82\xa2id\x01\xa7conn", id="truncated-inside-string"),
        pytest.param(b"\x82\xa2id\x01", id="truncated-map"),
        pytest.param(b"\x82\xa2id\x01\xa7connect\x80\x82\xa2id", id="truncated-second-map"),
        pytest.param(b"\x82\xa2id\x01\xa7connect\x80\xc1", id="never-used-byte-after-map"),
        pytest.param(
            b"\x82\xa2id\x01\xa7connect\x80\xdb\xff\xff\xff\xff",
            id="str-header-without-body-after-map",
        ),
        pytest.param(b"\x91" * 100_000, id="deeply-nested"),
        pytest.param(b"\xc1", id="never-used-byte"),
    ],
)
def test_malformed_msgpack_frame_raises_protocol_error(frame: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_frame(frame, MSGPACK)


def test_protocol_error_of_a_frame_does_not_carry_the_peers_bytes() -> None:
    with pytest.raises(ProtocolError) as info:
        decode_frame(b'{"secret-token-123"', JSON)
    assert "secret-token-123" not in str(info.value)


# ---------------------------------------------------------------------------
# encode


def test_json_encoding_is_compact() -> None:
    message = {"id": 1, "connect": {"client": "abc", "version": "1", "ping": 25, "pong": True}}
    assert encode(message, JSON) == (
        b'{"id":1,"connect":{"client":"abc","version":"1","ping":25,"pong":true}}'
    )


def test_json_encoding_has_no_raw_newline_when_data_contains_one() -> None:
    message = push("chat:1", "pub", {"data": {"text": "line one\nline two"}})
    data = encode(message, JSON)
    assert b"\n" not in data
    assert decode_frame(data, JSON) == [message]


def test_json_encoding_writes_non_ascii_as_utf8() -> None:
    assert encode({"data": "é☃"}, JSON) == '{"data":"é☃"}'.encode()


def test_json_encoding_turns_bytes_into_base64() -> None:
    assert encode({"data": b"\x00\xffhi"}, JSON) == b'{"data":"AP9oaQ=="}'


def test_json_encoding_turns_nan_and_infinity_into_null() -> None:
    message = {"data": [float("nan"), float("inf"), float("-inf"), 1.5]}
    assert encode(message, JSON) == b'{"data":[null,null,null,1.5]}'


def test_json_encoding_turns_non_string_map_keys_into_strings() -> None:
    assert encode({"data": {1: "a", 2.5: "b"}}, JSON) == b'{"data":{"1":"a","2.5":"b"}}'


def test_json_encoding_turns_bytes_map_keys_into_base64_strings() -> None:
    assert encode({"data": {b"k": "v", 1: "a"}}, JSON) == b'{"data":{"aw==":"v","1":"a"}}'


@pytest.mark.parametrize("key", [True, False, None], ids=["true", "false", "none"])
def test_json_encoding_of_a_map_key_does_not_depend_on_the_other_values(key: Any) -> None:
    # A NaN next to the key sends the message down the fallback path; the key must
    # still be written the way JSON writes it everywhere else ("true", "null").
    plain = json.loads(encode({"data": {key: 0}}, JSON))["data"]
    with_nan = json.loads(encode({"data": {key: float("nan")}}, JSON))["data"]
    assert list(with_nan) == list(plain)


def test_json_encoding_carries_a_msgpack_ext_value_with_its_payload_in_base64() -> None:
    data = json.loads(encode({"data": msgpack.ExtType(5, b"\x01\x02")}, JSON))["data"]
    assert "AQI=" in data


def test_json_encoding_turns_a_msgpack_timestamp_into_unix_seconds() -> None:
    stamp = msgpack.Timestamp(seconds=1_700_000_000, nanoseconds=500_000_000)
    assert encode({"data": stamp}, JSON) == b'{"data":1700000000.5}'


def test_msgpack_encoding_of_a_map_is_the_fixed_bytes() -> None:
    assert encode({"id": 1, "connect": {}}, MSGPACK) == b"\x82\xa2id\x01\xa7connect\x80"


def test_msgpack_encoding_keeps_bytes_as_bin() -> None:
    assert encode({"data": b"\x00\x01"}, MSGPACK) == b"\x81\xa4data\xc4\x02\x00\x01"


def test_msgpack_encoding_keeps_64_bit_integers_as_integers() -> None:
    data = encode({"data": [2**64 - 1, -(2**63)]}, MSGPACK)
    assert msgpack.unpackb(data) == {"data": [2**64 - 1, -(2**63)]}


def test_msgpack_encoding_turns_integers_beyond_64_bits_into_strings() -> None:
    data = encode({"data": [2**64, -(2**63) - 1, 7]}, MSGPACK)
    assert msgpack.unpackb(data) == {"data": ["18446744073709551616", "-9223372036854775809", 7]}


def test_msgpack_encoding_turns_a_huge_integer_map_key_into_a_string() -> None:
    data = encode({"data": {2**70: "x"}}, MSGPACK)
    assert msgpack.unpackb(data, strict_map_key=False) == {"data": {str(2**70): "x"}}


def test_msgpack_encoding_keeps_nan_as_a_float() -> None:
    value = msgpack.unpackb(encode({"data": float("nan")}, MSGPACK))["data"]
    assert isinstance(value, float) and value != value


def _publish_frame(data_json: bytes) -> bytes:
    return b'{"id":1,"publish":{"channel":"a","data":' + data_json + b"}}"


@pytest.mark.parametrize(
    ("frame", "source"),
    [
        pytest.param(_publish_frame(b'"\\ud800"'), JSON, id="json-lone-surrogate"),
        pytest.param(_publish_frame(b'{"t":"a\\udfffb"}'), JSON, id="json-lone-low-surrogate"),
        pytest.param(_publish_frame(b"[" * 950 + b"]" * 950), JSON, id="json-nested-950"),
        pytest.param(
            b"\x82\xa2id\x01\xa7publish\x82\xa7channel\xa1a\xa4data" + b"\x91" * 1000 + b"\x90",
            MSGPACK,
            id="msgpack-nested-1000",
        ),
    ],
)
def test_data_of_an_accepted_frame_can_be_encoded_for_every_subscriber(
    frame: bytes, source: Encoding
) -> None:
    # The module promises `encode` never fails on data that passed validation: either
    # the frame is refused (close 3501) or the request is (107), or its data reaches
    # every subscriber whatever their encoding. A failure here would happen inside the
    # hub's fan-out, after the publication was already appended to history.
    try:
        [message] = decode_frame(frame, source)
        parse_request(PublishRequest, message["publish"])
    except ProtocolError:
        return
    except ReplyError as exc:
        assert exc.code == ErrorCode.BAD_REQUEST
        return
    pub_push = push("a", "pub", Publication(message["publish"]["data"], 1).to_dict())
    for target in Encoding:
        assert decode_frame(encode(pub_push, target), target)


def test_encoded_message_decodes_back_to_itself_in_both_encodings() -> None:
    message = {
        "push": {"channel": "chat:1", "pub": {"data": {"n": [1, "two", None]}, "offset": 16}}
    }
    for encoding in Encoding:
        assert decode_frame(encode(message, encoding), encoding) == [message]


def test_ping_is_an_empty_message_in_both_encodings() -> None:
    assert encode(PING, JSON) == b"{}"
    assert encode(PING, MSGPACK) == b"\x80"


# ---------------------------------------------------------------------------
# join_frame


def test_json_messages_join_with_a_newline() -> None:
    assert join_frame([b'{"id":1,"connect":{}}', b"{}"], JSON) == b'{"id":1,"connect":{}}\n{}'


def test_msgpack_messages_join_by_concatenation() -> None:
    assert join_frame([b"\x81\xa2id\x01", b"\x80"], MSGPACK) == b"\x81\xa2id\x01\x80"


def test_a_single_message_frame_is_the_message_itself() -> None:
    message = b'{"id":1,"connect":{}}'
    assert join_frame([message], JSON) is message


def test_joined_frame_decodes_to_every_message_in_order() -> None:
    messages = [{"id": 1, "connect": {}}, {}, {"push": {"channel": "a", "pub": {"data": "x\ny"}}}]
    for encoding in Encoding:
        frame = join_frame([encode(m, encoding) for m in messages], encoding)
        assert decode_frame(frame, encoding) == messages


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


# ---------------------------------------------------------------------------
# Value types


def test_client_info_round_trips_through_a_map() -> None:
    info = ClientInfo("u1", "c1", {"name": "Ann"}, {"role": "mod"})
    assert info.to_dict() == {
        "user": "u1",
        "client": "c1",
        "conn_info": {"name": "Ann"},
        "chan_info": {"role": "mod"},
    }
    assert ClientInfo.from_dict(info.to_dict()) == info


def test_client_info_omits_absent_conn_and_chan_info() -> None:
    assert ClientInfo("u1", "c1").to_dict() == {"user": "u1", "client": "c1"}


def test_client_info_always_carries_user_even_when_anonymous() -> None:
    assert ClientInfo("", "c1").to_dict() == {"user": "", "client": "c1"}


def test_publication_round_trips_through_a_map() -> None:
    pub = Publication({"text": "hi"}, 16, ClientInfo("u1", "c1", {"n": 1}), {"k": "v"})
    assert pub.to_dict() == {
        "data": {"text": "hi"},
        "offset": 16,
        "info": {"user": "u1", "client": "c1", "conn_info": {"n": 1}},
        "tags": {"k": "v"},
    }
    assert Publication.from_dict(pub.to_dict()) == pub


def test_publication_without_history_info_or_tags_is_only_its_data() -> None:
    assert Publication({"text": "hi"}).to_dict() == {"data": {"text": "hi"}}
    assert Publication("x", 0, None, {}).to_dict() == {"data": "x"}


def test_publication_from_a_minimal_map_has_defaults() -> None:
    assert Publication.from_dict({"data": 1}) == Publication(1, 0, None, None)


# ---------------------------------------------------------------------------
# Replies and pushes


def test_reply_puts_the_result_under_the_method_name() -> None:
    assert reply(3, "publish", {}) == {"id": 3, "publish": {}}


def test_error_reply_carries_code_and_message() -> None:
    assert error_reply(5, ReplyError(ErrorCode.PERMISSION_DENIED)) == {
        "id": 5,
        "error": {"code": 103, "message": "permission denied"},
    }


def test_error_reply_of_a_temporary_error_says_so() -> None:
    assert error_reply(6, ReplyError(ErrorCode.INTERNAL)) == {
        "id": 6,
        "error": {"code": 100, "message": "internal server error", "temporary": True},
    }


def test_error_reply_encodes_to_the_protocol_bytes() -> None:
    data = encode(error_reply(5, ReplyError(ErrorCode.PERMISSION_DENIED)), JSON)
    assert data == b'{"id":5,"error":{"code":103,"message":"permission denied"}}'


def test_publication_push_names_the_channel() -> None:
    assert push("chat:1", "pub", {"data": {"x": 1}, "offset": 16}) == {
        "push": {"channel": "chat:1", "pub": {"data": {"x": 1}, "offset": 16}}
    }


def test_push_without_channel_has_no_channel_key() -> None:
    body = {"code": 3001, "reason": "shutdown", "reconnect": True}
    assert push("", "disconnect", body) == {"push": {"disconnect": body}}


@pytest.mark.parametrize("kind", ["pub", "join", "leave", "unsubscribe", "subscribe", "message"])
def test_push_puts_the_body_under_its_kind(kind: str) -> None:
    assert push("a", kind, {"k": 1})["push"][kind] == {"k": 1}


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
