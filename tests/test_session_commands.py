"""The command handlers (server/session/commands.py): their answers directly, in
process on a real node; and every command id gets exactly one reply under real
broker faults: a Valkey of the test's own that refuses PUBLISH (an ACL rule, so joins
fail after the subscribe reply is queued) or that is stopped outright.

Absence of a second reply is proven without waiting: commands of a connection
run one at a time, work after a reply finishes before the next command starts,
so once a last command (`SENTINEL`) is answered, every reply to the earlier
ones has been sent.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from redis import Redis
from wsfan.app import RPCContext, RPCResult
from wsfan.auth.cli import mint
from wsfan.config import Settings, load_settings
from wsfan.embedded import EmbeddedServer
from wsfan.node import Node
from wsfan.protocol import Encoding

from tests.app_hooks import install
from tests.client import ProtoClient
from tests.transports import RecordingTransport, messages, new_session, started_node

# config/default.toml has presence and join/leave off outside namespaces; the joins
# that fail here are those of channels such as "news", so they are turned on.
WITH_PRESENCE = {"presence": True, "join_leave": True}

SENTINEL = 999

pytestmark = pytest.mark.brokers("redis")


@pytest.fixture
def settings(embedded_redis: EmbeddedServer, redis_prefix: str) -> Settings:
    """The Redis broker on this test's own Valkey, which the test may break."""
    return load_settings(env={}).with_overrides(
        broker={"type": "redis"},
        redis={"url": embedded_redis.url, "prefix": redis_prefix, "command_timeout": 2.0},
        channels=WITH_PRESENCE,
    )


@pytest.fixture
def valkey(embedded_redis: EmbeddedServer) -> Iterator[Redis]:
    client = Redis.from_url(embedded_redis.url)
    yield client
    client.close()


def token(node: Node, user: str = "alice", **claims: Any) -> str:
    return mint(node.settings.auth.hmac_secret, user, **claims)


async def answers(c: ProtoClient, *commands: dict[str, Any]) -> Counter[int]:
    """Sends `commands` and a sentinel in one frame; how many replies each id got."""
    await c.send(*commands, {"id": SENTINEL, "rpc": {"method": "sentinel"}})
    replies: Counter[int] = Counter()
    while True:
        message = await c.recv()
        assert message is not None, f"closed {c.conn.close_code} before the sentinel"
        if message.get("id"):
            replies[message["id"]] += 1
            if message["id"] == SENTINEL:
                return replies


def no_errors_logged(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [r.getMessage() for r in bad]


@pytest.mark.gen_test(timeout=60)
async def test_a_join_that_fails_after_the_subscribe_reply_adds_no_second_reply(
    client, node: Node, valkey: Redis, caplog: pytest.LogCaptureFixture
):
    c = await client()
    valkey.acl_setuser("default", enabled=True, nopass=True, commands=["-publish"])
    replies = await answers(c, {"id": 1, "subscribe": {"channel": "news"}})
    assert replies == Counter({1: 1, SENTINEL: 1})
    assert any("join" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    no_errors_logged(caplog)


@pytest.mark.gen_test(timeout=60)
async def test_joins_that_fail_after_the_connect_reply_add_no_second_reply(
    open_client, node: Node, valkey: Redis, encoding: Encoding, caplog: pytest.LogCaptureFixture
):
    c = await open_client(encoding)
    valkey.acl_setuser("default", enabled=True, nopass=True, commands=["-publish"])
    connect = {"token": token(node, channels=["news", "room"])}
    replies = await answers(c, {"id": 1, "connect": connect})
    assert replies == Counter({1: 1, SENTINEL: 1})
    no_errors_logged(caplog)


@pytest.mark.gen_test(timeout=60)
async def test_every_method_gets_exactly_one_reply_while_valkey_is_stopped(
    client, node: Node, embedded_redis: EmbeddedServer, caplog: pytest.LogCaptureFixture
):
    class App:
        async def rpc(self, ctx: RPCContext) -> RPCResult:
            await node.publish("news", ctx.data)
            return RPCResult()

    async def received(session: Any, data: Any) -> None:
        await node.publish("news", data)

    install(node, App())
    node.send_handler = received
    c = await client(token=token(node))
    sub_token = token(node, channel="before", info={"v": 1})
    await c.result("subscribe", {"channel": "before", "token": sub_token})
    await c.result("subscribe", {"channel": "other"})
    embedded_redis.stop()

    commands = [
        {"subscribe": {"channel": "news"}},
        {"unsubscribe": {"channel": "other"}},
        {"publish": {"channel": "news", "data": 1}},
        {"history": {"channel": "news", "limit": 10}},
        {"presence": {"channel": "before"}},
        {"presence_stats": {"channel": "before"}},
        {"refresh": {"token": token(node, info={"new": True})}},
        {"sub_refresh": {"channel": "before", "token": token(node, channel="before", info=2)}},
        {"rpc": {"method": "publish", "data": 1}},
        {"send": {"data": 1}},
        {"connect": {}},  # already connected: closes, unanswered, after the sentinel
    ]
    numbered = [{"id": i, **command} for i, command in enumerate(commands[:-1], 1)]
    replies = await answers(c, *numbered)
    assert replies == Counter({i: 1 for i in [*range(1, len(commands)), SENTINEL]})
    # A fresh connection still connects (connect needs no broker) and is answered once.
    fresh = await client(connect=False)
    assert await answers(fresh, {"id": 1, "connect": {}}) == Counter({1: 1, SENTINEL: 1})
    no_errors_logged(caplog)


# The handlers' answers, in process -----------------------------------------------


async def answered(frame: str, *settings: Any) -> list[dict[str, Any]]:
    """Every message a fresh session on a memory-broker node sends for `frame`."""
    node = await started_node(namespaces={"quiet": {"presence": False}})
    try:
        transport = RecordingTransport()
        session = new_session(node, transport)
        await session.handle_frame(frame)
        session.outbox.flush()
        return messages(transport)
    finally:
        await node.close()


@pytest.mark.gen_test(timeout=10)
async def test_a_command_before_connect_is_answered_101():
    assert (await answered('{"id":1,"presence":{"channel":"a"}}'))[0]["error"]["code"] == 101


@pytest.mark.gen_test(timeout=10)
async def test_an_unknown_method_is_answered_104():
    sent = await answered('{"id":1,"connect":{}}\n{"id":2,"method":99}')
    assert sent[1]["error"]["code"] == 104


@pytest.mark.gen_test(timeout=10)
async def test_connect_answers_with_the_client_id_and_ping_interval():
    result = (await answered('{"id":1,"connect":{}}'))[0]["connect"]
    assert result["client"] and result["pong"] is True and result["ping"] >= 1


@pytest.mark.gen_test(timeout=10)
async def test_a_second_subscribe_to_a_channel_is_answered_105():
    sent = await answered(
        '{"id":1,"connect":{}}\n{"id":2,"subscribe":{"channel":"a"}}\n'
        '{"id":3,"subscribe":{"channel":"a"}}'
    )
    assert [m.get("id") for m in sent if "id" in m][:3] == [1, 2, 3]
    assert next(m for m in sent if m.get("id") == 3)["error"]["code"] == 105


@pytest.mark.gen_test(timeout=10)
async def test_presence_of_a_channel_that_keeps_none_is_answered_108():
    sent = await answered('{"id":1,"connect":{}}\n{"id":2,"presence":{"channel":"quiet:a"}}')
    assert sent[1]["error"]["code"] == 108


@pytest.mark.gen_test(timeout=10)
async def test_publish_is_answered_once_the_broker_took_it():
    sent = await answered(
        '{"id":1,"connect":{}}\n{"id":2,"subscribe":{"channel":"a"}}\n'
        '{"id":3,"publish":{"channel":"a","data":{"x":1}}}'
    )
    assert {"id": 3, "publish": {}} in sent
