#!/usr/bin/env python3
"""A raw picows broadcast server: the reference row of the benchmark table.

    python bench/baseline_picows.py --port 8899

One process, one event loop, no framework: picows's compiled WebSocket server
and just enough of the Centrifugo JSON client protocol for the load tester
(`server/loadtest`): `connect` (a client id back), `subscribe` (recoverable,
an epoch and the channel's offset), `publish` (acknowledged with `{}`, then
broadcast as a `pub` push with the channel's next offset). Each publication
is encoded once and the same bytes go to every subscriber with
`transport.send`; the publications of one incoming frame leave as one frame
per subscriber (newline-delimited, as wsfan batches what one loop pass
queued), or one frame each with `--frame-per-publication`.

What it leaves out on purpose, so the figure is a ceiling for a Python server
on this machine: history, recovery, presence, authentication, limits, a
broker, per-client queues, server pings (a client's `{}` pong is accepted and
ignored). A command it does not know gets error 108. `GET /healthz` answers
200 so the bench can wait for it like for wsfan.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import signal
import sys
from typing import Any

from picows import (
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)

__all__ = ["Broadcaster", "main", "serve"]

PATH = b"/connection/websocket"
NOT_AVAILABLE = {"code": 108, "message": "not available"}


class Channel:
    """Subscribers of one channel and its offset counter."""

    __slots__ = ("name", "offset", "subscribers")

    def __init__(self, name: str) -> None:
        self.name = name
        self.offset = 0
        self.subscribers: dict[WSTransport, None] = {}


class Broadcaster:
    """Every channel of the process; one epoch for all (nothing is ever lost here)."""

    def __init__(self, batch: bool = True) -> None:
        self.channels: dict[str, Channel] = {}
        self.epoch = secrets.token_hex(4)
        self.batch = batch
        self.next_client = 0

    def channel(self, name: str) -> Channel:
        ch = self.channels.get(name)
        if ch is None:
            ch = self.channels[name] = Channel(name)
        return ch

    def publish(self, name: str, data: Any, out: dict[Channel, list[bytes]]) -> None:
        """Give the publication its offset and encode its push once into `out`."""
        ch = self.channel(name)
        ch.offset += 1
        push = {"push": {"channel": name, "pub": {"data": data, "offset": ch.offset}}}
        out.setdefault(ch, []).append(json.dumps(push, separators=(",", ":")).encode())

    def broadcast(self, out: dict[Channel, list[bytes]]) -> None:
        for ch, pushes in out.items():
            frames = [b"\n".join(pushes)] if self.batch else pushes
            subscribers = list(ch.subscribers)
            for frame in frames:
                for transport in subscribers:
                    transport.send(WSMsgType.TEXT, frame)

    def leave(self, transport: WSTransport, channels: list[Channel]) -> None:
        for ch in channels:
            ch.subscribers.pop(transport, None)


class Connection(WSListener):
    """One client: handles its commands in order, replies batched per frame."""

    def __init__(self, hub: Broadcaster) -> None:
        super().__init__()
        self.hub = hub
        self.client = ""
        self.channels: list[Channel] = []

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.hub.leave(transport, self.channels)

    def on_ws_frame(self, transport: WSTransport, frame: Any) -> None:
        if frame.msg_type is WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        if frame.msg_type is not WSMsgType.TEXT:
            return
        try:
            text = frame.get_payload_as_utf8_text()
            commands = [json.loads(line) for line in text.split("\n") if line]
        except ValueError:
            transport.disconnect()
            return
        replies: list[bytes] = []
        out: dict[Channel, list[bytes]] = {}
        for command in commands:
            if not isinstance(command, dict) or not command:
                continue  # the client's pong, or nothing we can answer
            reply = self.command(transport, command, out)
            if reply is not None:
                replies.append(json.dumps(reply, separators=(",", ":")).encode())
        if replies:
            transport.send(WSMsgType.TEXT, b"\n".join(replies))
        if out:
            self.hub.broadcast(out)

    def command(
        self, transport: WSTransport, command: dict[str, Any], out: dict[Channel, list[bytes]]
    ) -> dict[str, Any] | None:
        cmd_id = command.get("id", 0)
        if "publish" in command:
            body = command["publish"] or {}
            self.hub.publish(str(body.get("channel", "")), body.get("data"), out)
            return {"id": cmd_id, "publish": {}}
        if "subscribe" in command:
            ch = self.hub.channel(str((command["subscribe"] or {}).get("channel", "")))
            if transport not in ch.subscribers:
                ch.subscribers[transport] = None
                self.channels.append(ch)
            result = {"recoverable": True, "epoch": self.hub.epoch, "offset": ch.offset}
            return {"id": cmd_id, "subscribe": result}
        if "connect" in command:
            self.hub.next_client += 1
            self.client = f"picows-{self.hub.next_client}"
            return {"id": cmd_id, "connect": {"client": self.client, "version": "baseline"}}
        return {"id": cmd_id, "error": NOT_AVAILABLE} if cmd_id else None


async def serve(host: str, port: int, batch: bool = True) -> asyncio.Server:
    """Listen on `host:port`; WebSocket at /connection/websocket, 200 at /healthz."""
    hub = Broadcaster(batch)

    def route(request: WSUpgradeRequest) -> Any:
        path = request.path.split(b"?", 1)[0]
        if path == PATH:
            return Connection(hub)
        if path == b"/healthz":
            return WSUpgradeResponseWithListener(WSUpgradeResponse.create_ok_response(b"ok"), None)
        return None

    return await ws_create_server(route, host, port, max_frame_size=1 << 20)


async def _main(args: argparse.Namespace) -> None:
    server = await serve(args.host, args.port, batch=not args.frame_per_publication)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()  # open connections end with the process


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8899)
    parser.add_argument(
        "--frame-per-publication",
        action="store_true",
        help="one frame per publication and subscriber instead of one per incoming frame",
    )
    asyncio.run(_main(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
