"""The WebSocket handshake (server/web/handshake.py, and its Tornado handler in
server/web/websocket.py): what is refused, with which HTTP status, and what a
valid upgrade answers (RFC 6455 section 4.2)."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPResponse
from wsfan.auth.origin import OriginPolicy
from wsfan.node import Node
from wsfan.protocol import Encoding
from wsfan.web.endpoint import Endpoint
from wsfan.web.handshake import (
    accept_key,
    handshake_problem,
    negotiated_encoding,
    upgrade_headers,
    valid_key,
)

UPGRADE = {
    "Upgrade": "websocket",
    "Connection": "keep-alive, Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}


async def get(ws_url: str, **headers: Any) -> HTTPResponse:
    url = ws_url.replace("ws://", "http://")
    merged = {k: v for k, v in {**UPGRADE, **headers}.items() if v is not None}
    return await AsyncHTTPClient().fetch(url, headers=merged, raise_error=False)


def test_accept_key_is_the_rfc_example() -> None:
    # RFC 6455 section 1.3's worked example.
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    digest = hashlib.sha1(b"xyz258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
    assert accept_key("xyz") == base64.b64encode(digest).decode()


@pytest.mark.gen_test
async def test_a_request_without_upgrade_gets_400(ws_url: str) -> None:
    assert (await get(ws_url, Upgrade=None)).code == 400


@pytest.mark.gen_test
async def test_a_connection_header_without_upgrade_gets_400(ws_url: str) -> None:
    assert (await get(ws_url, Connection="keep-alive")).code == 400


@pytest.mark.gen_test
async def test_an_unsupported_version_gets_426_naming_the_supported_ones(ws_url: str) -> None:
    response = await get(ws_url, **{"Sec-WebSocket-Version": "12"})
    assert response.code == 426
    assert response.headers["Sec-WebSocket-Version"] == "7, 8, 13"


@pytest.mark.gen_test
async def test_a_missing_key_gets_400(ws_url: str) -> None:
    assert (await get(ws_url, **{"Sec-WebSocket-Key": None})).code == 400


@pytest.mark.parametrize(
    "key",
    [
        "k",
        "dGhlIHNhbXBsZSBub25jZQ",  # no padding
        base64.b64encode(b"x" * 15).decode() + "A",  # 24 characters, 15 bytes and junk
        base64.b64encode(b"x" * 17).decode(),
        base64.b64encode(b"x" * 12).decode(),
        "dGhlIHNhbXBsZSBub25jZQ*=",  # not the base64 alphabet
        "dGhlIHNhbXBsZSBub25jZQ==,dGhlIHNhbXBsZSBub25jZQ==",  # the header twice
    ],
    ids=["short", "unpadded", "junk", "17-bytes", "12-bytes", "alphabet", "twice"],
)
@pytest.mark.brokers("memory")
@pytest.mark.gen_test
async def test_a_key_that_is_not_base64_of_16_bytes_gets_400(ws_url: str, key: str) -> None:
    response = await get(ws_url, **{"Sec-WebSocket-Key": key})
    assert response.code == 400
    assert b"Sec-WebSocket-Key" in (response.body or b"")


@pytest.mark.parametrize(
    ("key", "valid"),
    [
        (base64.b64encode(bytes(range(16))).decode(), True),
        ("dGhlIHNhbXBsZSBub25jZQ==", True),
        (None, False),
        ("", False),
        ("dGhlIHNhbXBsZSBub25jZQ=", False),
        (base64.b64encode(bytes(16)).decode().replace("=", "A"), False),
    ],
)
def test_valid_key_is_base64_of_exactly_16_bytes(key: str | None, valid: bool) -> None:
    assert valid_key(key) is valid


@pytest.mark.parametrize(
    ("offered", "encoding"),
    [
        (None, Encoding.JSON),
        ("", Encoding.JSON),
        ("json", Encoding.JSON),
        ("msgpack", Encoding.MSGPACK),
        ("centrifuge-json, msgpack", Encoding.MSGPACK),
        ("msgpack-v2", Encoding.JSON),
    ],
)
def test_msgpack_is_negotiated_only_when_offered_by_name(
    offered: str | None, encoding: Encoding
) -> None:
    assert negotiated_encoding(offered) is encoding


def test_the_upgrade_answer_names_msgpack_only_when_negotiated() -> None:
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    expected = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
    ]
    assert upgrade_headers(key, Encoding.JSON) == expected
    assert upgrade_headers(key, Encoding.MSGPACK) == [
        *expected,
        ("Sec-WebSocket-Protocol", "msgpack"),
    ]


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, None),
        ({"Origin": "http://h"}, None),  # same origin
        ({"Origin": "http://elsewhere"}, 403),
        ({"Upgrade": "h2c"}, 400),
        ({"Connection": "keep-alive"}, 400),
        ({"Sec-WebSocket-Version": "12"}, 426),
        ({"Sec-WebSocket-Key": "short"}, 400),
    ],
    ids=["valid", "same-origin", "cross-origin", "upgrade", "connection", "version", "key"],
)
def test_handshake_problem_names_the_status_of_each_refusal(
    node: Node, headers: dict[str, str], status: int | None
) -> None:
    request = {**UPGRADE, "Host": "h", **headers}
    lower = {name.lower(): value for name, value in request.items()}
    problem = handshake_problem(
        Endpoint(node, OriginPolicy()), lambda name: lower.get(name.lower()), "127.0.0.1"
    )
    assert (None if problem is None else problem[0]) == status
