"""A connection's subscriptions (server/session/subscriptions.py), in process on a
real node: offsets continue the subscribe reply with no gap and no duplicate,
a stream that moved on unsubscribes with 2500, and a presence failure while
subscribing undoes the subscription, answered 100 and logged by the node once;
a channel is answered once even when the server API subscribes it mid-connect."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from wsfan.auth.cli import mint
from wsfan.broker.base import HistoryOptions, HistoryQuery, HistoryResult
from wsfan.broker.memory import MemoryBroker, MemoryPresence
from wsfan.compose import build_node
from wsfan.config import load_settings
from wsfan.node import Node
from wsfan.protocol import ClientInfo, Publication, StreamPosition
from wsfan.session import Session

from tests.conftest import TIMEOUT_SCALE
from tests.transports import RecordingTransport, messages, new_session, started_node

TIMEOUT = 10 * TIMEOUT_SCALE
HISTORY = {"r": {"history_size": 10, "history_ttl": 60, "allow_anonymous": True}}


async def subscribed(node: Node, channel: str = "r:a") -> tuple[Session, RecordingTransport]:
    transport = RecordingTransport()
    session = new_session(node, transport)
    await session.handle_frame(
        f'{{"id":1,"connect":{{}}}}\n{{"id":2,"subscribe":{{"channel":"{channel}"}}}}'
    )
    session.outbox.flush()
    return session, transport


def pushes(transport: RecordingTransport, kind: str) -> list[dict[str, Any]]:
    return [m["push"][kind] for m in messages(transport) if kind in m.get("push", {})]


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_publications_continue_the_replys_offset():
    node = await started_node(namespaces=HISTORY)
    try:
        session, transport = await subscribed(node)
        reply = messages(transport)[1]["subscribe"]
        offset, epoch = reply["offset"], reply["epoch"]
        for i in (1, 2):
            node.handle_publication("r:a", Publication(i, offset + i, epoch=epoch))
        session.outbox.flush()
        assert [p["data"] for p in pushes(transport, "pub")] == [1, 2]
    finally:
        await node.close()


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_a_publication_already_sent_is_not_sent_again():
    node = await started_node(namespaces=HISTORY)
    try:
        session, transport = await subscribed(node)
        reply = messages(transport)[1]["subscribe"]
        for _ in range(2):  # the second is a duplicate of the first
            node.handle_publication(
                "r:a", Publication(0, reply["offset"] + 1, epoch=reply["epoch"])
            )
        session.outbox.flush()
        assert len(pushes(transport, "pub")) == 1
        assert pushes(transport, "unsubscribe") == []
    finally:
        await node.close()


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_a_gap_unsubscribes_with_2500():
    node = await started_node(namespaces=HISTORY)
    try:
        session, transport = await subscribed(node)
        reply = messages(transport)[1]["subscribe"]
        node.handle_publication("r:a", Publication(0, reply["offset"] + 2, epoch=reply["epoch"]))
        session.outbox.flush()
        assert pushes(transport, "unsubscribe")[0]["code"] == 2500
        assert session.channels == []
    finally:
        await node.close()


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_a_new_epoch_after_a_broker_outage_unsubscribes_with_2500():
    node = await started_node(namespaces=HISTORY)
    try:
        session, transport = await subscribed(node)
        (subscriptions,) = node.hub.subscribers("r:a")
        subscriptions.check_position("r:a", StreamPosition(0, "another epoch"))
        session.outbox.flush()
        assert pushes(transport, "unsubscribe")[0]["code"] == 2500
    finally:
        await node.close()


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_the_server_side_subscribe_pushes_and_the_server_unsubscribe_ends_it():
    node = await started_node(namespaces=HISTORY)
    try:
        session, transport = await subscribed(node)
        assert await session.server_subscribe("r:b", data={"hello": 1})
        assert not await session.server_subscribe("r:b")  # already subscribed
        assert await session.server_unsubscribe("r:b")
        session.outbox.flush()
        assert pushes(transport, "subscribe")[0]["data"] == {"hello": 1}
        assert pushes(transport, "unsubscribe")[0]["code"] == 2000
        assert session.channels == ["r:a"]
    finally:
        await node.close()


class FailingPresence(MemoryPresence):
    """Memory presence whose adds fail, as a Redis that went away does."""

    async def add_presence(self, channel: str, client_id: str, info: ClientInfo) -> None:
        raise ConnectionError("presence is down")


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_a_presence_failure_while_subscribing_is_answered_100_and_undone(caplog):
    settings = load_settings(env={}).with_overrides(
        broker={"type": "memory"}, namespaces={"p": {"presence": True, "allow_anonymous": True}}
    )
    node = build_node(settings, presence=FailingPresence())
    await node.start()
    try:
        session, transport = await subscribed(node, "p:a")
        assert messages(transport)[1]["error"]["code"] == 100
        assert session.channels == []
        assert not node.hub.has_subscribers("p:a")
        failures = [r for r in caplog.records if "presence" in r.getMessage()]
        assert len(failures) == 1 and failures[0].name == "wsfan.node"
        assert failures[0].levelno == logging.WARNING and not failures[0].exc_info
    finally:
        await node.close()


class GatedHistory(MemoryBroker):
    """The memory broker, with `gated` channel's history reads waiting for the gate."""

    def __init__(self, gated: str) -> None:
        super().__init__()
        self.gated = gated
        self.reading = asyncio.Event()
        self.gate = asyncio.Event()

    async def history(
        self, channel: str, query: HistoryQuery, options: HistoryOptions
    ) -> HistoryResult:
        if channel == self.gated:
            self.reading.set()
            await self.gate.wait()
        return await super().history(channel, query, options)


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_a_token_channel_the_server_api_subscribed_during_connect_is_answered_once():
    settings = load_settings(env={}).with_overrides(broker={"type": "memory"}, namespaces=HISTORY)
    broker = GatedHistory("r:a")
    node = build_node(settings, broker=broker)
    await node.start()
    try:
        transport = RecordingTransport()
        session = new_session(node, transport)
        token = mint(settings.auth.hmac_secret, "alice", channels=["r:a", "b"])
        connecting = asyncio.ensure_future(
            session.handle_frame(f'{{"id":1,"connect":{{"token":"{token}"}}}}')
        )
        await asyncio.wait_for(broker.reading.wait(), TIMEOUT)  # connect waits on r:a
        assert await session.server_subscribe("b")
        broker.gate.set()
        await asyncio.wait_for(connecting, TIMEOUT)
        session.outbox.flush()
        sent = messages(transport)
        in_reply = [m for m in sent if m.get("id") == 1 and "b" in m["connect"].get("subs", {})]
        pushed = [
            m for m in sent if "subscribe" in m.get("push", {}) and m["push"]["channel"] == "b"
        ]
        assert len(in_reply) + len(pushed) == 1, sent
    finally:
        await node.close()
