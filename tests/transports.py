"""A transport for sessions driven in process: keeps what the session writes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from wsfan.compose import build_node
from wsfan.config import load_settings
from wsfan.frames import WEBSOCKET
from wsfan.node import Node
from wsfan.protocol import Encoding
from wsfan.session import Session
from wsfan.transport import Frame, variant

__all__ = ["RecordingTransport", "messages", "new_session", "started_node"]


class RecordingTransport:
    """Keeps what a session writes (each write's payload) and the close code; its
    socket takes everything at once, so nothing is ever unsent."""

    sends_close_frame = True
    connect_fields: dict[str, str] = {}

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


async def started_node(**overrides: Any) -> Node:
    """A started node on the memory broker, with `overrides` to its settings."""
    settings = load_settings(env={}).with_overrides(broker={"type": "memory"}, **overrides)
    node = build_node(settings)
    await node.start()
    return node


def new_session(node: Node, transport: Any = None) -> Session:
    """A session of `node` on `transport` (a new RecordingTransport by default)."""
    return Session(
        node,
        transport if transport is not None else RecordingTransport(),
        settings=node.settings,
        metrics=node.metrics,
        tokens=node.tokens,
    )


def messages(transport: RecordingTransport) -> list[dict[str, Any]]:
    """Every JSON message written so far, in order."""
    return [json.loads(line) for frame in transport.frames for line in frame.split(b"\n")]
