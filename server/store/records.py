"""Publications as MongoDB documents, and back: pure conversions, no I/O.

The publication map (data, info, tags) is stored as msgpack bytes, the same
encoding it has on Redis: msgpack data may hold values BSON cannot (maps with
integer keys, integers past 64 bits), and the log must give back exactly what
was published. Channel, epoch, offset and times stay plain fields for indexes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgpack

from ..protocol import Encoding, Publication, encode

__all__ = ["LogRecord", "RetainedState", "publication_from_document"]


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One publication of a persisted channel, queued for the durable log.

    `ttl` 0 keeps the document forever; otherwise MongoDB's TTL index removes it
    `ttl` seconds after `time`.
    """

    channel: str
    epoch: str
    offset: int
    payload: bytes  # msgpack of the publication map
    time: float  # seconds since the epoch, when the broker accepted it
    ttl: float = 0.0
    retain: bool = False  # also becomes the channel's retained state

    @classmethod
    def of(
        cls, channel: str, pub: Publication, time: float, ttl: float, retain: bool = False
    ) -> LogRecord:
        payload = encode(pub.to_dict(), Encoding.MSGPACK)  # as the broker carries it
        return cls(channel, pub.epoch, pub.offset, payload, time, ttl, retain)

    def document(self) -> dict[str, Any]:
        when = datetime.fromtimestamp(self.time, UTC)
        doc: dict[str, Any] = {
            "channel": self.channel,
            "epoch": self.epoch,
            "offset": self.offset,
            "pub": self.payload,
            "time": when,
        }
        if self.ttl > 0:
            doc["expire_at"] = when + timedelta(seconds=self.ttl)
        return doc

    def to_list(self) -> list[Any]:
        """Compact form for the spill file."""
        return [
            self.channel,
            self.epoch,
            self.offset,
            self.payload,
            self.time,
            self.ttl,
            self.retain,
        ]

    @classmethod
    def from_list(cls, item: list[Any]) -> LogRecord:
        channel, epoch, offset, payload, time, ttl, retain = item
        return cls(
            str(channel),
            str(epoch),
            int(offset),
            bytes(payload),
            float(time),
            float(ttl),
            bool(retain),
        )

    def state_document(self) -> dict[str, Any]:
        """The retained-state fields this record sets (newest `time` wins)."""
        return {
            "pub": self.payload,
            "epoch": self.epoch,
            "offset": self.offset,
            "time": datetime.fromtimestamp(self.time, UTC),
            "explicit": False,
        }


@dataclass(frozen=True, slots=True)
class RetainedState:
    """A channel's retained state: its latest publication, or a document set through
    the API (`explicit`, offset 0) at stream position `position`."""

    publication: Publication
    explicit: bool
    time: datetime

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> RetainedState:
        pub = publication_from_document(doc)
        return cls(pub, bool(doc.get("explicit")), doc["time"])


def publication_from_document(doc: dict[str, Any]) -> Publication:
    """The publication a log document holds, with its offset and epoch."""
    raw = msgpack.unpackb(doc["pub"], raw=False, strict_map_key=False)
    return Publication.from_dict(raw, offset=int(doc["offset"]), epoch=str(doc["epoch"]))
