"""Value types of the protocol shared with the broker and the hub: encodings,
stream positions, client info and publications."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = ["ClientInfo", "Encoding", "ProtocolError", "Publication", "StreamPosition"]


class Encoding(StrEnum):
    JSON = "json"
    MSGPACK = "msgpack"


class ProtocolError(Exception):
    """The peer broke the framing or envelope rules; the answer is close 3501."""


@dataclass(slots=True, frozen=True)
class StreamPosition:
    """A place in a channel's stream: offsets rise by one per publication within an epoch."""

    offset: int
    epoch: str


@dataclass(slots=True, frozen=True)
class ClientInfo:
    """Who a publication, join or leave came from."""

    user: str
    client: str
    conn_info: Any = None
    chan_info: Any = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"user": self.user, "client": self.client}
        if self.conn_info is not None:
            out["conn_info"] = self.conn_info
        if self.chan_info is not None:
            out["chan_info"] = self.chan_info
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClientInfo:
        return cls(d.get("user", ""), d.get("client", ""), d.get("conn_info"), d.get("chan_info"))


@dataclass(slots=True, frozen=True)
class Publication:
    """One message in a channel. `offset` is 0 when the channel keeps no history.

    `epoch` travels between nodes (so a subscriber notices a stream that restarted)
    but not to clients: the wire carries it in subscribe and history replies.
    `delta`: the publication may reach subscribers that negotiated delta
    compression as a patch against the one before it (the publisher's `delta`
    flag or the namespace's `delta_publish`); it travels between nodes too, and
    `to_dict` leaves it out (it is not the wire's `delta`, see server/delta.py).
    """

    data: Any
    offset: int = 0
    info: ClientInfo | None = None
    tags: dict[str, str] | None = None
    epoch: str = ""
    delta: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"data": self.data}
        if self.offset:
            out["offset"] = self.offset
        if self.info is not None:
            out["info"] = self.info.to_dict()
        if self.tags:
            out["tags"] = self.tags
        return out

    @classmethod
    def from_dict(
        cls, d: dict[str, Any], offset: int | None = None, epoch: str = ""
    ) -> Publication:
        """From its map; `offset` and `epoch` given here win (brokers keep them
        beside it). A broker's map may say `delta` (see `to_broker_dict`)."""
        info = d.get("info")
        return cls(
            d.get("data"),
            d.get("offset", 0) if offset is None else offset,
            ClientInfo.from_dict(info) if info else None,
            d.get("tags") or None,
            epoch,
            d.get("delta") is True,
        )

    def to_broker_dict(self) -> dict[str, Any]:
        """`to_dict` plus what only nodes exchange: `delta` when set."""
        out = self.to_dict()
        if self.delta:
            out["delta"] = True
        return out
