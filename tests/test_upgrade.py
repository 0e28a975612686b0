"""The listener's fast path (server/web/upgrade.py): which requests it answers
itself, and that everything else still reaches Tornado untouched."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from tornado.testing import bind_unused_port
from tornado.web import Application

from server.auth.proxies import TrustedProxies
from server.protocol import Encoding
from server.web.upgrade import Listener, client_address, parse_upgrade
from server.web.websocket import close_websockets
from tests.client import ProtoClient

HEAD = (
    b"GET /connection/websocket HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)


def test_a_complete_upgrade_head_is_parsed_with_its_length() -> None:
    parsed = parse_upgrade(HEAD + b"\x81\x80trailing frame bytes")
    assert parsed is not None
    headers, size = parsed
    assert size == len(HEAD)
    assert headers["upgrade"] == "websocket" and headers["sec-websocket-version"] == "13"


def test_repeated_headers_are_joined_with_commas() -> None:
    parsed = parse_upgrade(HEAD.replace(b"Host: h\r\n", b"X-A: 1\r\nX-A: 2\r\n"))
    assert parsed is not None and parsed[0]["x-a"] == "1,2"


@pytest.mark.parametrize(
    "data",
    [
        HEAD[:-2],  # not all arrived yet
        HEAD.replace(b"GET", b"POST"),
        HEAD.replace(b"/connection/websocket", b"/api/publish"),
        HEAD.replace(b"HTTP/1.1", b"HTTP/1.0"),
        HEAD.replace(b"Host: h", b"Host h"),  # no colon
        HEAD.replace(b"Host: h", b" Host: h"),  # folded or padded name
    ],
    ids=["partial", "post", "other-path", "http-1.0", "no-colon", "padded-name"],
)
def test_anything_else_is_left_to_tornado(data: bytes) -> None:
    assert parse_upgrade(data) is None


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, "127.0.0.9"),
        ({"x-forwarded-for": "1.2.3.4, 10.0.0.1"}, "10.0.0.1"),
        ({"x-forwarded-for": "1.2.3.4", "x-real-ip": "5.6.7.8"}, "5.6.7.8"),
        ({"x-real-ip": "not an address"}, "127.0.0.9"),
    ],
    ids=["peer", "last-forwarded", "real-ip-wins", "invalid"],
)
def test_client_address_follows_a_trusted_proxys_headers_as_tornado_does(
    headers: dict[str, str], expected: str
) -> None:
    assert client_address(headers, "127.0.0.9", TrustedProxies(["127.0.0.0/8"])) == expected


def test_client_address_ignores_the_headers_of_an_untrusted_peer() -> None:
    headers = {"x-forwarded-for": "1.2.3.4", "x-real-ip": "5.6.7.8"}
    assert client_address(headers, "192.0.2.7", TrustedProxies(["127.0.0.1"])) == "192.0.2.7"


def test_a_query_string_still_takes_the_fast_path() -> None:
    with_query = HEAD.replace(b"websocket HTTP", b"websocket?format=json HTTP")
    assert parse_upgrade(with_query) is not None


@pytest.fixture
def listened(app: Application, io_loop: IOLoop) -> Iterator[tuple[Listener, str]]:
    """A server of its own, to look at its listener."""
    sock, port = bind_unused_port()
    server = HTTPServer(app)
    listener = Listener(server)
    listener.add_sockets([sock])
    yield listener, f"ws://127.0.0.1:{port}/connection/websocket"
    listener.stop()
    io_loop.run_sync(lambda: close_websockets(app))


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
