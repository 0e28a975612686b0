"""A WebSocket client on a bare socket: it reads only when told to.

Tornado's client reads everything the server sends as it arrives; a test of a
client that stops reading needs one that does not, and tests of malformed
frames need one that sends any bytes at all.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct

__all__ = ["RawWebSocket", "mask_frame"]


def mask_frame(payload: bytes, opcode: int = 0x1, fin: bool = True) -> bytes:
    """One client frame (clients must mask) carrying `payload`."""
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + masked


class RawWebSocket:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buf = b""
        self._loop = asyncio.get_running_loop()

    @classmethod
    async def open(
        cls, port: int, subprotocol: str | None = None, rcvbuf: int | None = None
    ) -> RawWebSocket:
        """Connect and finish the handshake; `rcvbuf` shrinks the socket's receive buffer."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, ("127.0.0.1", port))
        ws = cls(sock)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            "GET /connection/websocket HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        if subprotocol:
            lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
        await loop.sock_sendall(sock, ("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await ws._read_until(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            sock.close()
            raise ConnectionError(head.decode(errors="replace"))
        return ws

    async def _fill(self) -> bool:
        chunk = await self._loop.sock_recv(self.sock, 65536)
        self._buf += chunk
        return bool(chunk)

    async def _read_until(self, marker: bytes) -> bytes:
        while marker not in self._buf:
            if not await self._fill():
                raise ConnectionError("closed during the handshake")
        head, _, self._buf = self._buf.partition(marker)
        return head

    async def _read_exact(self, n: int) -> bytes | None:
        while len(self._buf) < n:
            if not await self._fill():
                return None
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    async def send(self, payload: bytes, opcode: int = 0x1) -> None:
        await self.send_bytes(mask_frame(payload, opcode))

    async def send_bytes(self, data: bytes) -> None:
        await self._loop.sock_sendall(self.sock, data)

    async def recv_frame(self) -> tuple[int, bytes] | None:
        """(opcode, payload) of the next server frame; None at end of stream."""
        head = await self._read_exact(2)
        if head is None:
            return None
        opcode, n = head[0] & 0x0F, head[1] & 0x7F
        if n == 126:
            ext = await self._read_exact(2)
            n = struct.unpack("!H", ext)[0] if ext else 0
        elif n == 127:
            ext = await self._read_exact(8)
            n = struct.unpack("!Q", ext)[0] if ext else 0
        payload = await self._read_exact(n)
        return None if payload is None else (opcode, payload)

    async def close_code(self) -> int | None:
        """Read (and drop) frames until the close frame; its code, or None without one."""
        while True:
            frame = await self.recv_frame()
            if frame is None:
                return None
            opcode, payload = frame
            if opcode == 0x8:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005

    def close(self) -> None:
        self.sock.close()
