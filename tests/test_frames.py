"""WebSocket frames (server/frames.py): RFC 6455 headers at each length edge, and
reading client frames within every limit, byte-exact."""

from __future__ import annotations

import struct

import pytest
from wsfan.errors import CloseCode, valid_close_code
from wsfan.frames import (
    BINARY,
    CLOSE,
    PING,
    PONG,
    TEXT,
    WEBSOCKET,
    FrameBudget,
    FrameError,
    FrameReader,
    close_frame,
    frame_header,
)
from wsfan.protocol import Encoding


@pytest.mark.parametrize(
    ("length", "expected"),
    [
        (0, b"\x81\x00"),
        (125, b"\x81\x7d"),
        (126, b"\x81\x7e" + struct.pack("!H", 126)),
        (65535, b"\x81\x7e" + struct.pack("!H", 65535)),
        (65536, b"\x81\x7f" + struct.pack("!Q", 65536)),
    ],
)
def test_text_frame_header_uses_the_shortest_length_form(length: int, expected: bytes) -> None:
    assert frame_header(length, binary=False) == expected


def test_binary_frame_header_carries_the_binary_opcode() -> None:
    assert frame_header(3, binary=True) == b"\x82\x03"


def test_wire_bytes_are_the_header_then_the_unmasked_payload() -> None:
    assert WEBSOCKET.frame([b'{"a":1}'], Encoding.JSON).wire == b"\x81\x07" + b'{"a":1}'


def test_a_long_binary_payload_gets_the_16_bit_length_form() -> None:
    frame = WEBSOCKET.frame([b"x" * 300], Encoding.MSGPACK)
    assert frame.wire == b"\x82\x7e" + struct.pack("!H", 300) + b"x" * 300


def test_several_json_messages_leave_as_one_newline_delimited_text_frame() -> None:
    frame = WEBSOCKET.frame([b"{}", b'{"a":1}'], Encoding.JSON)
    assert frame.payload == b'{}\n{"a":1}'
    assert frame.wire == b"\x81\x0a" + frame.payload


def test_several_msgpack_messages_leave_back_to_back_in_one_binary_frame() -> None:
    frame = WEBSOCKET.frame([b"\x80", b"\x81\xa1a\x01"], Encoding.MSGPACK)
    assert frame.wire == b"\x82\x05\x80\x81\xa1a\x01"


# ---------------------------------------------------------------------------
# Reading client frames

MASK = b"\x01\x02\x03\x04"


def client_frame(opcode: int, payload: bytes, fin: bool = True, masked: bool = True) -> bytes:
    """A client frame as RFC 6455 section 5.2 lays it out (written here independently)."""
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        head = bytes((first, (0x80 if masked else 0) | n))
    elif n < 65536:
        head = bytes((first, (0x80 if masked else 0) | 126)) + struct.pack("!H", n)
    else:
        head = bytes((first, (0x80 if masked else 0) | 127)) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    return head + MASK + bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))


def test_a_masked_text_frame_reads_as_its_payload() -> None:
    assert FrameReader(100).feed(client_frame(TEXT, b'{"id":1}')) == [(TEXT, b'{"id":1}')]


def test_frames_split_at_every_byte_read_the_same() -> None:
    data = client_frame(BINARY, b"x" * 300) + client_frame(PING, b"p")
    reader = FrameReader(1000)
    got = [m for i in range(len(data)) for m in reader.feed(data[i : i + 1])]
    assert got == [(BINARY, b"x" * 300), (PING, b"p")]


def test_fragments_are_joined_and_controls_between_them_pass_through() -> None:
    data = (
        client_frame(TEXT, b"ab", fin=False)
        + client_frame(PING, b"")
        + client_frame(0, b"cd", fin=False)
        + client_frame(0, b"ef")
    )
    assert FrameReader(100).feed(data) == [(PING, b""), (TEXT, b"abcdef")]


def test_a_message_of_exactly_the_limit_is_read() -> None:
    assert FrameReader(200).feed(client_frame(TEXT, b"x" * 200)) == [(TEXT, b"x" * 200)]


def test_one_byte_past_the_limit_closes_1009_before_the_payload_arrives() -> None:
    header_only = client_frame(TEXT, b"x" * 201)[:8]
    with pytest.raises(FrameError) as err:
        FrameReader(200).feed(header_only)
    assert err.value.code == 1009


def test_fragments_adding_up_past_the_limit_close_1009() -> None:
    reader = FrameReader(200)
    reader.feed(client_frame(TEXT, b"x" * 150, fin=False))
    with pytest.raises(FrameError) as err:
        reader.feed(client_frame(0, b"x" * 51))
    assert err.value.code == 1009


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (client_frame(TEXT, b"hi", masked=False), "unmasked"),
        (bytes((0xC1, 0x80)) + MASK, "reserved bit"),
        (client_frame(PING, b"x" * 126), "long control frame"),
        (client_frame(PING, b"", fin=False), "fragmented control frame"),
        (client_frame(0, b"orphan"), "continuation without a message"),
        (client_frame(TEXT, b"a", fin=False) + client_frame(TEXT, b"b"), "message inside one"),
        (client_frame(0x3, b""), "reserved data opcode"),
        (client_frame(0xB, b""), "reserved control opcode"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_protocol_violations_close_1002(data: bytes, why: str) -> None:
    with pytest.raises(FrameError) as err:
        FrameReader(1000).feed(data)
    assert err.value.code == 1002, why


def test_close_frame_carries_the_code_and_a_reason_cut_to_fit() -> None:
    frame = close_frame(3008, "é" * 100)
    assert frame[0] == 0x88 and frame[1] == len(frame) - 2 <= 125
    assert int.from_bytes(frame[2:4], "big") == 3008
    frame[4:].decode("utf-8")  # cut on a character boundary


# ---------------------------------------------------------------------------
# Fragments


def fragmented(count: int, opcode: int = TEXT, part: bytes = b"") -> bytes:
    """One message in `count` frames of `part` each."""
    frames = [client_frame(opcode, part, fin=count == 1)]
    frames += [client_frame(0, part, fin=i == count - 1) for i in range(1, count)]
    return b"".join(frames)


def test_a_message_in_exactly_max_fragments_frames_is_read() -> None:
    data = fragmented(4, part=b"ab")
    assert FrameReader(100, max_fragments=4).feed(data) == [(TEXT, b"ab" * 4)]


def test_one_fragment_more_closes_1009_at_its_header() -> None:
    reader = FrameReader(100, max_fragments=4)
    assert reader.feed(fragmented(5)[: 4 * 6]) == []  # four empty non-final frames: 6 bytes each
    with pytest.raises(FrameError) as err:
        reader.feed(bytes((0x00, 0x80)))  # the fifth frame's header alone
    assert err.value.code == CloseCode.MESSAGE_TOO_BIG == 1009


def test_an_endless_run_of_empty_continuations_closes_1009() -> None:
    data = client_frame(TEXT, b"", fin=False) + client_frame(0, b"", fin=False) * 1000
    with pytest.raises(FrameError) as err:
        FrameReader(100, max_fragments=128).feed(data)
    assert err.value.code == 1009


def test_control_frames_between_fragments_do_not_count_as_fragments() -> None:
    data = (
        client_frame(BINARY, b"a", fin=False) + client_frame(PING, b"") * 5 + client_frame(0, b"b")
    )
    assert FrameReader(100, max_fragments=2).feed(data)[-1] == (BINARY, b"ab")


def test_the_fragment_count_starts_again_with_each_message() -> None:
    data = fragmented(3) + fragmented(3)
    assert FrameReader(100, max_fragments=3).feed(data) == [(TEXT, b""), (TEXT, b"")]


# ---------------------------------------------------------------------------
# Text must be UTF-8 (RFC 6455 section 8.1)


def test_a_text_message_that_is_not_utf8_closes_1007() -> None:
    with pytest.raises(FrameError) as err:
        FrameReader(100).feed(client_frame(TEXT, b'{"a":"\xff"}'))
    assert err.value.code == CloseCode.INVALID_DATA == 1007


def test_fragments_are_checked_as_a_whole_message() -> None:
    snowman = "☃".encode()
    split = client_frame(TEXT, snowman[:1], fin=False) + client_frame(0, snowman[1:])
    assert FrameReader(100).feed(split) == [(TEXT, snowman)]
    broken = client_frame(TEXT, snowman[:1], fin=False) + client_frame(0, b"x")
    with pytest.raises(FrameError) as err:
        FrameReader(100).feed(broken)
    assert err.value.code == 1007


def test_binary_messages_are_not_checked_for_utf8() -> None:
    assert FrameReader(100).feed(client_frame(BINARY, b"\xff")) == [(BINARY, b"\xff")]


def test_non_ascii_utf8_text_is_read() -> None:
    text = '{"name":"é☃𝄞"}'.encode()
    assert FrameReader(100).feed(client_frame(TEXT, text)) == [(TEXT, text)]


# ---------------------------------------------------------------------------
# The peer's close frame (RFC 6455 sections 5.5.1 and 7.4)

INVALID_CLOSE_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535]
VALID_CLOSE_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014]


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason


@pytest.mark.parametrize("code", INVALID_CLOSE_CODES)
def test_a_close_code_a_peer_may_not_send_closes_1002(code: int) -> None:
    assert not valid_close_code(code)
    with pytest.raises(FrameError) as err:
        FrameReader(100).feed(client_frame(CLOSE, close_payload(code)))
    assert err.value.code == CloseCode.PROTOCOL_ERROR == 1002


@pytest.mark.parametrize("code", [*VALID_CLOSE_CODES, 3000, 3999, 4000, 4999])
def test_registered_and_application_close_codes_are_read(code: int) -> None:
    assert valid_close_code(code)
    frame = client_frame(CLOSE, close_payload(code, b"bye"))
    assert FrameReader(100).feed(frame) == [(CLOSE, close_payload(code, b"bye"))]


def test_a_close_frame_without_payload_is_read() -> None:
    assert FrameReader(100).feed(client_frame(CLOSE, b"")) == [(CLOSE, b"")]


def test_a_close_frame_with_a_one_byte_payload_closes_1002() -> None:
    with pytest.raises(FrameError) as err:
        FrameReader(100).feed(client_frame(CLOSE, b"\x03"))
    assert err.value.code == 1002


def test_a_close_reason_that_is_not_utf8_closes_1007() -> None:
    with pytest.raises(FrameError) as err:
        FrameReader(100).feed(client_frame(CLOSE, close_payload(1000, b"\xff")))
    assert err.value.code == CloseCode.INVALID_DATA


# ---------------------------------------------------------------------------
# Parsing a bounded number of frames per call


def test_feed_parses_at_most_limit_frames_and_keeps_the_rest() -> None:
    data = b"".join(client_frame(TEXT, str(i).encode()) for i in range(5))
    reader = FrameReader(100)
    assert reader.feed(data, limit=2) == [(TEXT, b"0"), (TEXT, b"1")]
    assert reader.parsed == 2 and reader.buffered == len(data) * 3 // 5
    assert reader.feed(b"", limit=2) == [(TEXT, b"2"), (TEXT, b"3")]
    assert reader.feed(b"") == [(TEXT, b"4")]
    assert reader.parsed == 1 and reader.buffered == 0


def test_limit_zero_only_buffers() -> None:
    reader = FrameReader(100)
    assert reader.feed(client_frame(PING, b"p"), limit=0) == []
    assert reader.parsed == 0 and reader.buffered == 7
    assert reader.feed(b"") == [(PING, b"p")]


def test_fragments_and_control_frames_count_against_the_limit() -> None:
    data = client_frame(TEXT, b"a", fin=False) + client_frame(PONG, b"") + client_frame(0, b"b")
    reader = FrameReader(100)
    assert reader.feed(data, limit=2) == [(PONG, b"")]
    assert reader.feed(b"", limit=1) == [(TEXT, b"ab")]


# ---------------------------------------------------------------------------
# FrameBudget


def test_budget_allows_the_burst_at_once_then_the_rate() -> None:
    budget = FrameBudget(rate=100.0, burst=10, now=0.0)
    assert budget.available(0.0) == 10
    budget.spend(10)
    assert budget.available(0.0) == 0
    assert budget.wait() == pytest.approx(0.01)  # one frame at 100 per second
    assert budget.available(0.01) == 1
    assert budget.available(5.0) == 10  # never more than the burst saved


def test_budget_wait_for_a_batch_is_capped_at_the_burst() -> None:
    budget = FrameBudget(rate=100.0, burst=10, now=0.0)
    budget.spend(10)
    assert budget.wait(5) == pytest.approx(0.05)
    assert budget.wait(1000) == pytest.approx(0.1)


def test_budget_with_rate_zero_is_unlimited() -> None:
    budget = FrameBudget(rate=0.0, burst=1, now=0.0)
    budget.spend(10**6)
    assert budget.available(0.0) > 10**9 and budget.wait(10**6) == 0.0
