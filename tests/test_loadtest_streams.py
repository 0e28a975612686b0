"""The load tester's HTTP-stream subscribers (`transport` sse and http_stream,
server/loadtest/streams.py): against the real server, served as run.py serves
it (its listener, which lets Tornado read no body on plain routes), every
publication arrives without gaps and server pings are answered through
/emulation; fed directly, the chunked stream parses the same however TCP
splits it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from tornado.ioloop import IOLoop
from tornado.testing import bind_unused_port
from tornado.web import Application
from wsfan.config import Settings
from wsfan.loadtest import Options, run_async
from wsfan.loadtest.streams import StreamConnection, StreamPool, StreamSubscriber
from wsfan.loadtest.wire import Codec
from wsfan.node import Node
from wsfan.web.endpoint import close_websockets
from wsfan.web.upgrade import make_server

from tests.conftest import TIMEOUT_SCALE

TEST_TIMEOUT = 30 * TIMEOUT_SCALE
QUIET_CHANNELS = {"join_leave": False, "presence": False}
STREAMS = ["sse", "http_stream"]


@pytest.fixture
def served_url(app: Application, settings: Settings, io_loop: IOLoop) -> Iterator[str]:
    """The WebSocket URL of a server built as run.py builds it (stream endpoints
    and /emulation beside it)."""
    sock, port = bind_unused_port()
    server, listener = make_server(app, settings)
    listener.add_sockets([sock])
    yield f"ws://127.0.0.1:{port}/connection/websocket"
    listener.stop()
    io_loop.run_sync(lambda: close_websockets(app))
    io_loop.run_sync(server.close_all_connections)


def options(url: str, transport: str, **values: Any) -> Options:
    base: dict[str, Any] = {
        "urls": (url,),
        "transport": transport,
        "clients": 5,
        "rates": (20.0,),
        "duration": 1.0,
        "drain": 3.0 * TIMEOUT_SCALE,
        "connect_timeout": 10.0 * TIMEOUT_SCALE,
        "channel_prefix": f"lt{uuid.uuid4().hex[:8]}",
        "progress": False,
        "workers": 1,
    }
    return Options(**(base | values)).checked()


@pytest.mark.brokers("memory")
@pytest.mark.parametrize("transport", STREAMS)
@pytest.mark.settings(channels=QUIET_CHANNELS)
@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_stream_subscribers_count_every_publication_without_gaps(
    served_url: str, node: Node, transport: str
):
    result = await run_async(options(served_url, transport))

    assert result["clients"]["subscribed"] == 5
    assert result["publications"]["acked"] == 20
    deliveries = result["deliveries"]
    assert deliveries["received"] == deliveries["expected"] == 100
    assert deliveries["gaps"] == deliveries["duplicates"] == deliveries["foreign"] == 0
    assert result["errors"] == {} and result["close_codes"] == {}
    # the subscribers came over the stream, the publishers over WebSocket
    assert node.metrics.opened_by_transport.get(transport) == 5
    assert node.metrics.opened_by_transport.get("websocket") == 2


@pytest.mark.brokers("memory")
@pytest.mark.parametrize("transport", STREAMS)
@pytest.mark.settings(channels=QUIET_CHANNELS, client={"ping_interval": 0.2, "pong_timeout": 0.3})
@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_stream_subscribers_answer_pings_through_emulation(served_url: str, transport: str):
    # Each client is pinged every 0.2 s while the test runs; one unanswered
    # ping would close it with 3012 (no pong) and count a reconnect.
    result = await run_async(options(served_url, transport, rates=(20.0,), duration=1.0))

    assert result["close_codes"] == {} and result["errors"] == {}
    assert result["churn"]["reconnects"] == 0
    assert result["deliveries"]["received"] == result["deliveries"]["expected"] == 100


# The parser, fed directly ------------------------------------------------------------


class Sink:
    """The asyncio transport a StreamConnection writes its request to."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


class Posted:
    """Stands in for /emulation: what the stream posted."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def post(self, session: str, node: str, data: bytes, failed: Any = None) -> None:
        self.sent.append(data)


def _chunk(body: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(body), body)


def _message(transport: str, *messages: bytes) -> bytes:
    if transport == "sse":
        return b"".join(b"data: %b\n\n" % m for m in messages)
    return b"\n".join(messages) + b"\n"


def _publication(offset: int) -> bytes:
    data = b'{"ts":%d,"s":0,"n":%d,"p":"xx"}' % (time.time_ns(), offset)
    return b'{"push":{"channel":"news","pub":{"data":%b,"offset":%d}}}' % (data, offset)


def _response(transport: str) -> bytes:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    subscribed = b'{"id":2,"subscribe":{"recoverable":true,"epoch":"e","offset":0}}'
    chunks = [_chunk(_message(transport, subscribed))]
    chunks += [_chunk(_message(transport, _publication(i))) for i in (1, 2)]
    # one chunk of two publications, then a ping among publications
    chunks.append(_chunk(_message(transport, _publication(3), _publication(4))))
    chunks.append(_chunk(_message(transport, _publication(5), b"{}", _publication(6))))
    return head + b"".join(chunks)


@pytest.mark.parametrize("transport", STREAMS)
@pytest.mark.parametrize("piece", [1, 7, 1 << 20], ids=["bytes", "7-byte pieces", "whole"])
@pytest.mark.gen_test
async def test_a_stream_parses_the_same_however_it_is_split(transport: str, piece: int):
    url = "ws://127.0.0.1:1/connection/websocket"
    pool = StreamPool(transport, [url], Codec("json"), ["news"], 1.0, lambda i: "")
    client = StreamSubscriber(pool, 0, 0)
    pool.clients = [client]
    posted = Posted()
    stream = StreamConnection(client, b"", transport == "sse", posted)  # type: ignore[arg-type]
    stream.connection_made(Sink())  # type: ignore[arg-type]
    stream.session = "s"

    data = _response(transport)
    for i in range(0, len(data), piece):
        stream.data_received(data[i : i + piece])

    stats = pool.stats
    assert client.subscribed and stats.subscribed == 1
    assert (stats.deliveries, stats.gaps, stats.duplicates, stats.foreign) == (6, 0, 0, 0)
    assert posted.sent == [b"{}"] and stats.errors == {}  # the ping's pong
