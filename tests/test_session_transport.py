"""What a session asks of its transport (server/transport.py): batched writes,
and a disconnect push where the transport has no close frame to say why."""

from __future__ import annotations

import json

import pytest

from server.config import load_settings
from server.node import Node
from server.session import Session
from tests.conftest import TIMEOUT_SCALE
from tests.transports import RecordingTransport


class NoCloseFrameTransport(RecordingTransport):
    """A transport like SSE: its close cannot carry a code."""

    sends_close_frame = False


async def started_node() -> Node:
    node = Node(load_settings(env={}).with_overrides(broker={"type": "memory"}))
    await node.start()
    return node


@pytest.mark.gen_test(timeout=10 * TIMEOUT_SCALE)
async def test_a_bad_frame_on_a_transport_without_close_frames_ends_with_a_disconnect_push():
    node = await started_node()
    try:
        transport = NoCloseFrameTransport()
        session = Session(node, transport)
        await session.handle_frame(b"not json")
        assert transport.closed == 3501
        assert json.loads(transport.frames[-1])["push"]["disconnect"]["code"] == 3501
    finally:
        await node.close()


@pytest.mark.gen_test(timeout=10 * TIMEOUT_SCALE)
async def test_a_bad_frame_on_a_websocket_is_said_by_the_close_frame_alone():
    node = await started_node()
    try:
        transport = RecordingTransport()
        session = Session(node, transport)
        await session.handle_frame(b"not json")
        assert transport.closed == 3501
        assert transport.frames == []
    finally:
        await node.close()


@pytest.mark.gen_test(timeout=10 * TIMEOUT_SCALE)
async def test_replies_queued_in_one_turn_leave_in_one_write():
    node = await started_node()
    try:
        transport = RecordingTransport()
        session = Session(node, transport)
        await session.handle_frame(b'{"id":1,"connect":{}}\n{"id":2,"presence":{"channel":"x"}}')
        session.outbox.flush()
        assert len(transport.frames) == 1
        replies = [json.loads(line) for line in transport.frames[0].split(b"\n")]
        assert [r["id"] for r in replies] == [1, 2]
    finally:
        await node.close()
