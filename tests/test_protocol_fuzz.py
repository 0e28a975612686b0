"""Property-based fuzzing of the protocol core and of a session, in both encodings.

Promises checked: the decoder raises ProtocolError and nothing else; envelope and
request validation raise ProtocolError / ReplyError and nothing else; whatever a
frame holds, a session answers every command that has an id or closes the
connection with a protocol close code, and never lets an exception out.

Whole sessions over real sockets too (a server per example): every command id
gets exactly one reply unless a protocol close ends the connection first (and
never more than one), no client-caused problem answers 100 (temporary), and
nothing is logged at ERROR or with a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections import Counter
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port
from wsfan.compose import build_node
from wsfan.config import load_settings
from wsfan.errors import ReplyError
from wsfan.node import Node
from wsfan.protocol import (
    METHODS,
    ConnectRequest,
    Encoding,
    HistoryRequest,
    ProtocolError,
    PublishRequest,
    RPCRequest,
    SubscribeRequest,
    decode_frame,
    encode,
    parse_command,
    parse_request,
)
from wsfan.web.app import make_app
from wsfan.web.endpoint import close_websockets
from wsfan.web.upgrade import Listener

from tests.conftest import TIMEOUT_SCALE
from tests.raw_ws import RawWebSocket
from tests.transports import RecordingTransport, new_session

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=10) | st.sampled_from(METHODS), inner, max_size=4)
    ),
    max_leaves=25,
)
method_names = st.sampled_from(METHODS) | st.text(max_size=10)
commands = st.builds(
    lambda cmd_id, method, params, extra: {"id": cmd_id, method: params, **extra},
    st.integers(min_value=-2, max_value=2**33) | st.sampled_from([None, "1", 1.5]),
    method_names,
    values
    | st.fixed_dictionaries(
        {"channel": st.text(max_size=12) | st.sampled_from(["news", "chat:a", "nope:x"])},
        optional={"data": values, "limit": values, "recover": values, "offset": values},
    ),
    st.dictionaries(st.text(max_size=5), values, max_size=2),
)
REQUESTS = [ConnectRequest, SubscribeRequest, PublishRequest, HistoryRequest, RPCRequest]


def pack(messages: list[Any], encoding: Encoding) -> bytes:
    """A frame as a client would send it; values JSON cannot carry become strings."""
    if encoding is Encoding.JSON:
        return "\n".join(json.dumps(m, default=repr) for m in messages).encode()
    return b"".join(msgpack.packb(m, use_bin_type=True) for m in messages)


@FUZZ
@given(data=st.binary(max_size=200), encoding=st.sampled_from(list(Encoding)))
def test_decoder_raises_only_protocol_error_on_any_bytes(data: bytes, encoding: Encoding):
    try:
        assert isinstance(decode_frame(data, encoding), list)
    except ProtocolError:
        return


@FUZZ
@given(text=st.text(max_size=200))
def test_json_decoder_raises_only_protocol_error_on_any_text(text: str):
    try:
        assert isinstance(decode_frame(text, Encoding.JSON), list)
    except ProtocolError:
        return


@FUZZ
@given(message=values | commands, request=st.sampled_from(REQUESTS))
def test_command_validation_raises_only_protocol_errors(message: Any, request: type):
    try:
        command = parse_command(message)
    except ProtocolError:
        return
    try:
        parsed = parse_request(request, command.params)
    except ReplyError:
        return
    for encoding in Encoding:  # what passed validation can be sent back in either encoding
        encode({"id": 1, "rpc": {"data": getattr(parsed, "data", None)}}, encoding)


async def run_session(frame: bytes, encoding: Encoding) -> tuple[RecordingTransport, set[int]]:
    node = build_node(load_settings(env={}).with_overrides(broker={"type": "memory"}))
    await node.start()
    transport = RecordingTransport(encoding)
    session = new_session(node, transport)
    await session.handle_frame(frame if encoding is Encoding.MSGPACK else frame.decode())
    await asyncio.sleep(0)
    answered = {
        m.get("id", 0)
        for f in transport.frames
        for m in decode_frame(f, encoding)
        if isinstance(m, dict)
    }
    await node.close()
    return transport, answered


@FUZZ
@given(
    messages=st.lists(commands, min_size=1, max_size=4), encoding=st.sampled_from(list(Encoding))
)
def test_session_answers_every_command_or_closes(messages: list[Any], encoding: Encoding):
    try:
        frame = pack([{"id": 1000, "connect": {}}, *messages], encoding)
    except OverflowError:  # msgpack has no integers past 64 bits: no client can send them
        assume(False)
    transport, answered = asyncio.run(run_session(frame, encoding))
    if transport.closed is not None:
        assert transport.closed == 3501 or 3000 <= transport.closed < 4000
        return
    for m in messages:
        if type(m["id"]) is int and m["id"] > 0:
            assert m["id"] in answered, m


@pytest.mark.gen_test(timeout=30 * TIMEOUT_SCALE)
async def test_fuzzed_frames_over_a_real_socket_get_a_reply_or_a_protocol_close(
    http_server, http_port: int, node: Node
):
    rng = random.Random(8)
    for i in range(20):
        ws = await RawWebSocket.open(http_port, subprotocol="msgpack" if i % 2 else None)
        try:
            payload = rng.randbytes(rng.randrange(1, 300))
            if i % 4 == 0:  # a valid connect first, then garbage
                await ws.send(
                    b'{"id":1,"connect":{}}' if i % 2 == 0 else b"\x82\xa2id\x01\xa7connect\x80"
                )
            await ws.send(payload, opcode=0x2 if i % 2 else 0x1)
            code = await asyncio.wait_for(ws.close_code(), 5 * TIMEOUT_SCALE)
            assert code in (3501, 1007, 1009), (i, payload)  # 1007: a text frame not UTF-8
        finally:
            ws.close()
    # and the server still serves
    ws = await RawWebSocket.open(http_port)
    try:
        await ws.send(b'{"id":1,"connect":{}}')
        frame = await asyncio.wait_for(ws.recv_frame(), 5 * TIMEOUT_SCALE)
        assert frame is not None and b'"connect"' in frame[1]
    finally:
        ws.close()


SENTINEL = 4242  # answered 108 (no such rpc handler) once everything before it was


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def read_session(ws: RawWebSocket, encoding: Encoding) -> tuple[list[Any], int | None]:
    """Messages until the sentinel's reply, or until the server closes (its code)."""
    messages: list[Any] = []
    while True:
        frame = await asyncio.wait_for(ws.recv_frame(), 10 * TIMEOUT_SCALE)
        if frame is None:
            return messages, None
        opcode, payload = frame
        if opcode == 0x8:
            return messages, int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
        for message in decode_frame(payload, encoding):
            messages.append(message)
            if isinstance(message, dict) and message.get("id") == SENTINEL:
                return messages, None


async def served_session(
    frame: bytes, encoding: Encoding, redis: dict[str, str] | None = None
) -> tuple[list[Any], int | None]:
    """`frame` sent over a real socket to a server of its own (on the memory
    broker, or the Redis broker with `redis` settings)."""
    base = load_settings(env={})
    if redis is None:
        node = build_node(base.with_overrides(broker={"type": "memory"}))
    else:
        node = build_node(base.with_overrides(broker={"type": "redis"}, redis=redis))
    await node.start()
    app = make_app(node)
    server = HTTPServer(app)
    listener = Listener(server)
    sock, port = bind_unused_port()
    listener.add_sockets([sock])
    try:
        ws = await RawWebSocket.open(
            port, subprotocol="msgpack" if encoding.value == "msgpack" else None
        )
        try:
            await ws.send(frame, opcode=0x2 if encoding is Encoding.MSGPACK else 0x1)
            return await read_session(ws, encoding)
        finally:
            ws.close()
    finally:
        listener.stop()
        await close_websockets(app)
        await server.close_all_connections()
        await node.close()


def expected_replies(frame: bytes, encoding: Encoding) -> Counter[int]:
    """How many replies each id is owed: one per command the envelope accepts, up
    to the first it does not (a malformed frame is owed nothing)."""
    owed: Counter[int] = Counter()
    try:
        messages = decode_frame(frame, encoding)
    except ProtocolError:
        return owed
    for message in messages:
        try:
            command = parse_command(message)
        except ProtocolError:
            break  # the connection closes here
        if command.id:
            owed[command.id] += 1
    return owed


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> dict[str, str] | None:
    """No Redis settings (the memory broker), or the session's Valkey with a prefix."""
    if request.param == "memory":
        return None
    url = request.getfixturevalue("redis_url")
    return {"url": url, "prefix": f"fuzz-{random.randrange(1 << 30)}:"}


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    messages=st.lists(commands, min_size=1, max_size=5), encoding=st.sampled_from(list(Encoding))
)
def test_a_session_over_a_real_socket_answers_each_id_once_without_errors(
    backend: dict[str, str] | None, messages: list[Any], encoding: Encoding
):
    assume(all(m.get("id") != SENTINEL for m in messages))
    sent = [{"id": 1000, "connect": {}}, *messages, {"id": SENTINEL, "rpc": {"method": "x"}}]
    try:
        frame = pack(sent, encoding)
    except OverflowError:  # msgpack has no integers past 64 bits: no client can send them
        assume(False)
    records = Records()
    root = logging.getLogger()
    root.addHandler(records)
    try:
        received, closed = asyncio.run(served_session(frame, encoding, backend))
    finally:
        root.removeHandler(records)
    replies = Counter(m["id"] for m in received if isinstance(m, dict) and m.get("id"))
    owed = expected_replies(frame, encoding)
    if closed is None:
        assert replies == owed, (sent, received)
    else:
        assert closed == 3501 or 3000 <= closed < 4000, closed
        assert all(replies[i] <= owed[i] for i in replies), (sent, received)
    errors = [m["error"] for m in received if isinstance(m, dict) and "error" in m]
    assert not [e for e in errors if e["code"] == 100], (sent, errors)
    bad = [r for r in records.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [r.getMessage() for r in bad]
