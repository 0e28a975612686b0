"""The transport seam: variants are interned, frames carry payload and wire."""

from __future__ import annotations

from wsfan.frames import WEBSOCKET
from wsfan.protocol import Encoding
from wsfan.transport import Frame, variant


class LineFraming:
    """A framing other than WebSocket's: one line per message."""

    name = "lines"

    def frame(self, messages: list[bytes], encoding: Encoding) -> Frame:
        payload = b"\n".join(messages)
        return Frame(payload, payload + b"\n")


def test_one_encoding_over_one_framing_is_one_variant() -> None:
    assert variant(Encoding.JSON, WEBSOCKET) is variant(Encoding.JSON, WEBSOCKET)


def test_encodings_and_framings_make_distinct_variants() -> None:
    lines = LineFraming()
    found = {
        variant(Encoding.JSON, WEBSOCKET),
        variant(Encoding.MSGPACK, WEBSOCKET),
        variant(Encoding.JSON, lines),
        variant(Encoding.MSGPACK, lines),
    }
    assert len(found) == 4


def test_a_variant_frames_with_its_framing_in_its_encoding() -> None:
    frame = variant(Encoding.JSON, LineFraming()).frame([b"{}", b"{}"])
    assert (frame.payload, frame.wire) == (b"{}\n{}", b"{}\n{}\n")
