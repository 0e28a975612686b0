"""Request heads peeked at before the upgrade (server/web/request_head.py): which
heads the fast path parses as its upgrade, the client's address behind a proxy,
and when a whole head has arrived on a socket."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from wsfan.auth.proxies import TrustedProxies
from wsfan.web.request_head import MAX_HEAD, client_address, head_arrived, parse_upgrade

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
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected (server side, client side) socket pair."""
    server, client = socket.socketpair()
    server.setblocking(False)
    yield server, client
    server.close()
    client.close()


def test_no_head_has_arrived_on_a_silent_socket(pair: tuple[socket.socket, socket.socket]) -> None:
    assert head_arrived(pair[0]) is False


def test_part_of_a_head_has_not_arrived(pair: tuple[socket.socket, socket.socket]) -> None:
    pair[1].sendall(HEAD[:40])
    assert head_arrived(pair[0]) is False


def test_a_whole_head_has_arrived_and_stays_unread(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    pair[1].sendall(HEAD)
    assert head_arrived(pair[0]) is True
    assert pair[0].recv(len(HEAD) + 1) == HEAD  # only peeked at


def test_a_head_of_max_head_bytes_counts_as_arrived(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    pair[1].sendall(b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HEAD)
    assert head_arrived(pair[0]) is True


def test_a_closed_peer_counts_as_arrived(pair: tuple[socket.socket, socket.socket]) -> None:
    pair[1].close()
    assert head_arrived(pair[0]) is True
