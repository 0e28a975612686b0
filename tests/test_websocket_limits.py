"""Every client limit is configurable; each is tested on both sides of its edge."""

from __future__ import annotations

import asyncio
import json

import pytest
from wsfan.node import Node
from wsfan.protocol import Encoding

from tests.conftest import TIMEOUT_SCALE

# config/default.toml has presence and join/leave off outside namespaces; the tests
# below use them (or a presence call) on channels such as "news", so they say so.
WITH_PRESENCE = {"presence": True, "join_leave": True}


def frame_of_size(size: int) -> str:
    """A valid JSON connect command padded to exactly `size` bytes."""
    head = '{"id":1,"connect":{"name":"'
    tail = '"}}'
    return head + "x" * (size - len(head) - len(tail)) + tail


@pytest.mark.settings(client={"max_frame_bytes": 1024})
@pytest.mark.gen_test
async def test_frame_at_size_limit_is_accepted(open_client):
    c = await open_client(Encoding.JSON)
    frame = frame_of_size(1024)
    assert len(frame.encode()) == 1024
    await c.send_raw(frame)
    assert "connect" in await c.reply(1)


@pytest.mark.settings(client={"max_frame_bytes": 1024})
@pytest.mark.gen_test
async def test_frame_over_size_limit_closes_with_1009(open_client):
    c = await open_client(Encoding.JSON)
    await c.send_raw(frame_of_size(1025))
    assert (await c.closed())[0] == 1009


@pytest.mark.settings(client={"max_channels": 2})
@pytest.mark.gen_test
async def test_subscriptions_up_to_max_channels_succeed_and_one_more_answers_106(client):
    c = await client()
    await c.result("subscribe", {"channel": "a"})
    await c.result("subscribe", {"channel": "b"})
    assert (await c.call("subscribe", {"channel": "c"}))["error"]["code"] == 106
    await c.result("unsubscribe", {"channel": "a"})
    await c.result("subscribe", {"channel": "c"})


@pytest.mark.settings(client={"max_channel_length": 10})
@pytest.mark.gen_test
async def test_channel_name_at_max_length_is_accepted_and_one_byte_more_answers_106(client):
    c = await client()
    await c.result("subscribe", {"channel": "a" * 10})
    assert (await c.call("subscribe", {"channel": "b" * 11}))["error"]["code"] == 106
    # the limit counts bytes: five two-byte characters fit, six do not
    await c.result("subscribe", {"channel": "é" * 5})
    assert (await c.call("subscribe", {"channel": "é" * 6}))["error"]["code"] == 106


@pytest.mark.settings(client={"history_max_limit": 3})
@pytest.mark.gen_test
async def test_history_limit_is_capped_at_history_max_limit(client, node: Node):
    c = await client()
    for i in range(5):
        await node.publish("news", i)
    for asked, got in ((3, 3), (4, 3), (-1, 3), (2, 2)):
        result = await c.result("history", {"channel": "news", "limit": asked})
        assert len(result["publications"]) == got, asked


@pytest.mark.settings(client={"stale_timeout": 0.2})
@pytest.mark.gen_test
async def test_connection_without_connect_in_time_closes_with_3502(client):
    c = await client(connect=False)
    assert (await c.closed())[0] == 3502


@pytest.mark.settings(channels=WITH_PRESENCE, client={"stale_timeout": 0.3})
@pytest.mark.gen_test
async def test_connect_within_stale_timeout_keeps_connection(client):
    c = await client(connect=False)
    await c.connect()
    await asyncio.sleep(0.6 * TIMEOUT_SCALE)
    assert await c.result("presence_stats", {"channel": "news"})


@pytest.mark.settings(channels=WITH_PRESENCE, client={"ping_interval": 0.1, "pong_timeout": 0.2})
@pytest.mark.gen_test
async def test_server_pings_with_empty_message_and_pong_keeps_connection(client):
    c = await client()
    pings = 0
    while pings < 5:
        message = await c.recv()
        if message == {}:
            pings += 1
            await c.send({})
    assert await c.result("presence_stats", {"channel": "news"})


@pytest.mark.settings(client={"ping_interval": 0.1, "pong_timeout": 0.2})
@pytest.mark.gen_test
async def test_client_that_does_not_pong_gets_disconnect_push_and_close_3012(client):
    c = await client()
    messages = []
    while (message := await c.recv()) is not None:
        messages.append(message)
    assert {"push": {"disconnect": {"code": 3012, "reason": "no pong", "reconnect": True}}} in [
        json.loads(json.dumps(m)) for m in messages
    ]
    assert c.conn.close_code == 3012


@pytest.mark.settings(client={"max_data_depth": 3})
@pytest.mark.gen_test
async def test_publish_data_nested_beyond_max_data_depth_answers_107(client):
    c = await client()
    await c.result("publish", {"channel": "news", "data": {"a": {"b": [1]}}})
    error = (await c.call("publish", {"channel": "news", "data": {"a": {"b": [[1]]}}}))["error"]
    assert error["code"] == 107 and "data" in error["message"]
