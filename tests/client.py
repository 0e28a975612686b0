"""A small test client for the wire protocol in both encodings, on Tornado's WebSocket client.

It does what an SDK does on the wire and nothing more, so tests can also send
what no SDK would (garbage, oversize frames, commands out of order).
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from typing import Any

import msgpack
from tornado.httpclient import HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect
from wsfan.protocol import Encoding


class ProtoClient:
    def __init__(self, conn: WebSocketClientConnection, encoding: Encoding, timeout: float):
        self.conn = conn
        self.encoding = encoding
        self.timeout = timeout
        self.pushes: deque[dict[str, Any]] = deque()
        self.frames = 0
        self._inbox: deque[Any] = deque()
        self._next_id = 0
        self.client_id = ""

    @classmethod
    async def open(
        cls,
        url: str,
        encoding: Encoding,
        timeout: float = 5.0,
        headers: dict[str, str] | None = None,
    ) -> ProtoClient:
        """Connected to `url`; `headers`: extra handshake headers (e.g. a Cookie)."""
        subprotocols = ["msgpack"] if encoding is Encoding.MSGPACK else None
        request = HTTPRequest(url, headers=headers) if headers else url
        conn = await asyncio.wait_for(
            websocket_connect(request, subprotocols=subprotocols), timeout
        )
        return cls(conn, encoding, timeout)

    # Sending -------------------------------------------------------------------

    def encode(self, *messages: Any) -> bytes | str:
        if self.encoding is Encoding.JSON:
            return "\n".join(json.dumps(m) for m in messages)
        return b"".join(msgpack.packb(m, use_bin_type=True) for m in messages)

    async def send_raw(self, data: bytes | str, binary: bool | None = None) -> None:
        if binary is None:
            binary = isinstance(data, bytes)
        await self.conn.write_message(data, binary=binary)

    async def send(self, *messages: Any) -> None:
        await self.send_raw(self.encode(*messages))

    def next_id(self) -> int:
        self._next_id += 1
        return self._next_id

    # Receiving -----------------------------------------------------------------

    def _decode(self, frame: bytes | str) -> list[Any]:
        if self.encoding is Encoding.JSON:
            text = frame.decode() if isinstance(frame, bytes) else frame
            return [json.loads(line) for line in text.split("\n") if line]
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
        unpacker.feed(frame if isinstance(frame, bytes) else frame.encode())
        return list(unpacker)

    async def recv(self, timeout: float | None = None) -> Any:
        """The next message (replies, pushes and pings alike); None once closed."""
        while not self._inbox:
            frame = await asyncio.wait_for(self.conn.read_message(), timeout or self.timeout)
            if frame is None:
                return None
            self.frames += 1
            self._inbox.extend(self._decode(frame))
        return self._inbox.popleft()

    async def reply(self, cmd_id: int) -> dict[str, Any]:
        """Reads until the reply to `cmd_id`; pushes met on the way go to `self.pushes`."""
        while True:
            message = await self.recv()
            if message is None:
                raise ConnectionError(f"closed {self.conn.close_code} before reply {cmd_id}")
            if message.get("id") == cmd_id:
                return message
            if "push" in message:
                self.pushes.append(message["push"])

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Sends one command and returns its whole reply (result or error)."""
        cmd_id = self.next_id()
        await self.send({"id": cmd_id, method: params or {}})
        return await self.reply(cmd_id)

    async def result(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Sends one command and returns its result, failing the test on an error reply."""
        answer = await self.call(method, params)
        assert "error" not in answer, answer
        return answer[method]

    async def connect(self, **params: Any) -> dict[str, Any]:
        result = await self.result("connect", params)
        self.client_id = result["client"]
        return result

    async def push(self, kind: str, channel: str | None = None) -> dict[str, Any]:
        """The next push of `kind` (and channel), skipping other pushes and pings."""
        for i, p in enumerate(self.pushes):
            if kind in p and (channel is None or p.get("channel") == channel):
                del self.pushes[i]
                return p
        while True:
            message = await self.recv()
            if message is None:
                raise ConnectionError(f"closed {self.conn.close_code} waiting for {kind}")
            p = message.get("push")
            if p is None:
                continue
            if kind in p and (channel is None or p.get("channel") == channel):
                return p
            self.pushes.append(p)

    async def publications(self, channel: str, count: int) -> list[dict[str, Any]]:
        return [(await self.push("pub", channel))["pub"] for _ in range(count)]

    async def closed(self) -> tuple[int | None, str | None]:
        """Reads until the server closes; returns (close code, reason)."""
        while await self.recv() is not None:
            pass
        return self.conn.close_code, self.conn.close_reason

    def close(self) -> None:
        self.conn.close()
