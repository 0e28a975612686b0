"""The HTTP transports' framings (server/web/stream_framing.py), on fixed bytes:
chunks, SSE events, unwrapped pushes and each transport's ping."""

from __future__ import annotations

import json

import pytest
from wsfan.protocol import Encoding, encode, push
from wsfan.transport import variant
from wsfan.web.stream_framing import (
    END_OF_STREAM,
    HTTP_STREAM,
    SSE,
    UNI_HTTP_STREAM,
    UNI_SSE,
    UNI_WEBSOCKET,
    chunk,
    unwrapped,
)

PUB = encode(push("news", "pub", {"data": {"n": 1}, "offset": 3}), Encoding.JSON)
REPLY = b'{"id":2,"subscribe":{}}'
PING = b"{}"
CONNECT_PUSH = b'{"connect":{"client":"c1","version":"1","ping":25}}'


def chunks(wire: bytes) -> list[bytes]:
    """The bodies of the chunks in `wire`, which must be whole chunks only."""
    bodies = []
    while wire:
        size, _, rest = wire.partition(b"\r\n")
        n = int(size, 16)
        assert rest[n : n + 2] == b"\r\n", wire
        bodies.append(rest[:n])
        wire = rest[n + 2 :]
    return bodies


def test_a_chunk_is_its_hex_length_crlf_the_body_crlf():
    assert chunk(b"hello") == b"5\r\nhello\r\n"
    assert chunk(b"x" * 26) == b"1a\r\n" + b"x" * 26 + b"\r\n"


def test_the_end_of_a_stream_is_the_zero_length_chunk():
    assert END_OF_STREAM == b"0\r\n\r\n"


def test_http_stream_writes_messages_newline_terminated_in_one_chunk():
    frame = HTTP_STREAM.frame([REPLY, PUB, PING], Encoding.JSON)
    assert chunks(frame.wire) == [REPLY + b"\n" + PUB + b"\n" + PING + b"\n"]
    assert frame.payload == b"\n".join([REPLY, PUB, PING])


def test_sse_writes_one_data_event_per_message_in_one_chunk():
    frame = SSE.frame([REPLY, PUB], Encoding.JSON)
    assert chunks(frame.wire) == [b"data: " + REPLY + b"\n\ndata: " + PUB + b"\n\n"]
    assert frame.payload == REPLY + b"\n" + PUB  # what budgets count: the messages alone


@pytest.mark.parametrize("framing", [UNI_SSE, UNI_HTTP_STREAM, UNI_WEBSOCKET], ids=lambda f: f.name)
def test_uni_framings_send_a_push_without_its_wrapper(framing):
    frame = framing.frame([PUB], Encoding.JSON)
    assert json.loads(frame.payload) == {"pub": {"data": {"n": 1}, "offset": 3}, "channel": "news"}


def test_unwrapping_leaves_the_connect_push_as_it_is():
    assert unwrapped(CONNECT_PUSH) == CONNECT_PUSH


@pytest.mark.parametrize(
    ("framing", "wire"),
    [
        (HTTP_STREAM, chunk(b"{}\n")),
        (SSE, chunk(b"data: {}\n\n")),
        (UNI_SSE, chunk(b"data: {}\n\n")),
        (UNI_HTTP_STREAM, chunk(b"null\n")),
        (UNI_WEBSOCKET, b"\x81\x02{}"),
    ],
    ids=lambda v: getattr(v, "name", ""),
)
def test_each_transport_pings_in_its_own_form(framing, wire):
    assert framing.frame([PING], Encoding.JSON).wire == wire


def test_uni_http_stream_writes_unwrapped_messages_newline_terminated_in_one_chunk():
    frame = UNI_HTTP_STREAM.frame([CONNECT_PUSH, PUB, PING], Encoding.JSON)
    (body,) = chunks(frame.wire)
    assert [json.loads(line) for line in body.splitlines()] == [
        json.loads(CONNECT_PUSH),
        {"pub": {"data": {"n": 1}, "offset": 3}, "channel": "news"},
        None,
    ]
    assert body.endswith(b"\n")


def test_uni_sse_writes_one_data_event_per_unwrapped_message():
    frame = UNI_SSE.frame([PUB, PING], Encoding.JSON)
    (body,) = chunks(frame.wire)
    events = body.split(b"\n\n")
    assert events[-1] == b""  # every event ends with a blank line
    assert [json.loads(e.removeprefix(b"data: ")) for e in events[:-1]] == [
        {"pub": {"data": {"n": 1}, "offset": 3}, "channel": "news"},
        {},
    ]


def test_uni_websocket_writes_one_unmasked_text_frame_per_message():
    message = unwrapped(PUB)
    wire = UNI_WEBSOCKET.frame([PUB, PING], Encoding.JSON).wire
    assert wire == bytes([0x81, len(message)]) + message + b"\x81\x02{}"


def test_a_long_uni_websocket_message_has_the_16_bit_length_form():
    big = b'{"push":{"pub":{"data":"' + b"x" * 300 + b'"},"channel":"news"}}'
    wire = UNI_WEBSOCKET.frame([big], Encoding.JSON).wire
    body = unwrapped(big)
    assert wire[:4] == bytes([0x81, 126]) + len(body).to_bytes(2, "big")
    assert wire[4:] == body


def test_only_the_uni_framings_are_unidirectional_and_each_has_its_own_variant():
    framings = [HTTP_STREAM, SSE, UNI_SSE, UNI_HTTP_STREAM, UNI_WEBSOCKET]
    assert [f.unidirectional for f in framings] == [False, False, True, True, True]
    variants = {variant(Encoding.JSON, f) for f in framings}
    assert len(variants) == 5
    assert variant(Encoding.JSON, SSE) is variant(Encoding.JSON, SSE)
