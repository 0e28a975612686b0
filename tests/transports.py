"""A transport for sessions driven in process: keeps what the session writes."""

from __future__ import annotations

from collections.abc import Sequence

from server.frames import WEBSOCKET
from server.protocol import Encoding
from server.transport import Frame, variant

__all__ = ["RecordingTransport"]


class RecordingTransport:
    """Keeps what a session writes (each write's payload) and the close code; its
    socket takes everything at once, so nothing is ever unsent."""

    sends_close_frame = True

    def __init__(self, encoding: Encoding = Encoding.JSON) -> None:
        self.variant = variant(encoding, WEBSOCKET)
        self.frames: list[bytes] = []
        self.closed: int | None = None

    def write(self, messages: Sequence[bytes], framed: Frame | None = None) -> int:
        frame = framed or self.variant.frame(messages)
        self.frames.append(frame.payload)
        return len(frame.payload)

    def unsent_bytes(self) -> int:
        return 0

    def close(self, code: int, reason: str) -> None:
        self.closed = code
