"""Outgoing WebSocket frames (server/frames.py): RFC 6455 headers at each length edge."""

from __future__ import annotations

import struct

import pytest

from server.frames import (
    BINARY,
    PING,
    TEXT,
    Frame,
    FrameError,
    FrameReader,
    close_frame,
    frame_header,
)


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
    assert Frame(b'{"a":1}', binary=False).wire == b"\x81\x07" + b'{"a":1}'


def test_a_long_binary_payload_gets_the_16_bit_length_form() -> None:
    frame = Frame(b"x" * 300, binary=True)
    assert frame.wire == b"\x82\x7e" + struct.pack("!H", 300) + b"x" * 300


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
