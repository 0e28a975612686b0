"""The WebSocket Origin check: same origin by default, an allow-list, 403 at the handshake."""

from __future__ import annotations

import pytest
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from server.auth.origin import OriginPolicy

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


def test_null_and_malformed_origins_are_refused():
    policy = OriginPolicy()
    assert not policy.allows("null", "ws.example.com")
    assert not policy.allows("http://[::1", "ws.example.com")
    assert not policy.allows("", "ws.example.com")


# The handshake ------------------------------------------------------------------------


async def handshake(ws_url: str, origin: str | None) -> int:
    """101 when the WebSocket opens, else the HTTP status it was refused with."""
    headers = {} if origin is None else {"Origin": origin}
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
