"""The README's example application (examples/cookie_auth.py), run as the README
shows: `python -m examples.cookie_auth PORT`; a user logs in over HTTP, then the
official centrifuge-python SDK connects with the session cookie."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlencode

import pytest
from centrifuge import (
    Client,
    ClientEventHandler,
    ClientState,
    DisconnectedContext,
    SubscriptionEventHandler,
    SubscriptionState,
    UnsubscribedContext,
)
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect
from wsfan.embedded import free_port
from wsfan.errors import ErrorCode

from tests.conftest import TIMEOUT_SCALE
from tests.processes import ROOT, Server, clean_env, ready

TIMEOUT = 5 * TIMEOUT_SCALE
TEST_TIMEOUT = 20 * TIMEOUT_SCALE
README = ROOT / "README.md"
EXAMPLE = ROOT / "examples" / "cookie_auth.py"


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`python -m examples.cookie_auth PORT`, ready; stopped (SIGTERM) after."""
    port = free_port()
    log = tmp_path_factory.mktemp("cookie-auth") / "example.stderr"
    with ready([sys.executable, "-m", "examples.cookie_auth", str(port)], port, log) as server:
        yield server


async def log_in(server: Server, user: str) -> str:
    """POST /login as `user`; the Cookie header its answer's Set-Cookie asks for."""
    response = await AsyncHTTPClient().fetch(
        f"http://127.0.0.1:{server.port}/login", method="POST", body=urlencode({"user": user})
    )
    return response.headers["Set-Cookie"].split(";", 1)[0]


class Disconnects(ClientEventHandler):
    def __init__(self) -> None:
        self.codes: list[int] = []

    async def on_disconnected(self, ctx: DisconnectedContext) -> None:
        self.codes.append(ctx.code)


class Unsubscribes(SubscriptionEventHandler):
    def __init__(self) -> None:
        self.codes: list[int] = []

    async def on_unsubscribed(self, ctx: UnsubscribedContext) -> None:
        self.codes.append(ctx.code)


async def until(condition: Callable[[], bool]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while not condition():
        assert loop.time() < deadline, f"condition not met within {TIMEOUT:g}s"
        await asyncio.sleep(0.01)


@asynccontextmanager
async def sdk_client(
    server: Server, cookie: str | None, events: ClientEventHandler | None = None
) -> AsyncIterator[Client]:
    """An SDK client of the example (sending `cookie` when given), connect called;
    on the way out, disconnected and its socket closed (the SDK closes it in a
    background task that nothing else awaits)."""
    headers = {"Cookie": cookie} if cookie else {}
    client = Client(
        f"ws://127.0.0.1:{server.port}/connection/websocket",
        events=events,
        headers=headers,
        timeout=TIMEOUT,
        min_reconnect_delay=0.05,
    )
    try:
        await client.connect()
        yield client
    finally:
        await client.disconnect()
        await until(lambda: not client._background_tasks)


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_a_logged_in_user_subscribes_to_its_inbox_and_a_public_channel(example: Server):
    async with sdk_client(example, await log_in(example, "alice")) as client:
        await client.ready()
        for channel in ("inbox:alice", "public:news"):
            sub = client.new_subscription(channel)
            await sub.subscribe()
            await sub.ready()
            assert sub.state is SubscriptionState.SUBSCRIBED


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_another_users_inbox_is_refused_with_103(example: Server):
    async with sdk_client(example, await log_in(example, "alice")) as client:
        await client.ready()
        events = Unsubscribes()
        sub = client.new_subscription("inbox:bob", events=events)
        await sub.subscribe()
        await until(lambda: bool(events.codes))
        assert events.codes == [ErrorCode.PERMISSION_DENIED]
        assert sub.state is SubscriptionState.UNSUBSCRIBED


@pytest.mark.parametrize("cookie", [None, "session=not-a-session"])
@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_no_or_an_unknown_session_cookie_is_refused_with_101(
    example: Server, cookie: str | None
):
    events = Disconnects()
    async with sdk_client(example, cookie, events) as client:
        await until(lambda: bool(events.codes))
        assert events.codes == [ErrorCode.UNAUTHORIZED]
        assert client.state is ClientState.DISCONNECTED


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_another_sites_page_sending_the_cookie_is_refused_with_403(example: Server):
    cookie = await log_in(example, "alice")
    request = HTTPRequest(
        f"ws://127.0.0.1:{example.port}/connection/websocket",
        headers={"Cookie": cookie, "Origin": "https://elsewhere.example"},
    )
    with pytest.raises(HTTPClientError) as refused:
        await websocket_connect(request)
    assert refused.value.code == 403


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_a_bad_user_name_is_refused_at_login_with_400(example: Server):
    response = await AsyncHTTPClient().fetch(
        f"http://127.0.0.1:{example.port}/login",
        method="POST",
        body=urlencode({"user": "not a name"}),
        raise_error=False,
    )
    assert response.code == 400 and "Set-Cookie" not in response.headers


def test_the_example_stops_cleanly_on_sigterm(tmp_path: Path):
    port = free_port()
    log = tmp_path / "example.stderr"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "examples.cookie_auth", str(port)],
            cwd=ROOT,
            env=clean_env(),
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    server = Server(proc, port, log)
    try:
        server.wait_ready()
        assert server.terminate() == 0, server.stderr()
    finally:
        server.stop()


def test_the_readme_shows_the_example_as_it_is():
    assert EXAMPLE.read_text() in README.read_text()
