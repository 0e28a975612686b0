"""The protocol's codecs and message shapes (server/protocol/codec.py).

Codec tests round-trip fixed byte strings so that a change of wire format shows up
as a failing literal, not as two halves of the code agreeing with each other.
"""

from __future__ import annotations

import json
from typing import Any

import msgpack
import pytest
from wsfan.errors import ErrorCode, ReplyError
from wsfan.protocol import (
    PING,
    Encoding,
    ProtocolError,
    Publication,
    PublishRequest,
    decode_frame,
    encode,
    error_reply,
    join_frame,
    parse_request,
    push,
    reply,
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
