"""What an SDK does with a delta subscription, for tests: keep the bytes of the
last publication per channel and apply patches with server/protocol/fossil.py.

It follows centrifuge-js `applyDeltaIfNeeded`: with delta negotiated, every
publication's `data` is bytes (a JSON string's UTF-8 in JSON, binary in
msgpack); `delta: true` means a Fossil patch against the bytes kept.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import msgpack
from wsfan.protocol import Encoding, fossil

from tests.client import ProtoClient


@dataclass(frozen=True)
class Received:
    """One publication as the subscriber surfaces it."""

    value: Any  # the data, decoded from the whole bytes
    delta: bool  # it came as a patch
    wire: int  # bytes its `data` took on the wire
    offset: int


class DeltaReader:
    def __init__(self, client: ProtoClient) -> None:
        self.client = client
        self.kept: dict[str, bytes] = {}

    def _bytes(self, data: Any) -> bytes:
        if self.client.encoding is Encoding.JSON:
            assert isinstance(data, str), f"delta data must be a JSON string, got {data!r}"
            return data.encode("utf-8")
        assert isinstance(data, bytes), f"delta data must be binary, got {data!r}"
        return data

    def _value(self, whole: bytes) -> Any:
        if self.client.encoding is Encoding.JSON:
            return json.loads(whole)
        return msgpack.unpackb(whole, raw=False)

    def take(self, channel: str, pub: dict[str, Any]) -> Received:
        """Apply one publication as the SDK would (the subscribe reply's too)."""
        raw = self._bytes(pub["data"])
        is_delta = pub.get("delta") is True
        whole = fossil.apply(self.kept[channel], raw) if is_delta else raw
        self.kept[channel] = whole
        return Received(self._value(whole), is_delta, len(raw), pub.get("offset", 0))

    async def subscribe(self, channel: str, **params: Any) -> dict[str, Any]:
        """Subscribe with `delta: "fossil"`; recovered publications are taken."""
        result = await self.client.result(
            "subscribe", {"channel": channel, "delta": "fossil", **params}
        )
        for pub in result.get("publications", []):
            self.take(channel, pub)
        return result

    async def next(self, channel: str) -> Received:
        return self.take(channel, (await self.client.push("pub", channel))["pub"])

    async def many(self, channel: str, count: int) -> list[Received]:
        return [await self.next(channel) for _ in range(count)]
