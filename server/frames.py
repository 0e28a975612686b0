"""RFC 6455 framing, without I/O: client frames in, server frames out.

A server's frames are never masked (RFC 6455 section 5.1), so the bytes of one
publication's frame are the same for every subscriber using the same encoding.
The hub makes one `Frame` per encoding and hands the same one to every
subscriber, so the wire bytes are built once.

`FrameReader` turns the bytes a client sends into whole messages and control
frames, and names the close code for anything RFC 6455 forbids.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

__all__ = [
    "BINARY",
    "CLOSE",
    "PING",
    "PONG",
    "TEXT",
    "Frame",
    "FrameError",
    "FrameReader",
    "close_frame",
    "control_frame",
    "frame_header",
]

TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA

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
    """One message: its payload, and `wire`, the whole frame as sent."""

    __slots__ = ("binary", "payload", "wire")

    def __init__(self, payload: bytes, binary: bool) -> None:
        self.payload = payload
        self.binary = binary
        self.wire = frame_header(len(payload), binary) + payload


def control_frame(opcode: int, payload: bytes = b"") -> bytes:
    """A close, ping or pong frame (payload at most 125 bytes)."""
    return bytes((0x80 | opcode, len(payload))) + payload


def close_frame(code: int, reason: str = "") -> bytes:
    """A close frame; the reason is cut to fit the 125-byte control payload."""
    data = reason.encode("utf-8")[:123].decode("utf-8", "ignore").encode("utf-8")
    return control_frame(CLOSE, code.to_bytes(2, "big") + data)


def _unmask_python(mask: bytes, data: bytes) -> bytes:
    n = len(data)
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "little")
    return (int.from_bytes(data, "little") ^ key).to_bytes(n, "little")


def _fastest_unmask() -> Callable[[bytes, bytes], bytes]:
    try:  # Tornado's C helper, when its wheel has the extension
        from tornado.speedups import websocket_mask

        return websocket_mask
    except ImportError:  # pragma: no cover - depends on the platform's wheel
        return _unmask_python


unmask = _fastest_unmask()


class FrameError(Exception):
    """The client broke RFC 6455 (or a limit): close the connection with `code`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class FrameReader:
    """Reassembles client frames into messages; `feed` returns what completed.

    Each item is (opcode, payload): TEXT or BINARY for a whole message (its
    fragments joined), or a control frame as received. A message longer than
    `max_message` raises FrameError(1009) as soon as its header says so, before
    its bytes are buffered.
    """

    __slots__ = ("_buf", "_max", "_opcode", "_parts", "_size")

    def __init__(self, max_message: int) -> None:
        self._max = max_message
        self._buf = bytearray()
        self._opcode = 0  # of the fragmented message in progress, 0 when none
        self._parts: list[bytes] = []
        self._size = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf = self._buf
        buf += data
        out: list[tuple[int, bytes]] = []
        pos, end = 0, len(buf)
        while end - pos >= 2:
            first, second = buf[pos], buf[pos + 1]
            if first & 0x70:
                raise FrameError(1002, "reserved bits set")
            if not second & 0x80:
                raise FrameError(1002, "client frames must be masked")
            opcode, length, head = first & 0x0F, second & 0x7F, 2
            if length == 126:
                if end - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if end - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            self._check(opcode, bool(first & 0x80), length)
            start = pos + head + 4
            if end - start < length:
                break
            payload = unmask(bytes(buf[start - 4 : start]), bytes(buf[start : start + length]))
            pos = start + length
            message = self._assemble(opcode, bool(first & 0x80), payload)
            if message is not None:
                out.append(message)
        del buf[:pos]
        return out

    def _check(self, opcode: int, fin: bool, length: int) -> None:
        if opcode >= CLOSE:
            if opcode not in (CLOSE, PING, PONG):
                raise FrameError(1002, f"unknown opcode {opcode}")
            if not fin or length > 125:
                raise FrameError(1002, "control frames are short and whole")
            return
        if opcode == 0 and not self._opcode:
            raise FrameError(1002, "continuation frame outside a message")
        if opcode not in (0, TEXT, BINARY):
            raise FrameError(1002, f"unknown opcode {opcode}")
        if opcode and self._opcode:
            raise FrameError(1002, "new message inside a fragmented one")
        if self._size + length > self._max:
            raise FrameError(1009, "message too big")

    def _assemble(self, opcode: int, fin: bool, payload: bytes) -> tuple[int, bytes] | None:
        if opcode >= CLOSE or (opcode and fin):
            return opcode, payload
        if opcode:
            self._opcode = opcode
        self._parts.append(payload)
        self._size += len(payload)
        if not fin:
            return None
        message = (self._opcode, b"".join(self._parts))
        self._opcode, self._parts, self._size = 0, [], 0
        return message
