"""The WebSocket Origin check: same origin by default, an allow-list, 403 at the handshake."""

from __future__ import annotations

import pytest
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect
from wsfan.auth.origin import OriginPolicy

# The policy ---------------------------------------------------------------------------


def test_same_origin_is_allowed_by_default():
    assert OriginPolicy().allows("http://chat.example.com:8888", "chat.example.com:8888")


def test_same_host_on_another_port_is_another_origin():
    assert not OriginPolicy().allows("http://chat.example.com:9999", "chat.example.com:8888")


def test_comparison_ignores_case():
    assert OriginPolicy().allows("HTTP://Chat.Example.COM", "chat.example.com")
    assert OriginPolicy(["https://App.Example.com"]).allows("https://app.example.COM", "x")


def test_listed_origin_is_allowed_and_others_are_not():
    policy = OriginPolicy(["https://app.example.com"])
    assert policy.allows("https://app.example.com", "ws.example.com")
    assert not policy.allows("http://app.example.com", "ws.example.com")  # another scheme
    assert not policy.allows("https://app.example.com.evil.com", "ws.example.com")


def test_wildcard_matches_host_labels_and_ports_only():
    policy = OriginPolicy(["https://*.example.com", "http://localhost:*"])
    assert policy.allows("https://a.example.com", "x")
    assert policy.allows("https://a.b.example.com", "x")
    assert policy.allows("http://localhost:3000", "x")
    assert not policy.allows("https://example.com", "x")  # the dot is part of the pattern
    assert not policy.allows("https://evil.com/.example.com", "x")
    assert not policy.allows("https://evil.com?.example.com", "x")
    assert not policy.allows("https://user@evil.com#.example.com", "x")


def test_star_alone_allows_any_origin():
    assert OriginPolicy(["*"]).allows("https://anything.test", "ws.example.com")


def test_an_https_page_is_not_the_same_origin_as_a_plain_http_request():
    assert not OriginPolicy().allows("https://chat.example.com", "chat.example.com")
    assert not OriginPolicy().allows("https://chat.example.com", "chat.example.com", "http")


def test_behind_tls_the_https_page_is_the_same_origin():
    assert OriginPolicy().allows("https://chat.example.com", "chat.example.com", "https")
    assert not OriginPolicy().allows("http://chat.example.com", "chat.example.com", "https")


@pytest.mark.parametrize(
    ("origin", "host", "scheme"),
    [
        ("http://chat.example.com:80", "chat.example.com", "http"),
        ("http://chat.example.com", "chat.example.com:80", "http"),
        ("https://chat.example.com", "chat.example.com:443", "https"),
        ("https://chat.example.com:443", "chat.example.com", "https"),
        ("http://[::1]:8888", "[::1]:8888", "http"),
    ],
)
def test_a_default_port_is_the_same_as_none(origin: str, host: str, scheme: str):
    assert OriginPolicy().allows(origin, host, scheme)


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("http://chat.example.com", "chat.example.com:8080"),
        ("http://chat.example.com:443", "chat.example.com"),
        ("http://user@chat.example.com", "chat.example.com"),
        ("http://chat.example.com/page", "chat.example.com"),
        ("http://chat.example.com:99999", "chat.example.com:99999"),
        ("http://chat.example.com", "chat.example.com:x"),
    ],
)
def test_another_port_or_more_than_an_origin_is_refused(origin: str, host: str):
    assert not OriginPolicy().allows(origin, host)


def test_null_and_malformed_origins_are_refused():
    policy = OriginPolicy()
    assert not policy.allows("null", "ws.example.com")
    assert not policy.allows("http://[::1", "ws.example.com")
    assert not policy.allows("", "ws.example.com")


# The handshake ------------------------------------------------------------------------


async def handshake(ws_url: str, origin: str | None, **more: str) -> int:
    """101 when the WebSocket opens, else the HTTP status it was refused with."""
    headers = {} if origin is None else {"Origin": origin}
    headers.update({name.replace("_", "-"): value for name, value in more.items()})
    try:
        conn = await websocket_connect(HTTPRequest(ws_url, headers=headers))
    except HTTPClientError as exc:
        return exc.code
    conn.close()
    return 101


@pytest.mark.gen_test
async def test_handshake_without_origin_is_accepted(ws_url: str):
    """Non-browser clients (the SDKs under Python) send no Origin."""
    assert await handshake(ws_url, None) == 101


@pytest.mark.gen_test
async def test_same_origin_handshake_is_accepted(ws_url: str, http_port: int):
    assert await handshake(ws_url, f"http://127.0.0.1:{http_port}") == 101


@pytest.mark.gen_test
async def test_cross_origin_handshake_is_refused_with_403(ws_url: str):
    assert await handshake(ws_url, "https://evil.example") == 403


@pytest.mark.settings(client={"allowed_origins": ["https://app.example.com", "https://*.test"]})
@pytest.mark.gen_test
async def test_listed_origins_are_accepted_and_others_refused(ws_url: str):
    assert await handshake(ws_url, "https://app.example.com") == 101
    assert await handshake(ws_url, "https://shop.test") == 101
    assert await handshake(ws_url, "https://evil.example") == 403


# Behind a TLS-terminating proxy ---------------------------------------------------------------

TLS_PROXY = {"Host": "chat.example.com", "X_Forwarded_Proto": "https"}
PATHS = {"fast": {}, "tornado": {"X_Pad": "x" * 9000}}  # a head past MAX_HEAD goes to Tornado


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.brokers("memory")
@pytest.mark.gen_test
async def test_an_https_page_connects_through_a_trusted_tls_proxy(ws_url: str, path: str):
    """The proxy (on loopback, trusted by default) says the client used https."""
    assert await handshake(ws_url, "https://chat.example.com", **TLS_PROXY, **PATHS[path]) == 101


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.brokers("memory")
@pytest.mark.settings(server={"trusted_proxies": ["10.0.0.0/8"]})
@pytest.mark.gen_test
async def test_x_forwarded_proto_from_an_untrusted_peer_is_ignored(ws_url: str, path: str):
    assert await handshake(ws_url, "https://chat.example.com", **TLS_PROXY, **PATHS[path]) == 403
    # the plain-http origin is what such a request is the same origin as
    assert await handshake(ws_url, "http://chat.example.com", **TLS_PROXY, **PATHS[path]) == 101


@pytest.mark.brokers("memory")
@pytest.mark.gen_test
async def test_an_https_page_is_refused_on_a_plain_http_request(ws_url: str):
    assert await handshake(ws_url, "https://chat.example.com", Host="chat.example.com") == 403
    assert await handshake(ws_url, "http://chat.example.com", Host="chat.example.com") == 101
