"""The unidirectional transports (uni_sse, uni_http_stream, uni_websocket) read
as `curl -N`, EventSource or a bare WebSocket would: one connect request in, then
only pushes without their wrapper, first `{"connect": ...}`."""

from __future__ import annotations

import json
from typing import Any

import pytest
from wsfan.api.keys import DEVELOPMENT_KEY
from wsfan.auth.cli import mint
from wsfan.node import Node

from tests.streams_client import UNIDIRECTIONAL, Clients, Stream, UniWebSocket

each_kind = pytest.mark.parametrize("kind", UNIDIRECTIONAL)


@pytest.fixture
def port(http_server, http_port: int) -> int:
    """The port of this test's server (started)."""
    return http_port


def token(node: Node, user: str, channels: list[str] | None = None) -> str:
    return mint(node.settings.auth.hmac_secret, user, channels=channels)


async def next_pub(opened: Stream | UniWebSocket) -> dict[str, Any]:
    """The next publication push (unwrapped), skipping joins and leaves."""
    while "pub" not in (message := await opened.recv()):
        assert set(message) & {"join", "leave"}, message
    return message


async def refusal(opened: Stream | UniWebSocket) -> int:
    """The code a refused uni connection ends with: a stream's one message is
    its disconnect push before the last chunk; a uni WebSocket says it in its
    close frame (as the WebSocket endpoint does for a refused connect)."""
    messages = await opened.rest()
    if isinstance(opened, UniWebSocket):
        assert messages == []
        assert opened.close_code is not None
        return opened.close_code
    assert opened.clean_end
    assert len(messages) == 1 and set(messages[0]) == {"disconnect"}, messages
    assert messages[0]["disconnect"]["reconnect"] is False
    return int(messages[0]["disconnect"]["code"])


@pytest.mark.parametrize(
    ("kind", "method"),
    [
        ("uni_sse", "GET"),
        ("uni_sse", "POST"),
        ("uni_http_stream", "POST"),
        ("uni_websocket", "first message"),
    ],
)
@pytest.mark.gen_test
async def test_the_connect_request_is_answered_with_an_unwrapped_connect_push(port, kind, method):
    async with Clients(port) as clients:
        opened = await clients.uni(kind, {"name": "curl"}, method=method)
        first = await opened.recv()
        assert set(first) == {"connect"}  # no "push", no "id"
        connect = first["connect"]
        assert connect["client"] and connect["ping"] >= 1
        assert "pong" not in connect  # a unidirectional client cannot answer pings
        assert "session" not in connect  # nothing to send /emulation requests for


@pytest.mark.gen_test
async def test_uni_sse_without_cf_connect_connects_anonymously(port, node: Node):
    async with Clients(port) as clients:
        opened = await clients.uni("uni_sse", None)
        assert opened.headers["Content-Type"] == "text/event-stream"
        first = await opened.recv()
        assert "client" in first["connect"] and "subs" not in first["connect"]
        assert node.hub.num_clients == 1


@each_kind
@pytest.mark.gen_test
async def test_publications_arrive_unwrapped_with_their_channel(port, node: Node, kind):
    async with Clients(port) as clients:
        opened = await clients.uni(kind, {"subs": {"news": {}}})
        connect = (await opened.recv())["connect"]
        assert set(connect["subs"]) == {"news"}
        await node.publish("news", {"n": 1})
        assert await next_pub(opened) == {"channel": "news", "pub": {"data": {"n": 1}, "offset": 1}}


@each_kind
@pytest.mark.gen_test
async def test_subs_subscribes_every_channel_it_names(port, node: Node, kind):
    async with Clients(port) as clients:
        opened = await clients.uni(kind, {"subs": {"a": {}, "b": {}}})
        assert set((await opened.recv())["connect"]["subs"]) == {"a", "b"}
        await node.publish("a", 1)
        await node.publish("b", 2)
        got = [await next_pub(opened), await next_pub(opened)]
        assert sorted((m["channel"], m["pub"]["data"]) for m in got) == [("a", 1), ("b", 2)]


@each_kind
@pytest.mark.gen_test
async def test_the_channels_of_the_token_are_subscribed(port, node: Node, kind):
    async with Clients(port) as clients:
        opened = await clients.uni(kind, {"token": token(node, "alice", ["news"])})
        connect = (await opened.recv())["connect"]
        assert set(connect["subs"]) == {"news"}
        await node.publish("news", "hello")
        assert (await next_pub(opened))["pub"]["data"] == "hello"


@pytest.mark.settings(namespaces={"private": {"allow_subscribe": False}})
@each_kind
@pytest.mark.gen_test
async def test_a_channel_its_namespace_refuses_gives_3507_and_the_stream_ends(
    port, node: Node, kind
):
    async with Clients(port) as clients:
        opened = await clients.uni(kind, {"subs": {"news": {}, "private:x": {}}})
        assert await refusal(opened) == 3507
        assert node.hub.num_subscriptions == 0


@pytest.mark.gen_test
async def test_an_unknown_namespace_in_subs_gives_3501(port):
    async with Clients(port) as clients:
        opened = await clients.uni("uni_sse", {"subs": {"nowhere:x": {}}})
        assert await refusal(opened) == 3501


@each_kind
@pytest.mark.gen_test
async def test_recovery_from_the_position_in_subs_returns_the_missed_publications(
    port, node: Node, kind
):
    async with Clients(port) as clients:
        await node.publish("news", "seen")
        first = await clients.uni("uni_sse", {"subs": {"news": {}}})
        position = (await first.recv())["connect"]["subs"]["news"]
        for i in range(3):
            await node.publish("news", i)
        recover = {"recover": True, "offset": position["offset"], "epoch": position["epoch"]}
        opened = await clients.uni(kind, {"subs": {"news": recover}})
        news = (await opened.recv())["connect"]["subs"]["news"]
        assert news["recovered"] is True
        assert [p["data"] for p in news["publications"]] == [0, 1, 2]
        assert [p["offset"] for p in news["publications"]] == [2, 3, 4]


@each_kind
@pytest.mark.gen_test
async def test_a_bad_token_gives_disconnect_3500(port, kind):
    async with Clients(port) as clients:
        opened = await clients.uni(kind, {"token": "not-a-token"})
        assert await refusal(opened) == 3500


@pytest.mark.parametrize("request_", ["[1, 2]", '"connect"', "{not json", '{"a": 1}\n{"b": 2}'])
@each_kind
@pytest.mark.gen_test
async def test_a_request_that_is_not_one_object_gives_3501(port, kind, request_):
    async with Clients(port) as clients:
        opened = await clients.uni(kind, request_)
        assert await refusal(opened) == 3501


@pytest.mark.settings(client={"ping_interval": 0.1, "pong_timeout": 0.1})
@each_kind
@pytest.mark.gen_test
async def test_pings_arrive_in_the_form_of_each_transport_and_need_no_pong(port, kind):
    ping = None if kind == "uni_http_stream" else {}
    async with Clients(port) as clients:
        opened = await clients.uni(kind, {})
        assert "connect" in await opened.recv()
        for _ in range(4):  # 0.4 s: past pong_timeout, and still open
            assert await opened.recv() == ping


@each_kind
@pytest.mark.gen_test
async def test_server_api_disconnect_is_pushed_unwrapped_before_the_stream_ends(
    port, node: Node, kind
):
    async with Clients(port) as clients:
        opened = await clients.uni(kind, {"token": token(node, "bob")})
        assert "connect" in await opened.recv()
        headers = {"X-API-Key": DEVELOPMENT_KEY, "Content-Type": "application/json"}
        body = json.dumps({"user": "bob", "disconnect": {"code": 3555, "reason": "banned"}})
        assert (await clients.post("/api/disconnect", body, headers))[0] == 200
        disconnect = {"code": 3555, "reason": "banned", "reconnect": False}
        assert await opened.rest() == [{"disconnect": disconnect}]
        if isinstance(opened, UniWebSocket):
            assert opened.close_code == 3555
        else:
            assert opened.clean_end


@pytest.mark.gen_test
async def test_a_uni_websocket_ignores_messages_after_its_connect_request(port, node: Node):
    async with Clients(port) as clients:
        opened = await clients.uni("uni_websocket", {"subs": {"news": {}}})
        assert "connect" in await opened.recv()
        assert isinstance(opened, UniWebSocket)
        await opened.ws.send_str(json.dumps({"id": 2, "publish": {"channel": "news", "data": 1}}))
        await opened.ws.send_str("garbage")
        await node.publish("news", "from the server")
        assert (await next_pub(opened))["pub"]["data"] == "from the server"
