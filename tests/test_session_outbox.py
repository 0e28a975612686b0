"""The outbox (server/session/outbox.py): one queue and one budget per connection.

Its contract directly (a recording transport whose socket can fall behind),
then the budget end to end: everything held for a client
counts against `client.max_unsent_bytes`, and answers a client chooses the size
of stop at `client.reply_bytes`.

Edges over real sockets: a message of exactly the budget reaches an idle client,
one byte more closes it with 3008; a history or recovery reply of exactly
`max_reply_bytes` holds everything, one byte more leaves the last publication
for the next page (history) or answers `recovered: false` (recovery).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from wsfan.app import RPCContext, RPCResult
from wsfan.broker.base import HistoryOptions, HistoryQuery, HistoryResult
from wsfan.broker.memory import MemoryBroker
from wsfan.compose import build_node
from wsfan.config import load_settings
from wsfan.errors import ErrorCode
from wsfan.metrics import Metrics
from wsfan.node import Node
from wsfan.protocol import (
    Encoding,
    Publication,
    StreamPosition,
    encode,
    push,
    reply,
)
from wsfan.session.outbox import Outbox
from wsfan.transport import Frame

from tests.app_hooks import install
from tests.conftest import TIMEOUT_SCALE
from tests.transports import RecordingTransport, new_session

# config/default.toml has presence and join/leave off outside namespaces; the tests
# below use them (or a presence call) on channels such as "news", so they say so.
WITH_PRESENCE = {"presence": True, "join_leave": True}

BUDGET = 4096
REPLY = 2048
TIMEOUT = 10 * TIMEOUT_SCALE


def sized(size: int, measure: Any) -> str:
    """A string `data` for which `measure(data)` is exactly `size` bytes."""
    data = "x" * 300  # past msgpack's short-string headers: one byte more is one byte more
    data += "x" * (size - measure(data))
    assert measure(data) == size
    return data


async def subscribed(client: Any, channel: str = "news", **params: Any) -> Any:
    c = await client()
    await c.result("subscribe", {"channel": channel, **params})
    await c.push("join", channel)  # its own join, so nothing else is on the way
    return c


# The outbox's contract, directly --------------------------------------------------


class LaggingTransport(RecordingTransport):
    """A socket that has `behind` bytes it has not taken yet."""

    def __init__(self) -> None:
        super().__init__()
        self.behind = 0

    def unsent_bytes(self) -> int:
        return self.behind


class Recorded:
    """An outbox on a lagging transport, with what it asked of its owner."""

    def __init__(self, budget: int = 100) -> None:
        self.transport = LaggingTransport()
        self.flushes_wanted: list[Outbox] = []
        self.overflows: list[int] = []
        self.metrics = Metrics()
        self.outbox = Outbox(
            self.transport,
            budget,
            self.metrics,
            self.flushes_wanted.append,
            self,
            "c1",
        )

    def overflowed(self, held: int) -> None:
        self.overflows.append(held)


def test_the_first_message_since_a_flush_asks_for_one_flush():
    r = Recorded()
    r.outbox.queue(b"a")
    r.outbox.queue(b"b")
    assert r.flushes_wanted == [r.outbox]
    r.outbox.flush()
    r.outbox.queue(b"c")
    assert r.flushes_wanted == [r.outbox, r.outbox]


def test_a_flush_writes_everything_queued_as_one_write():
    r = Recorded()
    r.outbox.queue(b"a")
    r.outbox.queue(b"b")
    r.outbox.flush()
    assert r.transport.frames == [b"a\nb"]
    assert r.metrics.messages_out == 2
    r.outbox.flush()  # nothing queued: nothing written
    assert len(r.transport.frames) == 1


def test_a_socket_behind_holds_the_queue_until_writable():
    r = Recorded()
    r.transport.behind = 10
    r.outbox.queue(b"a")
    r.outbox.flush()
    assert r.transport.frames == []
    r.outbox.queue(b"b")
    r.transport.behind = 0
    r.outbox.writable()
    assert r.flushes_wanted == [r.outbox, r.outbox]
    r.outbox.flush()
    assert r.transport.frames == [b"a\nb"]  # what waited leaves as one write


def test_queued_held_and_unsent_bytes_share_the_budget():
    r = Recorded(budget=100)
    r.outbox.hold(60)
    r.transport.behind = 30
    r.outbox.queue(b"x")
    r.outbox.flush()  # behind: 60 held + 30 unsent + 1 queued fit
    assert r.overflows == []
    r.outbox.queue(b"y" * 10)
    assert r.overflows == [101]


def test_released_bytes_leave_the_budget():
    r = Recorded(budget=100)
    r.outbox.hold(90)
    r.outbox.release(90)
    r.outbox.queue(b"x" * 100)
    assert r.overflows == []


def test_a_closing_message_passes_the_budget_and_a_forced_flush_writes_it():
    r = Recorded(budget=10)
    r.transport.behind = 5
    r.outbox.queue_last(b"x" * 50)
    r.outbox.flush(force=True)
    assert r.overflows == []
    assert r.transport.frames == [b"x" * 50]


def test_a_closed_outbox_drops_what_it_held_and_what_comes_later():
    r = Recorded()
    r.outbox.queue(b"a")
    r.outbox.close()
    r.outbox.queue(b"b")
    r.outbox.flush()
    assert r.transport.frames == []
    assert r.outbox.held_bytes == 0


SHARED = Frame(b"shared payload", b"shared wire")  # tells the hub's frame from the outbox's


def test_a_batch_queued_alone_is_written_as_the_hubs_shared_frame():
    r = Recorded()
    r.outbox.queue_batch([b"j1", b"j2"], SHARED)
    assert r.flushes_wanted == [r.outbox]
    r.outbox.flush()
    assert r.transport.frames == [b"shared payload"]
    assert r.metrics.messages_out == 2


def test_a_batch_queued_after_another_message_is_framed_with_it():
    r = Recorded()
    r.outbox.queue(b"a")
    r.outbox.queue_batch([b"j1", b"j2"], SHARED)
    r.outbox.flush()
    assert r.transport.frames == [b"a\nj1\nj2"]


def test_a_message_queued_after_a_batch_is_framed_with_it():
    r = Recorded()
    r.outbox.queue_batch([b"j1", b"j2"], SHARED)
    r.outbox.queue(b"a")
    r.outbox.flush()
    assert r.transport.frames == [b"j1\nj2\na"]


def test_a_batch_past_the_budget_overflows():
    r = Recorded(budget=10)
    r.outbox.queue_batch([b"x" * 6, b"y" * 5], SHARED)
    assert r.overflows == [11]


# The outgoing budget ------------------------------------------------------------


@pytest.mark.settings(channels=WITH_PRESENCE, client={"max_unsent_bytes": BUDGET})
@pytest.mark.gen_test(timeout=30 * TIMEOUT_SCALE)
async def test_a_push_of_exactly_the_budget_reaches_an_idle_client(client, node: Node, encoding):
    c = await subscribed(client)
    offset = (await node.reads.position("news")).offset + 1

    def measure(data: str) -> int:
        return len(encode(push("news", "pub", Publication(data, offset).to_dict()), encoding))

    data = sized(BUDGET, measure)
    await node.publish("news", data)
    assert (await c.push("pub", "news"))["pub"]["data"] == data
    assert await c.result("presence_stats", {"channel": "news"})  # still open


@pytest.mark.settings(channels=WITH_PRESENCE, client={"max_unsent_bytes": BUDGET})
@pytest.mark.gen_test(timeout=30 * TIMEOUT_SCALE)
async def test_a_push_one_byte_over_the_budget_closes_with_3008(client, node: Node, encoding):
    c = await subscribed(client)
    offset = (await node.reads.position("news")).offset + 1

    def measure(data: str) -> int:
        return len(encode(push("news", "pub", Publication(data, offset).to_dict()), encoding))

    await node.publish("news", sized(BUDGET + 1, measure))
    assert (await asyncio.wait_for(c.closed(), TIMEOUT))[0] == 3008


@pytest.mark.settings(client={"max_unsent_bytes": BUDGET})
@pytest.mark.gen_test(timeout=30 * TIMEOUT_SCALE)
async def test_a_reply_of_exactly_the_budget_is_sent(client, node: Node, encoding):
    c = await client()
    data = sized(BUDGET, lambda d: len(encode(reply(50, "rpc", {"data": d}), encoding)))
    install(node, Answers(data))
    await c.send({"id": 50, "rpc": {"method": "big"}})
    assert (await c.reply(50))["rpc"]["data"] == data


@pytest.mark.settings(channels=WITH_PRESENCE, client={"max_unsent_bytes": BUDGET})
@pytest.mark.gen_test(timeout=30 * TIMEOUT_SCALE)
async def test_a_reply_larger_than_the_budget_answers_106_and_the_connection_stays(
    client, node: Node, encoding
):
    c = await client()
    data = sized(BUDGET + 1, lambda d: len(encode(reply(50, "rpc", {"data": d}), encoding)))
    install(node, Answers(data))
    await c.send({"id": 50, "rpc": {"method": "big"}})
    assert (await c.reply(50))["error"]["code"] == ErrorCode.LIMIT_EXCEEDED
    assert await c.result("presence_stats", {"channel": "news"}) is not None


class Answers:
    """An application whose rpc hook answers `data`."""

    def __init__(self, data: Any) -> None:
        self.data = data

    async def rpc(self, ctx: RPCContext) -> RPCResult:
        return RPCResult(self.data)


# History answers ---------------------------------------------------------------------


async def two_publications(node: Node, encoding: Encoding, size: int) -> list[Publication]:
    """Two publications in "news" whose history reply (id 50, limit 2) is `size` bytes."""
    first = await node.publish("news", "a" * 300)
    pubs = [Publication("a" * 300, first.offset)]

    def measure(data: str) -> int:
        result = {
            "publications": [p.to_dict() for p in [*pubs, Publication(data, first.offset + 1)]],
            "epoch": first.epoch,
            "offset": first.offset + 1,
        }
        return len(encode(reply(50, "history", result), encoding))

    data = sized(size, measure)
    await node.publish("news", data)
    return [*pubs, Publication(data, first.offset + 1)]


@pytest.mark.parametrize("over", [0, 1], ids=["exactly", "one-byte-over"])
@pytest.mark.settings(client={"max_reply_bytes": REPLY})
@pytest.mark.gen_test(timeout=30 * TIMEOUT_SCALE)
async def test_a_history_reply_stops_before_max_reply_bytes(client, node: Node, encoding, over):
    c = await client()
    pubs = await two_publications(node, encoding, REPLY + over)
    since = {"offset": pubs[0].offset - 1, "epoch": (await node.reads.position("news")).epoch}
    await c.send({"id": 50, "history": {"channel": "news", "limit": 2, "since": since}})
    result = (await c.reply(50))["history"]
    assert [p["offset"] for p in result["publications"]] == [p.offset for p in pubs][: 2 - over]
    assert result["offset"] == pubs[-1].offset  # the top, whatever was cut


@pytest.mark.settings(client={"max_reply_bytes": REPLY, "max_unsent_bytes": BUDGET})
@pytest.mark.gen_test(timeout=30 * TIMEOUT_SCALE)
async def test_a_publication_larger_than_max_reply_bytes_still_comes_alone(client, node: Node):
    c = await client()
    await node.publish("news", "x" * (REPLY + 100))
    await node.publish("news", "small")
    result = await c.result("history", {"channel": "news", "limit": 10})
    assert [p["data"] for p in result["publications"]] == ["x" * (REPLY + 100)]


@pytest.mark.settings(client={"max_unsent_bytes": BUDGET})
@pytest.mark.gen_test(timeout=30 * TIMEOUT_SCALE)
async def test_a_publication_larger_than_the_budget_answers_106_in_history(client, node: Node):
    c = await client()
    await node.publish("news", "x" * (BUDGET + 100))
    answer = await c.call("history", {"channel": "news", "limit": 10})
    assert answer["error"]["code"] == ErrorCode.LIMIT_EXCEEDED


# Recovery ---------------------------------------------------------------------------


async def recovery_of_size(node: Node, encoding: Encoding, size: int) -> StreamPosition:
    """Two publications in "news" whose recovery from before them (subscribe id 50)
    makes a reply of `size` bytes; returns where the client recovers from."""
    first = await node.publish("news", "a" * 300)
    since = StreamPosition(first.offset - 1, first.epoch)
    pubs = [Publication("a" * 300, first.offset)]

    def measure(data: str) -> int:
        result = {
            "recoverable": True,
            "positioned": True,
            "was_recovering": True,
            "recovered": True,
            "publications": [p.to_dict() for p in [*pubs, Publication(data, first.offset + 1)]],
            "epoch": first.epoch,
            "offset": first.offset + 1,
        }
        return len(encode(reply(50, "subscribe", result), encoding))

    await node.publish("news", sized(size, measure))
    return since


def recover(since: StreamPosition, **extra: Any) -> dict[str, Any]:
    return {
        "id": 50,
        "subscribe": {
            "channel": "news",
            "recover": True,
            "offset": since.offset,
            "epoch": since.epoch,
            **extra,
        },
    }


@pytest.mark.settings(client={"max_reply_bytes": REPLY})
@pytest.mark.gen_test(timeout=30 * TIMEOUT_SCALE)
async def test_a_recovery_of_exactly_max_reply_bytes_recovers(client, node: Node, encoding):
    c = await client()
    since = await recovery_of_size(node, encoding, REPLY)
    await c.send(recover(since))
    result = (await c.reply(50))["subscribe"]
    assert result["recovered"] is True
    assert len(result["publications"]) == 2


@pytest.mark.settings(client={"max_reply_bytes": REPLY})
@pytest.mark.gen_test(timeout=30 * TIMEOUT_SCALE)
async def test_a_recovery_one_byte_over_answers_recovered_false_with_the_position(
    client, node: Node, encoding
):
    c = await client()
    since = await recovery_of_size(node, encoding, REPLY + 1)
    await c.send(recover(since))
    result = (await c.reply(50))["subscribe"]
    assert (result["recovered"], result.get("publications")) == (False, None)
    top = await node.reads.position("news")
    assert (result["offset"], result["epoch"]) == (top.offset, top.epoch)
    # and the subscription goes on from there
    await node.publish("news", "next")
    assert (await c.push("pub", "news"))["pub"]["data"] == "next"


@pytest.mark.settings(client={"max_reply_bytes": REPLY})
@pytest.mark.gen_test(timeout=30 * TIMEOUT_SCALE)
async def test_a_recovery_that_does_not_fit_answers_112_with_the_reject_flag(
    client, node: Node, encoding
):
    c = await client()
    since = await recovery_of_size(node, encoding, REPLY + 1)
    await c.send(recover(since, flag=2))
    assert (await c.reply(50))["error"]["code"] == ErrorCode.UNRECOVERABLE_POSITION


# Held back while subscribing (in process: the read is held open by the test) -----------


class GatedBroker(MemoryBroker):
    """The memory broker, with history reads that wait until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.reading = asyncio.Event()
        self.gate = asyncio.Event()

    async def history(
        self, channel: str, query: HistoryQuery, options: HistoryOptions
    ) -> HistoryResult:
        self.reading.set()
        await self.gate.wait()
        return await super().history(channel, query, options)


async def gated_subscribe(publications: int) -> tuple[int | None, list[bytes]]:
    """Subscribe while `publications` (~1 KB each) arrive: (close code, messages sent)."""
    settings = load_settings(env={}).with_overrides(
        broker={"type": "memory"}, client={"max_unsent_bytes": BUDGET}
    )
    broker = GatedBroker()
    node = build_node(settings, broker=broker)
    await node.start()
    try:
        transport = RecordingTransport()
        session = new_session(node, transport)
        await session.handle_frame('{"id":1,"connect":{}}')
        subscribing = asyncio.ensure_future(
            session.handle_frame('{"id":2,"subscribe":{"channel":"news"}}')
        )
        await asyncio.wait_for(broker.reading.wait(), TIMEOUT)
        for i in range(publications):
            node.handle_publication("news", Publication({"i": i, "pad": "x" * 900}, 0))
        broker.gate.set()
        await asyncio.wait_for(subscribing, TIMEOUT)
        session.outbox.flush()
        return transport.closed, b"\n".join(transport.frames).split(b"\n")
    finally:
        await node.close()


@pytest.mark.gen_test(timeout=30 * TIMEOUT_SCALE)
async def test_publications_held_back_while_subscribing_count_against_the_budget():
    closed, _ = await gated_subscribe(publications=5)  # ~5 KB held: over 4 KB
    assert closed == 3008


@pytest.mark.gen_test(timeout=30 * TIMEOUT_SCALE)
async def test_publications_held_back_within_the_budget_follow_the_reply():
    closed, messages = await gated_subscribe(publications=2)
    assert closed is None
    assert b'"id":2' in messages[1]  # the subscribe reply, then what was held
    assert sum(b'"pub"' in m for m in messages) == 2
