"""Bad input gets the protocol's answer and leaves every other connection untouched."""

from __future__ import annotations

import msgpack
import pytest
from wsfan.node import Node
from wsfan.protocol import Encoding

from tests.client import ProtoClient


async def closes_with(c: ProtoClient, code: int) -> None:
    assert (await c.closed())[0] == code


@pytest.mark.gen_test
async def test_invalid_utf8_in_text_frame_closes_with_1007(open_client):
    c = await open_client(Encoding.JSON)
    await c.send_raw(b'{"id":1,"connect":{"name":"\xff"}}', binary=False)
    await closes_with(c, 1007)


@pytest.mark.gen_test
async def test_invalid_json_closes_with_3501(open_client):
    c = await open_client(Encoding.JSON)
    await c.send_raw('{"id":1,"connect":')
    await closes_with(c, 3501)


@pytest.mark.gen_test
async def test_msgpack_garbage_closes_with_3501(open_client):
    c = await open_client(Encoding.MSGPACK)
    await c.send_raw(b"\xc1\xc1\xc1")
    await closes_with(c, 3501)


@pytest.mark.gen_test
async def test_truncated_msgpack_map_closes_with_3501(open_client):
    c = await open_client(Encoding.MSGPACK)
    await c.send_raw(msgpack.packb({"id": 1, "connect": {}})[:-2])
    await closes_with(c, 3501)


@pytest.mark.gen_test
async def test_message_that_is_not_a_map_closes_with_3501(client):
    c = await client(connect=False)
    await c.send([1, 2, 3])
    await closes_with(c, 3501)


@pytest.mark.gen_test
async def test_command_without_id_closes_with_3501(client):
    c = await client(connect=False)
    await c.send({"connect": {}})
    await closes_with(c, 3501)


@pytest.mark.parametrize("bad_id", ["1", -1, 1.5, True, 2**32])
@pytest.mark.gen_test
async def test_command_with_bad_id_closes_with_3501(client, bad_id):
    c = await client(connect=False)
    await c.send({"id": bad_id, "connect": {}})
    await closes_with(c, 3501)


@pytest.mark.gen_test
async def test_unknown_method_answers_104_and_connection_stays_usable(client):
    c = await client()
    assert (await c.call("teleport", {}))["error"]["code"] == 104
    assert await c.result("subscribe", {"channel": "news"})


@pytest.mark.gen_test
async def test_command_with_id_and_no_method_answers_104(client):
    c = await client()
    await c.send({"id": 7})
    assert (await c.reply(7))["error"]["code"] == 104


@pytest.mark.parametrize(
    ("method", "params", "field"),
    [
        ("subscribe", {"channel": 5}, "channel"),
        ("subscribe", {}, "channel"),
        ("subscribe", {"channel": "a", "recover": "yes"}, "recover"),
        ("subscribe", {"channel": "a", "offset": -1}, "offset"),
        ("publish", {"channel": "a"}, "data"),
        ("history", {"channel": "a", "limit": "ten"}, "limit"),
        ("history", {"channel": "a", "since": 3}, "since"),
        ("presence", {"channel": ["a"]}, "channel"),
    ],
)
@pytest.mark.gen_test
async def test_bad_arguments_answer_107_naming_the_field(client, method, params, field):
    c = await client()
    error = (await c.call(method, params))["error"]
    assert error["code"] == 107 and field in error["message"]


@pytest.mark.gen_test
async def test_params_that_are_not_a_map_answer_107(client):
    c = await client()
    await c.send({"id": 3, "subscribe": "news"})
    assert (await c.reply(3))["error"]["code"] == 107


@pytest.mark.parametrize("channel", ["with space", "tab\there", "nul\x00", "line\nfeed"])
@pytest.mark.gen_test
async def test_invalid_channel_name_answers_107(client, channel):
    c = await client()
    assert (await c.call("subscribe", {"channel": channel}))["error"]["code"] == 107


@pytest.mark.gen_test
async def test_channel_in_unknown_namespace_answers_102(client):
    c = await client()
    assert (await c.call("subscribe", {"channel": "nowhere:1"}))["error"]["code"] == 102


@pytest.mark.gen_test
async def test_subscribing_twice_answers_105(client):
    c = await client()
    await c.result("subscribe", {"channel": "news"})
    assert (await c.call("subscribe", {"channel": "news"}))["error"]["code"] == 105


@pytest.mark.gen_test
async def test_commands_before_connect_answer_101(client):
    c = await client(connect=False)
    assert (await c.call("subscribe", {"channel": "news"}))["error"]["code"] == 101
    assert await c.connect()


@pytest.mark.gen_test
async def test_second_connect_closes_with_3501(client):
    c = await client()
    await c.send({"id": 50, "connect": {}})
    await closes_with(c, 3501)


@pytest.mark.settings(namespaces={"ro": {"allow_anonymous": True, "allow_publish": False}})
@pytest.mark.gen_test
async def test_publish_where_clients_may_not_publish_answers_103(client):
    c = await client()
    assert (await c.call("publish", {"channel": "ro:1", "data": 1}))["error"]["code"] == 103


@pytest.mark.settings(namespaces={"members": {"allow_anonymous": False, "history_size": 5}})
@pytest.mark.gen_test
async def test_anonymous_client_in_members_only_namespace_answers_103(client):
    c = await client()
    for method in ("subscribe", "history"):
        assert (await c.call(method, {"channel": "members:1"}))["error"]["code"] == 103


@pytest.mark.settings(namespaces={"bare": {"allow_anonymous": True}})
@pytest.mark.gen_test
async def test_history_and_presence_where_not_kept_answer_108(client):
    c = await client()
    for method in ("history", "presence", "presence_stats"):
        assert (await c.call(method, {"channel": "bare:1"}))["error"]["code"] == 108


@pytest.mark.gen_test
async def test_a_misbehaving_client_leaves_other_connections_untouched(open_client, node: Node):
    good = await open_client(Encoding.JSON)
    bad = await open_client(Encoding.JSON)
    await good.connect()
    await good.result("subscribe", {"channel": "news"})
    await bad.connect()
    await bad.result("subscribe", {"channel": "news"})
    await bad.send_raw("this is not json")
    await closes_with(bad, 3501)
    await node.publish("news", "still here")
    assert (await good.push("pub", "news"))["pub"]["data"] == "still here"
