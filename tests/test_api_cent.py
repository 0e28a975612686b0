"""The official `cent` library, unmodified, drives every server API method of a real
`run.py` server; real WebSocket clients see the effects.

Each test runs with cent's sync `Client` (in a thread, as an application would
call it) and its `AsyncClient`. The server is one process for the module, on the
session's Redis and MongoDB, with its API key from the environment.
"""

from __future__ import annotations

import asyncio
import json
import time
from asyncio.subprocess import PIPE
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import cent
import pytest
from wsfan.embedded import free_port
from wsfan.protocol import Encoding

from tests.client import ProtoClient
from tests.conftest import TIMEOUT_SCALE
from tests.processes import RUN, Server, clean_env, run_to_exit, running

KEY = "cent-test-key"
TEST_TIMEOUT = 20 * TIMEOUT_SCALE

Call = Callable[[str, Any], Awaitable[Any]]


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str, mongo_url: str
) -> Iterator[Server]:
    env = clean_env(
        REDIS_URL=redis_url,
        MONGO_URL=mongo_url,
        WSFAN_REDIS__PREFIX="cent-module",
        WSFAN_API__KEYS=KEY,
        WSFAN_CHANNELS__PRESENCE="true",  # off outside namespaces in config/default.toml
        WSFAN_LOG__LEVEL="warning",
    )
    with running(tmp_path_factory.mktemp("cent"), env, ("--workers", "1"), name="cent") as s:
        s.wait_ready()
        yield s


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@asynccontextmanager
async def cent_client(server: Server, kind: str, key: str = KEY) -> AsyncIterator[Call]:
    """`call(method, request)`: the method of cent's sync or async client."""
    url = f"http://127.0.0.1:{server.port}/api"
    if kind == "sync":
        with cent.Client(url, key, timeout=10 * TIMEOUT_SCALE) as sync_client:

            async def call_sync(method: str, request: Any) -> Any:
                return await asyncio.to_thread(getattr(sync_client, method), request)

            yield call_sync
        return
    async with cent.AsyncClient(url, key, timeout=10 * TIMEOUT_SCALE) as async_client:

        async def call_async(method: str, request: Any) -> Any:
            return await getattr(async_client, method)(request)

        yield call_async


@asynccontextmanager
async def ws_client(server: Server, *channels: str) -> AsyncIterator[ProtoClient]:
    url = f"ws://127.0.0.1:{server.port}/connection/websocket"
    c = await ProtoClient.open(url, Encoding.JSON, timeout=5 * TIMEOUT_SCALE)
    try:
        await c.connect()
        for channel in channels:
            await c.result("subscribe", {"channel": channel})
        yield c
    finally:
        c.close()


def unique(name: str, kind: str) -> str:
    """A channel of this test alone (the server is shared by the module)."""
    return f"{name}-{kind}-{time.monotonic_ns()}"


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_cent_publish_with_tags_and_idempotency_key(server: Server, kind: str) -> None:
    channel = unique("pub", kind)
    async with cent_client(server, kind) as call, ws_client(server, channel) as c:
        request = cent.PublishRequest(
            channel=channel, data={"text": "hi"}, tags={"k": "v"}, idempotency_key="once"
        )
        result = await call("publish", request)
        assert result.offset == 1 and result.epoch
        again = await call("publish", request)
        assert (again.offset, again.epoch) == (result.offset, result.epoch)
        pub = (await c.push("pub", channel))["pub"]
        assert pub == {"data": {"text": "hi"}, "offset": 1, "tags": {"k": "v"}}


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_cent_broadcast(server: Server, kind: str) -> None:
    one, two = unique("b1", kind), unique("b2", kind)
    async with cent_client(server, kind) as call, ws_client(server, one, two) as c:
        result = await call("broadcast", cent.BroadcastRequest(channels=[one, two], data=7))
        assert [r.result.offset for r in result.responses] == [1, 1]
        assert {(await c.push("pub"))["channel"] for _ in range(2)} == {one, two}


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_cent_subscribe_and_unsubscribe(server: Server, kind: str) -> None:
    channel = unique("sub", kind)
    async with cent_client(server, kind) as call, ws_client(server) as c:
        target: dict[str, Any] = {"user": "", "client": c.client_id, "channel": channel}
        await call("subscribe", cent.SubscribeRequest(**target, data={"hello": 1}))
        assert (await c.push("subscribe", channel))["subscribe"]["data"] == {"hello": 1}
        await call("unsubscribe", cent.UnsubscribeRequest(**target))
        assert (await c.push("unsubscribe", channel))["unsubscribe"]["code"] == 2000


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_cent_disconnect_with_a_custom_code(server: Server, kind: str) -> None:
    async with cent_client(server, kind) as call, ws_client(server) as c:
        request = cent.DisconnectRequest(
            user="", client=c.client_id, disconnect=cent.Disconnect(code=4501, reason="bye")
        )
        await call("disconnect", request)
        assert await c.closed() == (4501, "bye")


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_cent_refresh_expired(server: Server, kind: str) -> None:
    async with cent_client(server, kind) as call, ws_client(server) as c:
        await call("refresh", cent.RefreshRequest(user="", client=c.client_id, expired=True))
        assert (await c.closed())[0] == 3005


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_cent_presence_and_presence_stats(server: Server, kind: str) -> None:
    channel = unique("presence", kind)
    async with cent_client(server, kind) as call, ws_client(server, channel) as c:
        presence = await call("presence", cent.PresenceRequest(channel=channel))
        assert list(presence.presence) == [c.client_id]
        assert presence.presence[c.client_id].client == c.client_id
        stats = await call("presence_stats", cent.PresenceStatsRequest(channel=channel))
        assert (stats.num_clients, stats.num_users) == (1, 1)


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_cent_history_and_history_remove(server: Server, kind: str) -> None:
    channel = unique("history", kind)
    async with cent_client(server, kind) as call:
        for i in range(3):
            last = await call("publish", cent.PublishRequest(channel=channel, data=i))
        history = await call("history", cent.HistoryRequest(channel=channel, limit=2, reverse=True))
        assert [p.data for p in history.publications] == [2, 1]
        assert (history.offset, history.epoch) == (3, last.epoch)
        since = cent.StreamPosition(offset=1, epoch=last.epoch)
        after = await call("history", cent.HistoryRequest(channel=channel, limit=-1, since=since))
        assert [p.offset for p in after.publications] == [2, 3]
        await call("history_remove", cent.HistoryRemoveRequest(channel=channel))
        emptied = await call("history", cent.HistoryRequest(channel=channel, limit=-1))
        assert emptied.publications == [] and emptied.offset == 3


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_cent_channels(server: Server, kind: str) -> None:
    channel = unique("listed", kind)
    async with cent_client(server, kind) as call, ws_client(server, channel):
        result = await call("channels", cent.ChannelsRequest(pattern="listed-*"))
        assert result.channels[channel].num_clients == 1
        assert all(name.startswith("listed-") for name in result.channels)


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_cent_info(server: Server, kind: str) -> None:
    async with cent_client(server, kind) as call:
        (node,) = (await call("info", cent.InfoRequest())).nodes
        assert node.uid and node.name and node.version


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_cent_batch(server: Server, kind: str) -> None:
    channel = unique("batch", kind)
    async with cent_client(server, kind) as call:
        request = cent.BatchRequest(
            requests=[
                cent.PublishRequest(channel=channel, data=1),
                cent.PublishRequest(channel=channel, data=2),
                cent.HistoryRequest(channel=channel, limit=-1),
            ]
        )
        result = await call("batch", request)
        first, second, history = result.replies
        assert (first.offset, second.offset) == (1, 2)
        assert [p.data for p in history.publications] == [1, 2]


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_cent_raises_its_api_error_with_code_and_message(server: Server, kind: str) -> None:
    async with cent_client(server, kind) as call:
        with pytest.raises(cent.CentApiResponseError) as info:
            await call("publish", cent.PublishRequest(channel="nope:x", data=1))
        assert (info.value.code, info.value.message) == (102, "unknown channel")


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_cent_raises_unauthorized_for_a_wrong_key(server: Server, kind: str) -> None:
    async with cent_client(server, kind, key="wrong") as call:
        with pytest.raises(cent.CentUnauthorizedError):
            await call("info", cent.InfoRequest())


def test_the_server_log_never_shows_the_key(server: Server) -> None:
    assert KEY not in server.stderr()


def _publish_command(server: Server, channel: str, data: str, *extra: str) -> list[str]:
    """run.py's arguments for a publish to this server."""
    url = f"http://127.0.0.1:{server.port}/api"
    return ["publish", channel, data, "--url", url, "--api-key", KEY, *extra]


def test_cli_publish_prints_the_result_and_reaches_subscribers(server: Server) -> None:
    async def scenario() -> tuple[bytes, dict[str, Any]]:
        channel = unique("cli", "shell")
        async with ws_client(server, channel) as c:
            args = _publish_command(server, channel, '{"text": "from a shell"}', "--tag", "via=cli")
            done = await asyncio.create_subprocess_exec(
                *RUN, *args, stdout=PIPE, stderr=PIPE, env=clean_env()
            )
            out, err = await asyncio.wait_for(done.communicate(), 20 * TIMEOUT_SCALE)
            assert done.returncode == 0, err
            pub = (await c.push("pub", channel))["pub"]
            c.close()
            await c.closed()  # before asyncio.run closes the loop under the socket
            return out, pub

    out, pub = asyncio.run(scenario())
    result = json.loads(out)
    assert result["offset"] == 1 and result["epoch"]
    assert pub == {"data": {"text": "from a shell"}, "offset": 1, "tags": {"via": "cli"}}


def test_cli_publish_reports_an_api_error_with_exit_1(server: Server) -> None:
    result = run_to_exit(_publish_command(server, "nope:x", "1"), clean_env())
    assert result.returncode == 1
    assert "publish failed (HTTP 200): 102: unknown channel" in result.stderr


def test_cli_publish_with_a_wrong_key_exits_1_without_printing_it(server: Server) -> None:
    url = f"http://127.0.0.1:{server.port}/api"
    args = ["publish", "news", "1", "--url", url, "--api-key", "secret-wrong"]
    result = run_to_exit(args, clean_env())
    assert result.returncode == 1
    assert "HTTP 401" in result.stderr
    assert "secret-wrong" not in result.stderr + result.stdout


def test_cli_publish_with_invalid_json_exits_2() -> None:
    result = run_to_exit(["publish", "news", "{not json"], clean_env())
    assert result.returncode == 2
    assert "data: not valid JSON" in result.stderr


def test_cli_publish_cannot_reach_a_closed_port_and_says_so() -> None:
    url = f"http://127.0.0.1:{free_port()}/api"
    result = run_to_exit(["publish", "news", "1", "--url", url, "--api-key", "k"], clean_env())
    assert result.returncode == 1
    assert "cannot reach" in result.stderr
