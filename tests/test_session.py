"""The session core (server/session/session.py): the connection's lifecycle,
liveness and expiry, driven in process on a real node (memory broker); and what
it asks of its transport (server/transport.py): batched writes, and a
disconnect push where the transport has no close frame to say why."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from wsfan.errors import Disconnect, DisconnectCode

from tests.conftest import TIMEOUT_SCALE
from tests.transports import RecordingTransport, messages, new_session, started_node


class NoCloseFrameTransport(RecordingTransport):
    """A transport like SSE: its close cannot carry a code."""

    sends_close_frame = False


async def closed_with(transport: RecordingTransport) -> int:
    """The close code, once the session closed (polled, within the test's timeout)."""
    while transport.closed is None:
        await asyncio.sleep(0.01)
    return transport.closed


@pytest.mark.gen_test(timeout=10 * TIMEOUT_SCALE)
async def test_a_bad_frame_on_a_transport_without_close_frames_ends_with_a_disconnect_push():
    node = await started_node()
    try:
        transport = NoCloseFrameTransport()
        session = new_session(node, transport)
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
        session = new_session(node, transport)
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
        session = new_session(node, transport)
        await session.handle_frame(b'{"id":1,"connect":{}}\n{"id":2,"presence":{"channel":"x"}}')
        session.outbox.flush()
        assert len(transport.frames) == 1
        replies = [json.loads(line) for line in transport.frames[0].split(b"\n")]
        assert [r["id"] for r in replies] == [1, 2]
    finally:
        await node.close()


@pytest.mark.gen_test(timeout=10 * TIMEOUT_SCALE)
async def test_a_connection_that_never_connects_closes_as_stale():
    node = await started_node(client={"stale_timeout": 0.05})
    try:
        transport = RecordingTransport()
        new_session(node, transport)
        assert await closed_with(transport) == DisconnectCode.STALE
    finally:
        await node.close()


@pytest.mark.gen_test(timeout=10 * TIMEOUT_SCALE)
async def test_a_ping_left_unanswered_closes_with_3012():
    node = await started_node(client={"ping_interval": 0.05, "pong_timeout": 0.05})
    try:
        transport = RecordingTransport()
        session = new_session(node, transport)
        await session.handle_frame(b'{"id":1,"connect":{}}')
        assert await closed_with(transport) == DisconnectCode.NO_PONG
        assert {} in messages(transport)  # the ping went out
    finally:
        await node.close()


@pytest.mark.gen_test(timeout=10 * TIMEOUT_SCALE)
async def test_a_connected_client_is_told_why_before_the_close():
    node = await started_node()
    try:
        transport = RecordingTransport()
        session = new_session(node, transport)
        await session.handle_frame(b'{"id":1,"connect":{}}')
        session.disconnect(Disconnect(DisconnectCode.SHUTDOWN))
        sent = messages(transport)
        assert sent[0]["id"] == 1  # the queued reply first
        assert sent[-1]["push"]["disconnect"]["code"] == DisconnectCode.SHUTDOWN
        assert transport.closed == DisconnectCode.SHUTDOWN
    finally:
        await node.close()


@pytest.mark.gen_test(timeout=10 * TIMEOUT_SCALE)
async def test_closing_takes_the_connection_and_its_channels_out_of_the_hub():
    node = await started_node()
    try:
        session = new_session(node)
        await session.handle_frame(b'{"id":1,"connect":{}}\n{"id":2,"subscribe":{"channel":"a"}}')
        assert node.hub.session(session.client_id) is session
        assert node.hub.num_subscribers("a") == 1
        session.on_transport_closed()
        assert node.hub.session(session.client_id) is None
        while node.hub.num_subscribers("a"):  # the leave runs in the background
            await asyncio.sleep(0.01)
    finally:
        await node.close()


@pytest.mark.gen_test(timeout=10 * TIMEOUT_SCALE)
async def test_the_server_api_refresh_with_expired_closes_with_3005():
    node = await started_node()
    try:
        transport = RecordingTransport()
        session = new_session(node, transport)
        await session.handle_frame(b'{"id":1,"connect":{}}')
        later = int(time.time()) + 3600
        session.server_refresh(expire_at=later)
        assert session.expires_at == later
        session.server_refresh(expired=True)
        assert transport.closed == DisconnectCode.EXPIRED
    finally:
        await node.close()
