"""The listener (server/web/upgrade.py): which requests its fast path answers
itself, that everything else still reaches Tornado untouched, and that no
connection is held without bound before it upgrades."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Iterator

import pytest
from tornado.httpclient import AsyncHTTPClient
from tornado.ioloop import IOLoop
from tornado.testing import bind_unused_port
from tornado.web import Application
from wsfan.api.keys import ApiKeyChecker
from wsfan.config import Settings
from wsfan.node import Node
from wsfan.protocol import Encoding
from wsfan.web.app import make_app
from wsfan.web.endpoint import close_websockets
from wsfan.web.upgrade import Listener, make_server

from tests.client import ProtoClient
from tests.conftest import TIMEOUT_SCALE

HEAD = (
    b"GET /connection/websocket HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)

pytestmark = pytest.mark.brokers("memory")  # none of these involve the broker


def _served(
    app: Application, settings: Settings, io_loop: IOLoop
) -> Iterator[tuple[Listener, str]]:
    sock, port = bind_unused_port()
    server, listener = make_server(app, settings)  # as run.py builds them
    listener.add_sockets([sock])
    yield listener, f"ws://127.0.0.1:{port}/connection/websocket"
    listener.stop()
    io_loop.run_sync(lambda: close_websockets(app))
    io_loop.run_sync(server.close_all_connections)


@pytest.fixture
def listened(
    app: Application, settings: Settings, io_loop: IOLoop
) -> Iterator[tuple[Listener, str]]:
    """A server of its own, to look at its listener."""
    yield from _served(app, settings, io_loop)


@pytest.mark.gen_test
async def test_an_upgrade_is_answered_by_the_listener_and_speaks_the_protocol(
    listened: tuple[Listener, str],
) -> None:
    listener, url = listened
    c = await ProtoClient.open(url, Encoding.MSGPACK, timeout=5)
    try:
        assert (await c.connect())["client"]
        assert listener.upgraded == 1
    finally:
        c.close()
        await c.closed()


@pytest.mark.gen_test
async def test_a_refused_upgrade_is_left_to_tornado_which_answers_it(
    listened: tuple[Listener, str],
) -> None:
    listener, url = listened
    response = await AsyncHTTPClient().fetch(
        url.replace("ws://", "http://"),
        headers={"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "9"},
        raise_error=False,
    )
    assert response.code == 426 and listener.upgraded == 0


@pytest.mark.gen_test
async def test_plain_http_requests_still_reach_tornado(ws_url: str) -> None:
    base = ws_url.replace("ws://", "http://").removesuffix("/connection/websocket")
    response = await AsyncHTTPClient().fetch(f"{base}/healthz")
    assert response.code == 200


# No connection held without bound before it upgrades ----------------------------

SHORT = 0.3 * TIMEOUT_SCALE  # head and idle timeouts of the tests below
SLACK = 2 * TIMEOUT_SCALE  # how late a close may come on a busy machine


async def connect(
    listened: tuple[Listener, str],
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    port = int(listened[1].split(":")[2].split("/")[0])
    return await asyncio.open_connection("127.0.0.1", port)


async def closed_in(reader: asyncio.StreamReader, within: float) -> float:
    """Seconds until the server closes the connection (reading what it sends);
    fails if it does not within `within` seconds."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with asyncio.timeout(within):
        try:
            while await reader.read(65536):
                pass
        except ConnectionResetError:  # closed with our bytes unread
            pass
    return loop.time() - start


async def still_open(reader: asyncio.StreamReader, wait: float = 0.1) -> bool:
    try:
        return bool(await asyncio.wait_for(reader.read(1), wait)) or False
    except TimeoutError:
        return True


async def response_head(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5 * TIMEOUT_SCALE)


@pytest.mark.settings(server={"head_timeout": SHORT})
@pytest.mark.gen_test
async def test_a_connection_that_says_nothing_is_closed_after_head_timeout(
    listened: tuple[Listener, str],
) -> None:
    reader, writer = await connect(listened)
    assert await closed_in(reader, SHORT + SLACK) >= SHORT * 0.8
    writer.close()


@pytest.mark.settings(server={"head_timeout": SHORT})
@pytest.mark.gen_test
async def test_a_head_that_keeps_coming_slowly_is_closed_at_head_timeout(
    listened: tuple[Listener, str],
) -> None:
    reader, writer = await connect(listened)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: h\r\n")

    async def trickle() -> None:
        for i in range(1000):
            writer.write(b"X-%d: 1\r\n" % i)
            await asyncio.sleep(SHORT / 10)

    dripping = asyncio.ensure_future(trickle())
    try:
        took = await closed_in(reader, SHORT + SLACK)
    finally:
        dripping.cancel()
    assert took >= SHORT * 0.8
    writer.close()


@pytest.mark.settings(server={"head_timeout": SHORT})
@pytest.mark.gen_test
async def test_a_head_sent_in_pieces_within_head_timeout_is_answered(
    listened: tuple[Listener, str],
) -> None:
    reader, writer = await connect(listened)
    for piece in (b"GET /healthz HT", b"TP/1.1\r\nHost: h\r\n", b"\r\n"):
        writer.write(piece)
        await asyncio.sleep(SHORT / 5)
    assert (await response_head(reader)).startswith(b"HTTP/1.1 200")
    writer.close()


@pytest.mark.settings(server={"head_timeout": SHORT})
@pytest.mark.gen_test
async def test_an_upgrade_sent_in_pieces_still_takes_the_fast_path(
    listened: tuple[Listener, str],
) -> None:
    listener, _ = listened
    reader, writer = await connect(listened)
    writer.write(HEAD[:40])
    await asyncio.sleep(SHORT / 5)
    writer.write(HEAD[40:])
    assert (await response_head(reader)).startswith(b"HTTP/1.1 101")
    assert listener.upgraded == 1 and listener.pending.count == 0
    writer.close()


@pytest.mark.settings(server={"idle_timeout": SHORT})
@pytest.mark.gen_test
async def test_a_keep_alive_connection_idle_past_idle_timeout_is_closed(
    listened: tuple[Listener, str],
) -> None:
    reader, writer = await connect(listened)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n")
    assert (await response_head(reader)).startswith(b"HTTP/1.1 200")
    assert await closed_in(reader, SHORT + SLACK) >= SHORT * 0.8
    writer.close()


@pytest.mark.settings(server={"idle_timeout": SHORT})
@pytest.mark.gen_test
async def test_a_keep_alive_connection_used_again_in_time_is_served(
    listened: tuple[Listener, str],
) -> None:
    reader, writer = await connect(listened)
    for _ in range(3):
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n")
        head = await response_head(reader)
        assert head.startswith(b"HTTP/1.1 200")
        await reader.readexactly(int(head.split(b"Content-Length: ")[1].split(b"\r")[0]))
        await asyncio.sleep(SHORT / 3)
    writer.close()


@pytest.mark.settings(server={"max_pending_connections": 3})
@pytest.mark.gen_test
async def test_connections_up_to_max_pending_are_all_held(
    listened: tuple[Listener, str],
) -> None:
    listener, _ = listened
    held = [await connect(listened) for _ in range(3)]
    await until(lambda: listener.pending.count == 3)
    for reader, _ in held:
        assert await still_open(reader)
    for _, writer in held:
        writer.close()


@pytest.mark.settings(server={"max_pending_connections": 3})
@pytest.mark.gen_test
async def test_one_more_than_max_pending_closes_the_one_waiting_longest(
    listened: tuple[Listener, str],
) -> None:
    listener, _ = listened
    held = []
    for _ in range(3):
        held.append(await connect(listened))
        await until(lambda: listener.pending.count == len(held))
    newcomer = await connect(listened)
    await closed_in(held[0][0], SLACK)  # the first one, waiting longest
    for reader, _ in [*held[1:], newcomer]:
        assert await still_open(reader)
    assert listener.pending.count == 3 and listener.pending.dropped == 1
    for _, writer in [*held, newcomer]:
        writer.close()


@pytest.fixture
def release() -> asyncio.Event:
    return asyncio.Event()


@pytest.fixture
def stalled(
    node: Node, settings: Settings, io_loop: IOLoop, release: asyncio.Event
) -> Iterator[tuple[Listener, str]]:
    """A server whose API key lookups wait for `release` (then refuse the key)."""

    async def lookup(key: str) -> bool:
        await release.wait()
        return False

    yield from _served(make_app(node, api_keys=ApiKeyChecker([], lookup)), settings, io_loop)


@pytest.mark.settings(server={"max_pending_connections": 2})
@pytest.mark.gen_test
async def test_with_every_pending_connection_busy_a_newcomer_is_refused(
    stalled: tuple[Listener, str], release: asyncio.Event
) -> None:
    listener = stalled[0]
    busy = []
    for _ in range(2):  # requests in progress: their heads arrived, their keys are looked up
        reader, writer = await connect(stalled)
        writer.write(b"POST /api/info HTTP/1.1\r\nHost: h\r\nX-API-Key: k\r\n\r\n")
        busy.append((reader, writer))
    await until(lambda: listener.pending.count == 2 and listener.pending.waiting == 0)
    refused, writer = await connect(stalled)
    await closed_in(refused, SLACK)
    writer.close()
    assert listener.refused == 1
    release.set()
    for reader, writer in busy:
        assert (await response_head(reader)).startswith(b"HTTP/1.1 401")
        writer.close()


@pytest.mark.gen_test
async def test_a_websocket_upgraded_by_tornado_no_longer_counts_as_pending(
    listened: tuple[Listener, str],
) -> None:
    listener, _ = listened
    reader, writer = await connect(listened)
    key = base64.b64encode(os.urandom(16))
    big = b"X-Big: " + b"x" * 9000 + b"\r\n"  # past what the fast path peeks at
    head = HEAD.replace(b"Sec-WebSocket-Key: k", b"Sec-WebSocket-Key: " + key)
    writer.write(head[:-2] + big + b"\r\n")
    assert (await response_head(reader)).startswith(b"HTTP/1.1 101")
    await until(lambda: listener.pending.count == 0)
    assert listener.upgraded == 0
    writer.close()


@pytest.mark.gen_test
async def test_a_body_sent_to_a_route_that_takes_none_is_refused_unread(
    listened: tuple[Listener, str],
) -> None:
    reader, writer = await connect(listened)
    writer.write(b"POST /healthz HTTP/1.1\r\nHost: h\r\nContent-Length: 1000000\r\n\r\n")
    assert (await response_head(reader)).startswith(b"HTTP/1.1 400")
    await closed_in(reader, SLACK)
    writer.close()


async def until(condition, timeout: float = 5 * TIMEOUT_SCALE) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@pytest.mark.gen_test
async def test_stopping_closes_the_connections_that_said_nothing(
    listened: tuple[Listener, str],
) -> None:
    listener, _ = listened
    reader, writer = await connect(listened)
    await until(lambda: listener.pending.count == 1)
    listener.stop()
    await closed_in(reader, SLACK)
    assert listener.pending.count == 0
    writer.close()
