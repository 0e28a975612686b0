"""RFC 6455 over a real socket (server/web/websocket_transport.py): close codes, fragments,
pings and the frame budget, as a client sees them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import pytest
from wsfan.node import Node

from tests.conftest import TIMEOUT_SCALE
from tests.raw_ws import RawWebSocket, mask_frame

pytestmark = pytest.mark.brokers("memory")  # the transport, not the broker

CLOSE, PING, PONG = 0x8, 0x9, 0xA
TIMEOUT = 5 * TIMEOUT_SCALE
CONNECT = json.dumps({"id": 1, "connect": {}}).encode()


@pytest.fixture
def port(ws_url: str, http_port: int) -> int:
    """The port of this test's server (requesting `ws_url` starts it)."""
    return http_port


async def recv(ws: RawWebSocket) -> tuple[int, bytes]:
    frame = await asyncio.wait_for(ws.recv_frame(), TIMEOUT)
    assert frame is not None, "closed without a close frame"
    return frame


async def close_code(ws: RawWebSocket) -> int | None:
    return await asyncio.wait_for(ws.close_code(), TIMEOUT)


def ids_in(payload: bytes) -> set[int]:
    return {json.loads(line).get("id", 0) for line in payload.split(b"\n") if line}


async def until_reply(ws: RawWebSocket, command_id: int) -> list[tuple[int, bytes]]:
    """Every frame up to and including the one with reply `command_id`."""
    frames = []
    while True:
        opcode, payload = await recv(ws)
        frames.append((opcode, payload))
        if opcode == 0x1 and command_id in ids_in(payload):
            return frames


# Close frames from the peer ---------------------------------------------------------------


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535])
@pytest.mark.gen_test
async def test_a_close_code_a_peer_may_not_send_is_answered_1002(port: int, code: int):
    ws = await RawWebSocket.open(port)
    await ws.send(code.to_bytes(2, "big"), opcode=CLOSE)
    assert await close_code(ws) == 1002
    ws.close()


@pytest.mark.gen_test
async def test_a_one_byte_close_payload_is_answered_1002(port: int):
    ws = await RawWebSocket.open(port)
    await ws.send(b"\x03", opcode=CLOSE)
    assert await close_code(ws) == 1002
    ws.close()


@pytest.mark.gen_test
async def test_a_close_reason_that_is_not_utf8_is_answered_1007(port: int):
    ws = await RawWebSocket.open(port)
    await ws.send((1000).to_bytes(2, "big") + b"\xff", opcode=CLOSE)
    assert await close_code(ws) == 1007
    ws.close()


@pytest.mark.parametrize("code", [1000, 1001, 1011, 3000, 4999])
@pytest.mark.gen_test
async def test_a_valid_close_code_is_echoed(port: int, code: int):
    ws = await RawWebSocket.open(port)
    await ws.send(code.to_bytes(2, "big") + b"bye", opcode=CLOSE)
    assert await close_code(ws) == code
    ws.close()


@pytest.mark.gen_test
async def test_a_close_without_code_is_answered_1000(port: int):
    ws = await RawWebSocket.open(port)
    await ws.send(b"", opcode=CLOSE)
    assert await close_code(ws) == 1000
    ws.close()


# Fragments ------------------------------------------------------------------------------


def in_fragments(payload: bytes, count: int) -> bytes:
    """`payload` as one text message in `count` frames (the first carries it all)."""
    frames = [mask_frame(payload, opcode=0x1, fin=count == 1)]
    frames += [mask_frame(b"", opcode=0x0, fin=i == count - 1) for i in range(1, count)]
    return b"".join(frames)


@pytest.mark.settings(client={"max_fragments": 4})
@pytest.mark.gen_test
async def test_a_message_in_max_fragments_frames_is_handled(port: int):
    ws = await RawWebSocket.open(port)
    await ws.send_bytes(in_fragments(CONNECT, 4))
    await until_reply(ws, 1)
    ws.close()


@pytest.mark.settings(client={"max_fragments": 4})
@pytest.mark.gen_test
async def test_a_message_in_one_fragment_more_closes_1009(port: int):
    ws = await RawWebSocket.open(port)
    await ws.send_bytes(in_fragments(CONNECT, 5))
    assert await close_code(ws) == 1009
    ws.close()


# Pings --------------------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_of_pings_read_together_only_the_last_gets_a_pong(port: int):
    ws = await RawWebSocket.open(port)
    pings = b"".join(mask_frame(b"p%d" % i, opcode=PING) for i in range(10))
    await ws.send_bytes(pings + mask_frame(CONNECT))  # one write, read at once
    frames = await until_reply(ws, 1)
    assert [payload for opcode, payload in frames if opcode == PONG] == [b"p9"]
    ws.close()


@pytest.mark.settings(client={"max_unsent_bytes": 64 << 20})
@pytest.mark.gen_test(timeout=30 * TIMEOUT_SCALE)
async def test_while_a_pong_is_unsent_no_other_is_added_and_the_latest_ping_is_answered_later(
    port: int, node: Node
):
    ws = await RawWebSocket.open(port, rcvbuf=4096)
    subscribe = json.dumps({"id": 2, "subscribe": {"channel": "news"}}).encode()
    await ws.send(CONNECT + b"\n" + subscribe)
    await until_reply(ws, 2)
    (session,) = node.hub.sessions()
    # Fill the socket: the client does not read, so the server's buffer holds bytes.
    for _ in range(1000):  # polls: each publication is written on a later loop pass
        await node.publish("news", "x" * 60000)
        await asyncio.sleep(0.005)
        if session.transport.unsent_bytes():
            break
    unsent = session.transport.unsent_bytes()
    assert unsent, "the loopback buffers took 60 MB"
    for i in range(10):  # separate writes: mostly separate reads
        await ws.send(b"p%d" % i, opcode=PING)
        await asyncio.sleep(0.01)
    assert session.transport.unsent_bytes() <= unsent + 2 + 2  # one pong of 2 bytes at most

    pongs = []
    while not pongs or pongs[-1] != b"p9":  # now read everything
        opcode, payload = await recv(ws)
        if opcode == PONG:
            pongs.append(payload)
    assert len(pongs) <= 2, pongs  # the first ping's (if read alone) and the latest's
    ws.close()


# The frame budget -----------------------------------------------------------------------


@pytest.mark.settings(client={"frame_rate": 20.0, "frame_burst": 5})
@pytest.mark.gen_test
async def test_frames_past_the_burst_wait_for_the_frame_rate(port: int):
    ws = await RawWebSocket.open(port)
    commands = [mask_frame(CONNECT)] + [
        mask_frame(json.dumps({"id": i, "presence_stats": {"channel": "news"}}).encode())
        for i in range(2, 11)
    ]
    sent = time.monotonic()
    await ws.send_bytes(b"".join(commands))
    arrived: dict[int, float] = {}
    while len(arrived) < 10:
        _, payload = await recv(ws)
        for command_id in ids_in(payload) - {0}:
            arrived[command_id] = time.monotonic() - sent
    # The burst (5 frames) is read at once; the 6th waits for 5 more tokens at 20/s.
    assert arrived[6] >= 0.2
    assert max(arrived[i] for i in range(1, 6)) < arrived[6]
    ws.close()


@pytest.mark.settings(client={"stale_timeout": 0.2, "frame_rate": 20.0, "frame_burst": 5})
@pytest.mark.gen_test
async def test_a_peer_sending_past_its_budget_after_our_close_is_dropped_at_once(
    port: int,
):
    ws = await RawWebSocket.open(port)
    assert await close_code(ws) == 3502  # no connect in time
    started = time.monotonic()
    await ws.send_bytes(mask_frame(b"", opcode=PING) * 50)  # no close frame back
    with contextlib.suppress(ConnectionResetError):  # reset, or at least no close frame
        assert await asyncio.wait_for(ws.recv_frame(), TIMEOUT) is None
    assert time.monotonic() - started < 2.0 * TIMEOUT_SCALE  # not CLOSE_TIMEOUT (5 s)
    ws.close()


@pytest.mark.settings(client={"command_burst": 1000})
@pytest.mark.gen_test
async def test_more_frames_than_one_pass_parses_are_all_handled_in_order(port: int):
    ws = await RawWebSocket.open(port)
    frames = [mask_frame(CONNECT)] + [
        mask_frame(json.dumps({"id": i, "presence_stats": {"channel": "news"}}).encode())
        for i in range(2, 600)  # more than FRAMES_PER_TURN (256) in one write
    ]
    await ws.send_bytes(b"".join(frames))
    order: list[int] = []
    while len(order) < 599:
        _, payload = await recv(ws)
        order += [json.loads(line)["id"] for line in payload.split(b"\n") if line]
    assert order == list(range(1, 600))
    ws.close()
