"""Embedding (server/facade.py `handlers`, `listen`, `add_sockets`; server/web/mount.py):
an application's own routes and the server's WebSocket endpoint on one port, with
every guard the command line's listener and handshake apply, each at its edge."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from tornado.ioloop import IOLoop
from tornado.web import Application, RequestHandler
from wsfan.compose import build
from wsfan.config import Settings
from wsfan.facade import APP_MAX_BODY, Server
from wsfan.protocol import Encoding

from tests.conftest import TIMEOUT_SCALE, Opener
from tests.raw_ws import RawWebSocket
from tests.test_sdk_python import TEST_TIMEOUT, sdk_client, subscribed
from tests.test_upgrade import HEAD, closed_in, response_head, still_open, until

SHORT = 0.3 * TIMEOUT_SCALE  # head and idle timeouts of the tests below
SLACK = 2 * TIMEOUT_SCALE  # how late a close may come on a busy machine

pytestmark = pytest.mark.brokers("memory")  # mounting and its guards do not involve the broker


class Hello(RequestHandler):
    """The embedding application's own route."""

    def get(self) -> None:
        self.write("hello from the application")

    def post(self) -> None:
        self.write(f"{len(self.request.body)} bytes")


@pytest.fixture
def server(settings: Settings, io_loop: IOLoop) -> Iterator[Server]:
    server = build(settings)
    io_loop.run_sync(server.start)
    yield server
    io_loop.run_sync(server.close)


def own_app(server: Server) -> Application:
    return Application([(r"/hello", Hello), *server.handlers()])


@pytest.fixture
def port(server: Server) -> int:
    """The port the application's own app, with the server's handlers, is served on."""
    return server.listen(own_app(server), 0, "127.0.0.1")


@pytest.fixture
def ws_url(port: int) -> str:
    """conftest's `open_client` connects here: the mounted endpoint."""
    return f"ws://127.0.0.1:{port}/connection/websocket"


async def fetch(port: int, path: str, **options: object) -> tuple[int, bytes]:
    response = await AsyncHTTPClient().fetch(
        f"http://127.0.0.1:{port}{path}",
        raise_error=False,
        request_timeout=5 * TIMEOUT_SCALE,
        **options,
    )
    return response.code, response.body


async def raw(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


# One port ------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_the_applications_route_and_the_websocket_endpoint_share_one_port(
    server: Server, port: int, ws_url: str
):
    assert await fetch(port, "/hello") == (200, b"hello from the application")
    async with sdk_client(ws_url, server.node) as client:  # the official SDK
        _, events = await subscribed(client)
        await server.publish("news", {"text": "in process"})
        await until(lambda: len(events.publications) == 1)
    assert events.publications[0].data == {"text": "in process"}


@pytest.mark.gen_test
async def test_the_mounted_health_and_api_routes_answer(port: int, settings: Settings):
    assert (await fetch(port, "/healthz"))[0] == 200
    assert (await fetch(port, "/readyz"))[0] == 200
    key = {"X-API-Key": settings.api.keys[0]}
    assert (await fetch(port, "/api/info", method="POST", body="{}", headers=key))[0] == 200
    assert (await fetch(port, "/api/info", method="POST", body="{}"))[0] == 401


@pytest.mark.gen_test
async def test_a_mounted_upgrade_is_answered_by_the_listeners_fast_path(server: Server, port: int):
    reader, writer = await raw(port)
    writer.write(HEAD)
    assert (await response_head(reader)).startswith(b"HTTP/1.1 101")
    assert [listener.upgraded for listener in server.listeners] == [1]
    writer.close()


@pytest.mark.gen_test
async def test_listen_without_an_application_serves_the_servers_own_with_its_pages(
    server: Server,
):
    port = server.listen(address="127.0.0.1")
    status, body = await fetch(port, "/")
    assert status == 200 and b"<html" in body.lower()


def test_an_application_without_the_servers_handlers_is_refused(server: Server):
    with pytest.raises(ValueError, match=r"add server\.handlers\(\)"):
        server.listen(Application([(r"/hello", Hello)]), 0, "127.0.0.1")


def test_an_application_with_another_servers_handlers_is_refused(
    server: Server, settings: Settings
):
    other = build(settings)
    with pytest.raises(ValueError, match=r"add server\.handlers\(\)"):
        server.listen(own_app(other), 0, "127.0.0.1")
    both = Application([*other.handlers(), *server.handlers()])
    with pytest.raises(ValueError, match="more than one server"):
        server.listen(both, 0, "127.0.0.1")


@pytest.mark.gen_test
async def test_close_stops_serving_the_application(settings: Settings):
    server = build(settings)
    await server.start()
    port = server.listen(own_app(server), 0, "127.0.0.1")
    assert (await fetch(port, "/hello"))[0] == 200
    await server.close()
    with pytest.raises(ConnectionRefusedError):
        await raw(port)


# The handshake's guards ------------------------------------------------------------


def upgrade_from(origin: str) -> bytes:
    return HEAD.replace(b"Host: h\r\n", b"Host: app.test\r\nOrigin: " + origin.encode() + b"\r\n")


@pytest.mark.settings(client={"allowed_origins": ["https://app.test"]})
@pytest.mark.gen_test
async def test_an_allowed_origin_upgrades_and_another_gets_403(port: int):
    allowed, writer = await raw(port)
    writer.write(upgrade_from("https://app.test"))
    assert (await response_head(allowed)).startswith(b"HTTP/1.1 101")
    refused, other = await raw(port)
    other.write(upgrade_from("https://evil.test"))
    assert (await response_head(refused)).startswith(b"HTTP/1.1 403")
    writer.close()
    other.close()


@pytest.mark.settings(server={"max_connections": 2})
@pytest.mark.gen_test
async def test_connections_up_to_max_connections_open_and_one_more_gets_503(
    open_client: Opener,
):
    for _ in range(2):
        await (await open_client(Encoding.JSON)).connect()
    with pytest.raises(HTTPClientError) as refused:
        await open_client(Encoding.JSON)
    assert refused.value.code == 503


@pytest.mark.settings(client={"max_connections_per_ip": 2})
@pytest.mark.gen_test
async def test_connections_up_to_the_per_address_cap_connect_and_one_more_closes_3504(
    open_client: Opener,
):
    for _ in range(2):
        await (await open_client(Encoding.JSON)).connect()
    third = await open_client(Encoding.JSON)
    assert await third.closed() == (3504, "connection limit")


@pytest.mark.settings(client={"max_frame_bytes": 1024})
@pytest.mark.gen_test
async def test_a_frame_at_max_frame_bytes_is_read_and_one_byte_more_closes_1009(port: int):
    head, tail = b'{"id":1,"connect":{"name":"', b'"}}'
    at_limit = await RawWebSocket.open(port)
    await at_limit.send(head + b"x" * (1024 - len(head) - len(tail)) + tail)
    frame = await at_limit.recv_frame()
    assert frame is not None and b'"client"' in frame[1]
    over = await RawWebSocket.open(port)
    await over.send(head + b"x" * (1025 - len(head) - len(tail)) + tail)
    assert await over.close_code() == 1009
    at_limit.close()
    over.close()


# The listener's guards ---------------------------------------------------------------


@pytest.mark.settings(server={"head_timeout": SHORT})
@pytest.mark.gen_test
async def test_a_connection_that_says_nothing_is_closed_after_head_timeout(port: int):
    reader, writer = await raw(port)
    assert await closed_in(reader, SHORT + SLACK) >= SHORT * 0.8
    writer.close()


@pytest.mark.settings(server={"head_timeout": SHORT})
@pytest.mark.gen_test
async def test_a_head_sent_in_pieces_within_head_timeout_reaches_the_application(port: int):
    reader, writer = await raw(port)
    for piece in (b"GET /hello HT", b"TP/1.1\r\nHost: h\r\n", b"\r\n"):
        writer.write(piece)
        await asyncio.sleep(SHORT / 5)
    assert (await response_head(reader)).startswith(b"HTTP/1.1 200")
    writer.close()


@pytest.mark.settings(server={"idle_timeout": SHORT})
@pytest.mark.gen_test
async def test_a_keep_alive_connection_idle_past_idle_timeout_is_closed(port: int):
    reader, writer = await raw(port)
    writer.write(b"GET /hello HTTP/1.1\r\nHost: h\r\n\r\n")
    assert (await response_head(reader)).startswith(b"HTTP/1.1 200")
    assert await closed_in(reader, SHORT + SLACK) >= SHORT * 0.8
    writer.close()


@pytest.mark.settings(server={"max_pending_connections": 3})
@pytest.mark.gen_test
async def test_one_more_than_max_pending_closes_the_one_waiting_longest(server: Server, port: int):
    (listener,) = server.listeners
    held = []
    for _ in range(3):
        held.append(await raw(port))
        await until(lambda: listener.pending.count == len(held))
    newcomer = await raw(port)
    await closed_in(held[0][0], SLACK)  # the first one, waiting longest
    for reader, _ in [*held[1:], newcomer]:
        assert await still_open(reader)
    assert listener.pending.count == 3 and listener.pending.dropped == 1
    for _, writer in [*held, newcomer]:
        writer.close()


# The application's request bodies ---------------------------------------------------


@pytest.mark.gen_test
async def test_a_body_up_to_max_body_size_reaches_the_application_and_one_byte_more_gets_400(
    server: Server,
):
    port = server.listen(own_app(server), 0, "127.0.0.1", max_body_size=100)
    assert await fetch(port, "/hello", method="POST", body=b"x" * 100) == (200, b"100 bytes")
    assert (await fetch(port, "/hello", method="POST", body=b"x" * 101))[0] == 400


@pytest.mark.gen_test
async def test_the_applications_routes_take_bodies_up_to_1_mib_by_default(port: int):
    body = b"x" * APP_MAX_BODY
    assert await fetch(port, "/hello", method="POST", body=body) == (200, b"1048576 bytes")
    assert (await fetch(port, "/hello", method="POST", body=body + b"x"))[0] == 400
