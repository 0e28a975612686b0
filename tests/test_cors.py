"""CORS on the HTTP transports and /emulation (server/web/cors.py): an allowed
origin echoed with `Vary: Origin` on the preflight and on the answers alike,
credentials only for an origin named (not `*` alone), a refused origin 403."""

from __future__ import annotations

import json

import pytest

from tests.streams_client import Clients

NAMED = "https://app.example"
OTHER = "https://other.example"
STREAM_PATHS = [
    "/connection/http_stream",
    "/connection/sse",
    "/connection/uni_sse",
    "/connection/uni_http_stream",
]
CONNECT = json.dumps({"id": 1, "connect": {}})

named_only = pytest.mark.settings(client={"allowed_origins": [NAMED]})
named_and_any = pytest.mark.settings(client={"allowed_origins": ["*", NAMED]})


@pytest.fixture
def port(http_server, http_port: int) -> int:
    """The port of this test's server (started)."""
    return http_port


def preflight(origin: str) -> dict[str, str]:
    return {"Origin": origin, "Access-Control-Request-Method": "POST"}


@named_only
@pytest.mark.parametrize("path", ["/emulation", *STREAM_PATHS])
@pytest.mark.gen_test
async def test_an_allowed_origin_is_echoed_with_vary_on_the_preflight(port, path):
    async with Clients(port) as clients:
        status, headers, _ = await clients.call("OPTIONS", path, headers=preflight(NAMED))
        assert status == 204
        assert headers["Access-Control-Allow-Origin"] == NAMED
        assert headers["Vary"] == "Origin"
        assert headers["Access-Control-Allow-Headers"] == "Content-Type"
        assert "Access-Control-Max-Age" in headers


@named_only
@pytest.mark.parametrize("body", ['{"session": "s", "node": "n", "data": ""}', "{bad"])
@pytest.mark.gen_test
async def test_an_allowed_origin_is_echoed_with_vary_on_emulation_answers(port, node, body):
    body = body.replace('"n"', json.dumps(node.cluster.uid))
    async with Clients(port) as clients:
        status, headers, _ = await clients.post("/emulation", body, {"Origin": NAMED})
        assert status in (204, 400)
        assert headers["Access-Control-Allow-Origin"] == NAMED
        assert headers["Vary"] == "Origin"


@named_only
@pytest.mark.parametrize("kind", ["http_stream", "sse"])
@pytest.mark.gen_test
async def test_an_allowed_origin_is_echoed_with_vary_on_the_stream(port, kind):
    async with Clients(port) as clients:
        stream = await clients.start(kind, headers={"Origin": NAMED})
        assert stream.status == 200
        assert stream.headers["Access-Control-Allow-Origin"] == NAMED
        assert stream.headers["Vary"] == "Origin"
        assert stream.headers["Access-Control-Allow-Credentials"] == "true"
        assert "connect" in await stream.reply(1)


@named_and_any
@pytest.mark.gen_test
async def test_credentials_only_for_an_origin_the_list_names(port):
    async with Clients(port) as clients:
        _, named, _ = await clients.call("OPTIONS", "/emulation", headers=preflight(NAMED))
        _, other, _ = await clients.call("OPTIONS", "/emulation", headers=preflight(OTHER))
        assert named["Access-Control-Allow-Credentials"] == "true"
        assert other["Access-Control-Allow-Origin"] == OTHER  # allowed by "*" ...
        assert "Access-Control-Allow-Credentials" not in other  # ... without cookies


@pytest.mark.settings(client={"allowed_origins": ["https://*.example.org"]})
@pytest.mark.gen_test
async def test_an_origin_matching_a_pattern_gets_credentials(port):
    async with Clients(port) as clients:
        origin = "https://a.example.org"
        _, headers, _ = await clients.call("OPTIONS", "/emulation", headers=preflight(origin))
        assert headers["Access-Control-Allow-Origin"] == origin
        assert headers["Access-Control-Allow-Credentials"] == "true"


@pytest.mark.gen_test
async def test_the_servers_own_origin_gets_credentials(port):
    async with Clients(port) as clients:
        own = f"http://127.0.0.1:{port}"
        _, headers, _ = await clients.call("OPTIONS", "/emulation", headers=preflight(own))
        assert headers["Access-Control-Allow-Origin"] == own
        assert headers["Access-Control-Allow-Credentials"] == "true"


@named_only
@pytest.mark.parametrize("path", ["/emulation", *STREAM_PATHS])
@pytest.mark.parametrize("method", ["OPTIONS", "POST"])
@pytest.mark.gen_test
async def test_a_refused_origin_is_403_without_cors_headers(port, path, method):
    async with Clients(port) as clients:
        body = CONNECT if method == "POST" else None
        status, headers, _ = await clients.call(method, path, body, preflight(OTHER))
        assert status == 403
        assert not [name for name in headers if name.lower().startswith("access-control-")]


@named_only
@pytest.mark.gen_test
async def test_a_refused_origin_gets_no_sse_stream(port):
    async with Clients(port) as clients:
        stream = await clients.start("sse", headers={"Origin": OTHER})
        assert stream.status == 403


@named_only
@pytest.mark.gen_test
async def test_a_request_without_origin_gets_no_cors_headers(port):
    async with Clients(port) as clients:
        stream = await clients.start("http_stream")
        assert stream.status == 200
        assert "Access-Control-Allow-Origin" not in stream.headers
        assert "Vary" not in stream.headers


@named_only
@pytest.mark.gen_test
async def test_the_preflight_allows_the_headers_it_was_asked_for(port):
    async with Clients(port) as clients:
        asked = preflight(NAMED) | {"Access-Control-Request-Headers": "content-type, x-custom"}
        _, headers, _ = await clients.call("OPTIONS", "/connection/http_stream", headers=asked)
        assert headers["Access-Control-Allow-Headers"] == "content-type, x-custom"
