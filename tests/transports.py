"""A transport for sessions driven in process: keeps what the session writes."""

from __future__ import annotations

from server.frames import Frame

__all__ = ["RecordingTransport"]


class RecordingTransport:
    """Keeps what a session writes (the frames' payloads) and the close code; its
    socket takes everything at once, so nothing is ever unsent."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.closed: int | None = None

    def write_frame(self, frame: Frame) -> None:
        self.frames.append(frame.payload)

    def unsent_bytes(self) -> int:
        return 0

    def close(self, code: int, reason: str) -> None:
        self.closed = code
