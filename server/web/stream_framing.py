"""How the HTTP transports put messages on the wire (see server/transport.py).

Every HTTP stream is one response in chunked transfer encoding: each write is
one chunk, so proxies and `fetch` pass it on as it comes. Inside a chunk:
- `http_stream`: the messages newline-delimited, each followed by a newline;
- `sse`: one `data:` event per message (JSON never holds a raw newline);
- the unidirectional forms carry pushes without their `{"push": ...}` wrapper
  and the server ping in the form Centrifugo documents for each: `{}` on
  uni_sse and uni_websocket, `null` on uni_http_stream.

These transports speak JSON only. The WebSocket framing is wsfan.frames'.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..frames import frame_header
from ..protocol import Encoding, join_frame
from ..transport import Frame

__all__ = [
    "END_OF_STREAM",
    "HTTP_STREAM",
    "SSE",
    "UNI_HTTP_STREAM",
    "UNI_SSE",
    "UNI_WEBSOCKET",
    "chunk",
    "unwrapped",
]

END_OF_STREAM = b"0\r\n\r\n"
"""The last chunk of a chunked response."""

_PUSH = b'{"push":'
_PING = b"{}"


def chunk(body: bytes) -> bytes:
    """`body` as one chunk of a chunked response."""
    return b"%x\r\n%b\r\n" % (len(body), body)


def unwrapped(message: bytes, ping: bytes = _PING) -> bytes:
    """A JSON push as the unidirectional protocol sends it (its body, unwrapped);
    the server ping as `ping`; anything else (the connect push) as it is."""
    if message.startswith(_PUSH):
        return message[len(_PUSH) : -1]
    if message == _PING:
        return ping
    return message


class HttpStreamFraming:
    """Newline-delimited JSON in chunks (the SDK's `http_stream`)."""

    name = "http_stream"
    unidirectional = False

    def frame(self, messages: Sequence[bytes], encoding: Encoding) -> Frame:
        payload = join_frame(messages, encoding)
        return Frame(payload, chunk(payload + b"\n"))


class SseFraming:
    """One Server-Sent Event per message, in chunks (the SDK's `sse`)."""

    name = "sse"
    unidirectional = False

    def frame(self, messages: Sequence[bytes], encoding: Encoding) -> Frame:
        payload = join_frame(messages, encoding)
        return Frame(payload, chunk(b"".join([b"data: %b\n\n" % m for m in messages])))


class UniHttpStreamFraming:
    """Unwrapped pushes, newline-delimited, in chunks; pings are `null`."""

    name = "uni_http_stream"
    unidirectional = True

    def frame(self, messages: Sequence[bytes], encoding: Encoding) -> Frame:
        lines = [unwrapped(m, b"null") for m in messages]
        payload = join_frame(lines, encoding)
        return Frame(payload, chunk(payload + b"\n"))


class UniSseFraming:
    """One Server-Sent Event per unwrapped push, in chunks; pings are `{}`."""

    name = "uni_sse"
    unidirectional = True

    def frame(self, messages: Sequence[bytes], encoding: Encoding) -> Frame:
        lines = [unwrapped(m) for m in messages]
        payload = join_frame(lines, encoding)
        return Frame(payload, chunk(b"".join([b"data: %b\n\n" % m for m in lines])))


class UniWebSocketFraming:
    """One text frame per unwrapped push (a plain client parses each frame as
    one JSON value); pings are `{}`."""

    name = "uni_websocket"
    unidirectional = True

    def frame(self, messages: Sequence[bytes], encoding: Encoding) -> Frame:
        lines = [unwrapped(m) for m in messages]
        wire = b"".join([frame_header(len(m), False) + m for m in lines])
        return Frame(join_frame(lines, encoding), wire)


HTTP_STREAM = HttpStreamFraming()
SSE = SseFraming()
UNI_HTTP_STREAM = UniHttpStreamFraming()
UNI_SSE = UniSseFraming()
UNI_WEBSOCKET = UniWebSocketFraming()
