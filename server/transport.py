"""The transport seam: what a session needs of the connection that carries it.

A session queues encoded messages; its transport frames them for the wire (a
WebSocket frame today; an SSE event or an HTTP chunk later) and writes them.
The hub encodes a publication once per `Variant` present among a channel's
subscribers, frames it once for that variant, and hands every subscriber of
the variant the same `Frame`: a fan-out frames once, not once per connection.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Protocol

from .protocol import Encoding

__all__ = ["Frame", "Framing", "Handshake", "Headers", "Transport", "Variant", "variant"]


class Frame:
    """Encoded messages ready for one transport: `payload` (the messages as the
    protocol joins them; what budgets and metrics count) and `wire` (all the
    bytes the transport writes for it)."""

    __slots__ = ("payload", "wire")

    def __init__(self, payload: bytes, wire: bytes) -> None:
        self.payload = payload
        self.wire = wire


class Framing(Protocol):
    """How one kind of transport puts messages on the wire. Stateless: one
    instance per kind, shared by every connection of that kind."""

    name: str
    """The transport's name (also its metrics label): websocket, http_stream, sse, ..."""
    unidirectional: bool
    """Carries only pushes, unwrapped (Centrifugo's unidirectional protocol): the
    session reads one connect request and answers it with a connect push."""

    def frame(self, messages: Sequence[bytes], encoding: Encoding) -> Frame:
        """`messages` (at least one, each encoded in `encoding`), in order, as one
        write."""
        ...


class Variant:
    """What the bytes a subscriber gets depend on: the encoding and the framing
    (later also delta or full). Interned by `variant()`: compared and hashed by
    identity, so the hub's per-variant lookup costs what a per-encoding one did."""

    __slots__ = ("encoding", "framing")

    def __init__(self, encoding: Encoding, framing: Framing) -> None:
        self.encoding = encoding
        self.framing = framing

    def frame(self, messages: Sequence[bytes]) -> Frame:
        return self.framing.frame(messages, self.encoding)

    def __repr__(self) -> str:
        return f"Variant({self.encoding.value}, {self.framing.name})"


_VARIANTS: dict[tuple[Encoding, str], Variant] = {}


def variant(encoding: Encoding, framing: Framing) -> Variant:
    """The one `Variant` of `encoding` over `framing` (framings are told apart by name)."""
    key = (encoding, framing.name)
    found = _VARIANTS.get(key)
    if found is None:
        found = _VARIANTS[key] = Variant(encoding, framing)
    return found


class Transport(Protocol):
    """How a session reaches its peer. No call may block or raise.

    Once everything written has left (its unsent bytes are gone after having
    been some), the transport calls its session's `writable`.
    """

    variant: Variant
    """The encoding and framing of this connection (fixed for its lifetime)."""

    sends_close_frame: bool
    """False for a transport that cannot say why it closes (SSE, HTTP streaming):
    the session then ends every connection with a disconnect push, even where a
    WebSocket would carry the code in its close frame alone."""

    connect_fields: Mapping[str, str]
    """Added to the connect reply: an emulated transport's `session` and `node`."""

    def write(self, messages: Sequence[bytes], framed: Frame | None = None) -> int:
        """Write encoded `messages` (not kept), in order, as `variant` frames them,
        in one write; returns the payload bytes written. `framed`: those very
        messages already framed for `variant` (the hub's shared frame of one
        publication), written as they are."""
        ...

    def unsent_bytes(self) -> int:
        """Bytes written but not yet taken by the socket (the peer is not reading)."""
        ...

    def close(self, code: int, reason: str) -> None:
        """End the connection with `code` (a close frame where the transport has one)."""
        ...


class Headers(Mapping[str, str]):
    """A request's headers, looked up case-insensitively; a repeated header's
    values joined with ", "."""

    __slots__ = ("_by_name",)

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        by_name: dict[str, str] = {}
        for name, value in pairs:
            key = name.lower()
            by_name[key] = f"{by_name[key]}, {value}" if key in by_name else value
        self._by_name = by_name

    def __getitem__(self, name: str) -> str:
        return self._by_name[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._by_name

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)


class Handshake:
    """What a connection's opening request said, for the connecting hooks: its
    headers and cookies. A transport keeps one only while a connecting hook
    exists (`AppLayer.wants_handshake`), and the session drops it once connected."""

    __slots__ = ("headers",)

    def __init__(self, headers: Iterable[tuple[str, str]]) -> None:
        self.headers = Headers(headers)

    @property
    def cookies(self) -> dict[str, str]:
        """The Cookie header's cookies by name (a malformed pair is skipped)."""
        cookies: dict[str, str] = {}
        for pair in self.headers.get("cookie", "").replace(",", ";").split(";"):
            name, eq, value = pair.strip().partition("=")
            if name and eq:
                value = value.strip()
                if len(value) > 1 and value[0] == value[-1] == '"':
                    value = value[1:-1]
                cookies.setdefault(name, value)
        return cookies
