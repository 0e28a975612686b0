"""RFC 6455 framing, without I/O: client frames in, server frames out.

A server's frames are never masked (RFC 6455 section 5.1), so the bytes of one
publication's frame are the same for every subscriber of the same variant.
`WEBSOCKET` is the framing (see server/transport.py) the hub and the
connections use: queued messages leave as one data frame.

`FrameReader` turns the bytes a client sends into whole messages and control
frames, and names the close code for anything RFC 6455 forbids or a limit
refuses. `FrameBudget` says how many frames a connection may have read now.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable, Sequence

from .errors import CloseCode, valid_close_code
from .protocol import Encoding, join_frame
from .transport import Frame

__all__ = [
    "BINARY",
    "CLOSE",
    "PING",
    "PONG",
    "TEXT",
    "WEBSOCKET",
    "FrameBudget",
    "FrameError",
    "FrameReader",
    "WebSocketFraming",
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


class WebSocketFraming:
    """Messages as one unfragmented, unmasked data frame: binary for msgpack,
    text for JSON (newline-delimited when there are several)."""

    name = "websocket"
    unidirectional = False

    def frame(self, messages: Sequence[bytes], encoding: Encoding) -> Frame:
        payload = messages[0] if len(messages) == 1 else join_frame(messages, encoding)
        return Frame(payload, frame_header(len(payload), encoding is Encoding.MSGPACK) + payload)


WEBSOCKET = WebSocketFraming()


def control_frame(opcode: int, payload: bytes = b"") -> bytes:
    """A close, ping or pong frame (payload at most 125 bytes)."""
    return bytes((0x80 | opcode, len(payload))) + payload


def close_frame(code: CloseCode | int, reason: str = "") -> bytes:
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

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class FrameReader:
    """Reassembles client frames into messages; `feed` returns what completed.

    Each item is (opcode, payload): TEXT or BINARY for a whole message (its
    fragments joined), or a control frame as received. Limits, each checked as
    soon as a frame's header says so, before its payload is buffered:
    - a message longer than `max_message` bytes, or coming in more than
      `max_fragments` frames, raises FrameError(MESSAGE_TOO_BIG, 1009);
    - a text message that is not UTF-8 raises FrameError(INVALID_DATA, 1007);
    - a close frame with a 1-byte payload or a code a peer may not send raises
      FrameError(PROTOCOL_ERROR, 1002), and one whose reason is not UTF-8
      FrameError(INVALID_DATA, 1007);
    - anything else RFC 6455 forbids raises FrameError(PROTOCOL_ERROR, 1002).
    """

    __slots__ = ("_buf", "_max", "_max_fragments", "_opcode", "_parts", "_size", "parsed")

    def __init__(self, max_message: int, max_fragments: int = sys.maxsize) -> None:
        self._max = max_message
        self._max_fragments = max_fragments
        self._buf = bytearray()
        self._opcode = 0  # of the fragmented message in progress, 0 when none
        self._parts: list[bytes] = []
        self._size = 0
        self.parsed = 0  # frames the last `feed` took from the buffer

    @property
    def buffered(self) -> int:
        """Bytes received and not parsed yet (a partial frame, or frames past a limit)."""
        return len(self._buf)

    def feed(self, data: bytes, limit: int = sys.maxsize) -> list[tuple[int, bytes]]:
        """Buffer `data`, then parse at most `limit` whole frames (fragments and
        control frames count); the rest stays buffered for the next call."""
        buf = self._buf
        buf += data
        out: list[tuple[int, bytes]] = []
        pos, end, count = 0, len(buf), 0
        while count < limit and end - pos >= 2:
            first, second = buf[pos], buf[pos + 1]
            if first & 0x70:
                raise FrameError(CloseCode.PROTOCOL_ERROR, "reserved bits set")
            if not second & 0x80:
                raise FrameError(CloseCode.PROTOCOL_ERROR, "client frames must be masked")
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
            count += 1
            message = self._assemble(opcode, bool(first & 0x80), payload)
            if message is not None:
                out.append(message)
        del buf[:pos]
        self.parsed = count
        return out

    def _check(self, opcode: int, fin: bool, length: int) -> None:
        if opcode >= CLOSE:
            if opcode not in (CLOSE, PING, PONG):
                raise FrameError(CloseCode.PROTOCOL_ERROR, f"unknown opcode {opcode}")
            if not fin or length > 125:
                raise FrameError(CloseCode.PROTOCOL_ERROR, "control frames are short and whole")
            return
        if opcode == 0 and not self._opcode:
            raise FrameError(CloseCode.PROTOCOL_ERROR, "continuation frame outside a message")
        if opcode not in (0, TEXT, BINARY):
            raise FrameError(CloseCode.PROTOCOL_ERROR, f"unknown opcode {opcode}")
        if opcode and self._opcode:
            raise FrameError(CloseCode.PROTOCOL_ERROR, "new message inside a fragmented one")
        if self._size + length > self._max:
            raise FrameError(CloseCode.MESSAGE_TOO_BIG, "message too big")
        if len(self._parts) >= self._max_fragments:  # this frame would be one too many
            raise FrameError(CloseCode.MESSAGE_TOO_BIG, "message in too many fragments")

    def _assemble(self, opcode: int, fin: bool, payload: bytes) -> tuple[int, bytes] | None:
        if opcode >= CLOSE:
            if opcode == CLOSE:
                _check_close(payload)
            return opcode, payload
        if opcode and fin:
            if opcode == TEXT:
                _check_text(payload)
            return opcode, payload
        if opcode:
            self._opcode = opcode
        self._parts.append(payload)
        self._size += len(payload)
        if not fin:
            return None
        opcode, payload = self._opcode, b"".join(self._parts)
        self._opcode, self._parts, self._size = 0, [], 0
        if opcode == TEXT:
            _check_text(payload)
        return opcode, payload


def _check_text(payload: bytes) -> None:
    if not payload.isascii():  # ASCII (most JSON) is UTF-8 already, and checked in C
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError:
            raise FrameError(CloseCode.INVALID_DATA, "text message is not UTF-8") from None


def _check_close(payload: bytes) -> None:
    if not payload:
        return  # no code: a normal close
    if len(payload) == 1:
        raise FrameError(CloseCode.PROTOCOL_ERROR, "close frame with a 1-byte payload")
    code = int.from_bytes(payload[:2], "big")
    if not valid_close_code(code):
        raise FrameError(CloseCode.PROTOCOL_ERROR, f"invalid close code {code}")
    try:
        payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise FrameError(CloseCode.INVALID_DATA, "close reason is not UTF-8") from None


class FrameBudget:
    """A token bucket of frames: `rate` per second, up to `burst` saved (`rate`
    0: no limit). Time is passed in (monotonic seconds), so it is exact under test.

    A connection parses at most `available(now)` frames, `spend`s what it parsed,
    and when that was all it had, waits `wait(n)` seconds before reading on (a
    batch of `n`, rather than waking for each frame).
    """

    __slots__ = ("_burst", "_last", "_rate", "_tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._last = now

    def available(self, now: float) -> int:
        """Whole frames that may be parsed at `now`."""
        if self._rate <= 0:
            return sys.maxsize
        elapsed = now - self._last
        if elapsed > 0:
            self._last = now
            self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
        return int(self._tokens)

    def spend(self, frames: int) -> None:
        if self._rate > 0:
            self._tokens -= frames

    def wait(self, frames: int = 1) -> float:
        """Seconds until `frames` more frames (at most `burst`) are allowed (0: now)."""
        wanted = min(float(frames), self._burst)
        if self._rate <= 0 or self._tokens >= wanted:
            return 0.0
        return (wanted - self._tokens) / self._rate
