"""Outgoing WebSocket messages, framed for the wire once however many peers get them.

A server's frames are never masked (RFC 6455 section 5.1), so the bytes of one
publication's frame are the same for every subscriber using the same encoding.
The hub makes one `Frame` per encoding and hands it to every subscriber; the
first transport that writes it builds the wire bytes and the rest reuse them.
"""

from __future__ import annotations

import struct

__all__ = ["Frame", "frame_header"]

_FIN_TEXT = 0x81
_FIN_BINARY = 0x82
_MEDIUM = struct.Struct("!BBH")
_LARGE = struct.Struct("!BBQ")


def frame_header(length: int, binary: bool) -> bytes:
    """The header of one unfragmented, unmasked data frame of `length` bytes."""
    first = _FIN_BINARY if binary else _FIN_TEXT
    if length < 126:
        return bytes((first, length))
    if length < 0x10000:
        return _MEDIUM.pack(first, 126, length)
    return _LARGE.pack(first, 127, length)


class Frame:
    """One message's payload; `wire` is the whole frame, built on first use."""

    __slots__ = ("_wire", "binary", "payload")

    def __init__(self, payload: bytes, binary: bool) -> None:
        self.payload = payload
        self.binary = binary
        self._wire: bytes | None = None

    @property
    def wire(self) -> bytes:
        wire = self._wire
        if wire is None:
            wire = self._wire = frame_header(len(self.payload), self.binary) + self.payload
        return wire
