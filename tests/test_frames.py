"""Outgoing WebSocket frames (server/frames.py): RFC 6455 headers at each length edge."""

from __future__ import annotations

import struct

import pytest

from server.frames import Frame, frame_header


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


def test_wire_bytes_are_built_once_and_shared() -> None:
    frame = Frame(b"x" * 300, binary=True)
    assert frame.wire is frame.wire
