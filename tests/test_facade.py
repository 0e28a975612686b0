"""The public facade (server/facade.py) and the composition root (server/compose.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import wsfan as package
from tornado.ioloop import IOLoop
from tornado.web import Application
from wsfan.compose import build
from wsfan.config import Settings
from wsfan.embedded import free_port
from wsfan.errors import ReplyError
from wsfan.facade import Server
from wsfan.protocol import Encoding, StreamPosition

from tests.client import ProtoClient
from tests.conftest import Opener

# config/default.toml has presence and join/leave off outside namespaces; the tests
# below use them (or a presence call) on channels such as "news", so they say so.
WITH_PRESENCE = {"presence": True, "join_leave": True}

README = Path(__file__).resolve().parent.parent / "README.md"


class HookedApp:
    """An application object with one hook."""

    async def rpc(self, ctx: Any) -> Any: ...


APPLICATION = HookedApp()


@pytest.fixture
def server(settings: Settings, io_loop: IOLoop) -> Iterator[Server]:
    server = build(settings, app=APPLICATION)
    io_loop.run_sync(server.start)
    yield server
    io_loop.run_sync(server.close)


@pytest.fixture
def app(server: Server) -> Application:
    """What conftest's `http_server` serves (and `open_client` connects to)."""
    return server.application()


async def connected(open_client: Opener) -> ProtoClient:
    client = await open_client(Encoding.JSON)
    await client.connect()
    return client


def test_the_package_exports_build_and_server():
    assert package.build is build and package.Server is Server


def test_the_application_object_whose_hooks_run_is_the_servers_app(server: Server):
    assert server.app is APPLICATION
    assert server.node.app.python is not None and server.node.app.python.app is APPLICATION


def test_the_readme_embedding_example_runs(io_loop: IOLoop, capsys: pytest.CaptureFixture[str]):
    text = README.read_text()
    section = text[text.index("### Embedding") :]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code is not None
    namespace: dict[str, object] = {"__name__": "readme_example"}
    exec(compile(code.group(1), "README.md", "exec"), namespace)
    io_loop.run_sync(lambda: namespace["main"](free_port()))  # type: ignore[operator]
    out = capsys.readouterr().out
    assert "hello from the application" in out and "{}" in out


@pytest.mark.gen_test
async def test_publish_reaches_a_subscriber_and_history_keeps_it(
    server: Server, open_client: Opener
):
    client = await connected(open_client)
    await client.result("subscribe", {"channel": "news"})
    position = await server.publish("news", {"n": 1})
    assert (await client.push("pub", "news"))["pub"]["data"] == {"n": 1}
    history = await server.history("news")
    assert [(p.offset, p.data) for p in history.publications][-1] == (position.offset, {"n": 1})


@pytest.mark.gen_test
async def test_history_of_an_undeclared_namespace_answers_102(server: Server):
    with pytest.raises(ReplyError) as raised:
        await server.history("nowhere:x")
    assert raised.value.code == 102


@pytest.mark.settings(channels=WITH_PRESENCE)
@pytest.mark.gen_test
async def test_presence_channels_and_info_describe_the_subscribers(
    server: Server, open_client: Opener
):
    client = await connected(open_client)
    await client.result("subscribe", {"channel": "news"})
    assert set(await server.presence("news")) == {client.client_id}
    stats = await server.presence_stats("news")
    assert (stats.num_clients, stats.num_users) == (1, 1)
    assert await server.channels() == {"news": 1}
    assert await server.channels("chat:*") == {}
    (info,) = server.info()
    assert info["name"] == server.name and info["num_clients"] == 1


@pytest.mark.gen_test
async def test_a_malformed_channel_pattern_answers_107(server: Server):
    with pytest.raises(ReplyError) as raised:
        await server.channels("{a")
    assert raised.value.code == 107


@pytest.mark.gen_test
async def test_unsubscribe_and_disconnect_reach_the_users_connections(
    server: Server, open_client: Opener
):
    client = await connected(open_client)
    await client.result("subscribe", {"channel": "news"})
    await server.unsubscribe("", "news")
    assert (await client.push("unsubscribe", "news"))["unsubscribe"]["code"] == 2000
    await server.disconnect("", 3503, "go away")
    disconnect = (await client.push("disconnect"))["disconnect"]
    assert (disconnect["code"], disconnect["reason"]) == (3503, "go away")


@pytest.mark.gen_test
async def test_a_disconnect_code_outside_3000_to_4999_answers_107(server: Server):
    with pytest.raises(ReplyError) as raised:
        await server.disconnect("alice", 1000)
    assert raised.value.code == 107


@pytest.mark.gen_test
async def test_a_publication_that_skips_history_is_delivered_without_an_offset(
    server: Server, open_client: Opener
):
    client = await connected(open_client)
    await client.result("subscribe", {"channel": "news"})
    position = await server.publish("news", {"n": 1}, skip_history=True)
    assert position.offset == 0
    assert (await client.push("pub", "news"))["pub"]["data"] == {"n": 1}
    assert (await server.history("news")).publications == []


@pytest.mark.gen_test
async def test_a_channel_name_with_whitespace_answers_107(server: Server):
    with pytest.raises(ReplyError) as raised:
        await server.publish("bad name", {})
    assert raised.value.code == 107


@pytest.mark.settings(client={"max_channel_length": 8})
@pytest.mark.gen_test
async def test_a_channel_name_at_max_length_is_published_and_one_byte_more_answers_106(
    server: Server,
):
    await server.publish("a" * 8, {})
    with pytest.raises(ReplyError) as raised:
        await server.publish("a" * 9, {})
    assert raised.value.code == 106


@pytest.mark.gen_test
async def test_broadcast_answers_a_position_or_an_error_per_channel_in_order(
    server: Server, open_client: Opener
):
    client = await connected(open_client)
    await client.result("subscribe", {"channel": "news"})
    first, second = await server.broadcast(["news", "nowhere:x"], {"n": 1})
    assert isinstance(first, StreamPosition) and first.offset == 1
    assert isinstance(second, ReplyError) and second.code == 102
    assert (await client.push("pub", "news"))["pub"]["data"] == {"n": 1}


@pytest.mark.settings(api={"max_broadcast_channels": 2})
@pytest.mark.gen_test
async def test_a_broadcast_to_max_channels_is_sent_and_one_more_answers_106(server: Server):
    assert len(await server.broadcast(["a", "b"], {})) == 2
    with pytest.raises(ReplyError) as raised:
        await server.broadcast(["a", "b", "c"], {})
    assert raised.value.code == 106


@pytest.mark.gen_test
async def test_a_broadcast_to_no_channel_answers_107(server: Server):
    with pytest.raises(ReplyError) as raised:
        await server.broadcast([], {})
    assert raised.value.code == 107


@pytest.mark.gen_test
async def test_history_remove_leaves_the_channel_without_publications(server: Server):
    await server.publish("news", {"n": 1})
    await server.history_remove("news")
    assert (await server.history("news")).publications == []


@pytest.mark.gen_test
async def test_a_server_side_subscribe_reaches_the_users_connection(
    server: Server, open_client: Opener
):
    client = await connected(open_client)
    await server.subscribe("", "news", client.client_id, data={"welcome": True})
    subscribe = (await client.push("subscribe", "news"))["subscribe"]
    assert subscribe["data"] == {"welcome": True}
    await server.publish("news", {"n": 1})
    assert (await client.push("pub", "news"))["pub"]["data"] == {"n": 1}


@pytest.mark.gen_test
async def test_a_refresh_with_expired_closes_the_users_connection_with_3005(
    server: Server, open_client: Opener
):
    client = await connected(open_client)
    await server.refresh("", client.client_id, expired=True)
    assert (await client.closed())[0] == 3005
