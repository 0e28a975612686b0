"""Delta compression of publications (Centrifugo's `delta: "fossil"`); no I/O.

A subscription that negotiated delta (`negotiate`) gets every publication's
`data` as bytes: the JSON protocol carries them as a JSON *string* holding the
data's JSON text, msgpack as binary holding the data's msgpack encoding, so the
bytes a client keeps are exactly the bytes a patch was made against. A
publication is sent either in full (`full_form`: those bytes, no `delta`) or as
a Fossil patch against the publication before it (`patch_form`: `delta: true`),
which the SDK applies to the bytes it kept (centrifuge-js `applyDeltaIfNeeded`).

Patches are made by the hub, once per publication, channel and encoding
(server/hub.py), against the last publication it delivered in the channel
(`Last`); which subscriber gets which form is the subscription's choice
(server/session/subscriptions.py). JSON patches are `utf8_safe`, so a patch of
non-ASCII text is itself valid UTF-8 and survives the trip as a JSON string.
"""

from __future__ import annotations

from typing import Any

from .config import ChannelOptions
from .errors import ErrorCode, ReplyError
from .protocol import DELTA_TYPES, Encoding, Publication, encode, fossil

__all__ = ["Last", "data_bytes", "full_form", "make_patch", "negotiate", "patch_form"]


def negotiate(requested: str, options: ChannelOptions) -> bool:
    """Whether a subscribe asking for `requested` ("" for none) gets delta
    compression; ReplyError(107) for a type this server does not know or the
    namespace does not allow (the namespace's check makes sure it keeps history
    and recovery, so the subscription is positioned)."""
    if not requested:
        return False
    if requested not in DELTA_TYPES:
        raise ReplyError(ErrorCode.BAD_REQUEST, f"delta: unknown delta type {requested!r}")
    if requested not in options.allowed_delta_types or not options.recoverable:
        raise ReplyError(ErrorCode.BAD_REQUEST, f"delta: {requested!r} not allowed in this channel")
    return True


def data_bytes(data: Any, encoding: Encoding) -> bytes:
    """The bytes a delta subscription holds for `data` in `encoding`."""
    return encode(data, encoding)


def _carried(data: bytes, encoding: Encoding) -> str | bytes:
    # JSON bytes from `encode` (and utf8_safe patches of them) are valid UTF-8.
    return data.decode("utf-8") if encoding is Encoding.JSON else data


def full_form(pub: Publication, data: bytes, encoding: Encoding) -> dict[str, Any]:
    """`pub` as a delta subscription gets it in full: `data` carried as bytes."""
    body = pub.to_dict()
    body["data"] = _carried(data, encoding)
    return body


def patch_form(pub: Publication, patch: bytes, encoding: Encoding) -> dict[str, Any]:
    """`pub` as a patch against the publication before it: `delta: true`."""
    body = pub.to_dict()
    body["data"] = _carried(patch, encoding)
    body["delta"] = True
    return body


def make_patch(previous: bytes, data: bytes, encoding: Encoding) -> bytes | None:
    """The Fossil patch turning `previous` into `data`, or None when it would
    not be shorter than `data` itself (the publication then goes in full)."""
    patch = fossil.create(previous, data, utf8_safe=encoding is Encoding.JSON)
    return patch if fossil.delta_worth_it(patch, data) else None


class Last:
    """The last publication the hub delivered in a channel: its position and
    its data's bytes per encoding (made once each, when first asked for)."""

    __slots__ = ("_bytes", "data", "epoch", "offset")

    def __init__(self, pub: Publication) -> None:
        self.offset = pub.offset
        self.epoch = pub.epoch
        self.data = pub.data
        self._bytes: dict[Encoding, bytes] = {}

    def bytes_in(self, encoding: Encoding) -> bytes:
        found = self._bytes.get(encoding)
        if found is None:
            found = self._bytes[encoding] = data_bytes(self.data, encoding)
        return found

    def precedes(self, pub: Publication) -> bool:
        """Whether this is the publication right before `pub` in its stream."""
        return self.offset > 0 and self.offset == pub.offset - 1 and self.epoch == pub.epoch

    @property
    def size(self) -> int:
        """Bytes held for the channel (what memory the record costs, roughly)."""
        return sum(len(b) for b in self._bytes.values())
