"""The proxy's HTTP client (server/app/proxy_client.py) against a real Tornado backend:
pooled keep-alive connections, the bound on concurrent requests, timeouts, TLS."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tornado.ioloop import IOLoop
from wsfan.app.proxy_client import ProxyClient, ProxyError

from tests.conftest import TIMEOUT_SCALE
from tests.proxy_backend import Answer, ProxyBackend, down_url, self_signed, server_tls, until

TIMEOUT = 2 * TIMEOUT_SCALE
BODY = b'{"client": "c1"}'
JSON = {"Content-Type": "application/json"}

MakeClient = Callable[..., ProxyClient]


@pytest.fixture
def backend(io_loop: IOLoop) -> Iterator[ProxyBackend]:
    backend = ProxyBackend()
    backend.start()
    yield backend
    io_loop.run_sync(backend.stop)


@pytest.fixture
def make_client(io_loop: IOLoop) -> Iterator[MakeClient]:
    made: list[ProxyClient] = []

    def make(
        max_connections: int = 8, ca_file: str = "", max_response_bytes: int = 4096
    ) -> ProxyClient:
        client = ProxyClient(max_connections, ca_file, max_response_bytes)
        made.append(client)
        return client

    yield make
    for client in made:
        io_loop.run_sync(client.close)


@pytest.mark.gen_test
async def test_answers_the_body_of_a_200(backend: ProxyBackend, make_client: MakeClient) -> None:
    backend.allow("connect", user="alice")
    body = await make_client().post(backend.url("connect"), BODY, JSON, TIMEOUT)
    assert body == b'{"result": {"user": "alice"}}'
    assert backend.last("connect").body == {"client": "c1"}


@pytest.mark.gen_test
async def test_another_status_is_a_proxy_error(
    backend: ProxyBackend, make_client: MakeClient
) -> None:
    backend.answer("connect", {"result": {}}, status=500)
    with pytest.raises(ProxyError, match="HTTP status 500"):
        await make_client().post(backend.url("connect"), BODY, JSON, TIMEOUT)


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
@pytest.mark.gen_test
async def test_an_answer_of_max_response_bytes_is_read_and_a_longer_one_refused(
    backend: ProxyBackend, make_client: MakeClient, chunked: bool
) -> None:
    backend.answers["rpc"] = Answer(body=b"x" * 1000, chunked=chunked)
    at_limit, below = make_client(max_response_bytes=1000), make_client(max_response_bytes=999)
    assert len(await at_limit.post(backend.url("rpc"), BODY, JSON, TIMEOUT)) == 1000
    with pytest.raises(ProxyError, match="longer than 999 bytes"):
        await below.post(backend.url("rpc"), BODY, JSON, TIMEOUT)


@pytest.mark.gen_test
async def test_a_backend_that_is_down_is_a_proxy_error(make_client: MakeClient) -> None:
    with pytest.raises(ProxyError, match="connect"):
        await make_client().post(down_url("connect"), BODY, JSON, TIMEOUT)


@pytest.mark.parametrize("midway", [False, True], ids=["before-headers", "mid-body"])
@pytest.mark.gen_test
async def test_a_slow_backend_is_a_proxy_error_at_the_timeout(
    backend: ProxyBackend, make_client: MakeClient, midway: bool
) -> None:
    backend.slow("rpc", midway=midway)
    started = time.monotonic()
    with pytest.raises(ProxyError, match=r"no answer within 0\.2s"):
        await make_client().post(backend.url("rpc"), BODY, JSON, 0.2)
    assert 0.2 <= time.monotonic() - started < 0.2 + TIMEOUT
    assert len(backend.requests("rpc")) == 1  # asked once, never again


@pytest.mark.gen_test
async def test_max_connections_requests_reach_the_backend_at_once_and_the_next_waits(
    backend: ProxyBackend, make_client: MakeClient
) -> None:
    release = backend.slow("subscribe")
    client = make_client(max_connections=2)
    calls = [
        asyncio.ensure_future(client.post(backend.url("subscribe"), BODY, JSON, TIMEOUT))
        for _ in range(3)
    ]
    await until(lambda: len(backend.received) == 2 and client.waiting == 1, timeout=2)
    assert client.in_flight == 2
    assert len(backend.received) == 2  # the third is held back while it waits
    release.set()
    assert len(await asyncio.gather(*calls)) == 3
    assert len(backend.received) == 3
    assert (client.in_flight, client.waiting) == (0, 0)


@pytest.mark.gen_test
async def test_a_request_waiting_for_a_slot_gives_up_within_its_timeout(
    backend: ProxyBackend, make_client: MakeClient
) -> None:
    release = backend.slow("connect")
    client = make_client(max_connections=1)
    first = asyncio.ensure_future(client.post(backend.url("connect"), BODY, JSON, TIMEOUT))
    await until(lambda: len(backend.received) == 1)
    with pytest.raises(ProxyError, match="no answer within"):
        await client.post(backend.url("connect"), BODY, JSON, 0.1)
    assert client.waiting == 0
    release.set()
    await first
    assert len(backend.received) == 1  # the one that gave up never reached the backend


@pytest.mark.gen_test
async def test_sequential_requests_share_one_keep_alive_connection(
    backend: ProxyBackend, make_client: MakeClient
) -> None:
    client = make_client()
    for point in ("connect", "subscribe", "publish", "rpc", "connect"):
        await client.post(backend.url(point), BODY, JSON, TIMEOUT)
    assert len(backend.received) == 5
    assert len({r.peer for r in backend.received}) == 1


@pytest.mark.gen_test
async def test_a_cookie_the_backend_sets_is_never_sent_back(
    backend: ProxyBackend, make_client: MakeClient
) -> None:
    backend.answers["connect"] = Answer(headers=(("Set-Cookie", "session=bob; Path=/"),))
    client = make_client()
    url = backend.url("connect", host="localhost")  # a jar keeps no cookie of an IP address
    await client.post(url, BODY, JSON, TIMEOUT)
    await client.post(url, BODY, JSON, TIMEOUT)
    assert len(backend.received) == 2
    assert "Cookie" not in backend.last("connect").headers


@pytest.mark.gen_test
async def test_a_closed_client_refuses_requests(
    backend: ProxyBackend, make_client: MakeClient
) -> None:
    client = make_client()
    await client.post(backend.url("connect"), BODY, JSON, TIMEOUT)
    await client.close()
    with pytest.raises(ProxyError, match="closed"):
        await client.post(backend.url("connect"), BODY, JSON, TIMEOUT)


def test_max_connections_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="max_connections"):
        ProxyClient(0)


def test_an_unreadable_ca_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"proxy\.ca_file"):
        ProxyClient(1, str(tmp_path / "missing.pem"))


# TLS ------------------------------------------------------------------------------


@pytest.fixture
def tls_backend(io_loop: IOLoop, tmp_path: Path) -> Iterator[tuple[ProxyBackend, Path]]:
    cert_file, key_file = self_signed(tmp_path)
    backend = ProxyBackend()
    backend.start(ssl_options=server_tls(cert_file, key_file))
    yield backend, cert_file
    io_loop.run_sync(backend.stop)


@pytest.mark.gen_test
async def test_tls_with_the_ca_file_verifies_the_backend(
    tls_backend: tuple[ProxyBackend, Path], make_client: MakeClient
) -> None:
    backend, cert_file = tls_backend
    backend.allow("connect", user="alice")
    client = make_client(ca_file=str(cert_file))
    body = await client.post(backend.url("connect"), BODY, JSON, TIMEOUT)
    assert backend.url("connect").startswith("https://")
    assert body == b'{"result": {"user": "alice"}}'


@pytest.mark.gen_test
async def test_tls_without_the_ca_file_refuses_a_self_signed_backend(
    tls_backend: tuple[ProxyBackend, Path], make_client: MakeClient
) -> None:
    backend, _ = tls_backend
    with pytest.raises(ProxyError, match="TLS"):
        await make_client().post(backend.url("connect"), BODY, JSON, TIMEOUT)
    assert backend.received == []
