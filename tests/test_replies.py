"""Answers bounded in size (server/replies.py) and replies spliced from pieces
encoded once (protocol.encode_reply), on the real in-memory broker."""

from __future__ import annotations

import pytest
from wsfan.broker.base import HistoryOptions, HistoryQuery, HistoryResult
from wsfan.broker.memory import MemoryBroker
from wsfan.errors import ErrorCode, ReplyError
from wsfan.protocol import (
    Encoded,
    Encoding,
    Publication,
    Spliced,
    StreamPosition,
    decode_frame,
    encode,
    encode_reply,
    encode_spliced,
    reply,
    reply_overhead,
)
from wsfan.replies import FIRST_PAGE, ReplyBounds, history_result, read_within

KEEP = HistoryOptions(size=1000, ttl=60.0, meta_ttl=3600.0)
ENCODINGS = pytest.mark.parametrize("encoding", list(Encoding), ids=lambda e: e.value)


class Reads:
    """The broker's history of one channel, counting the reads it is asked for."""

    def __init__(self, broker: MemoryBroker, channel: str = "ch") -> None:
        self.broker = broker
        self.channel = channel
        self.queries: list[HistoryQuery] = []

    async def __call__(self, query: HistoryQuery) -> HistoryResult:
        self.queries.append(query)
        return await self.broker.history(self.channel, query, KEEP)


@pytest.mark.gen_test
async def filled(count: int, size: int = 10, channel: str = "ch") -> MemoryBroker:
    broker = MemoryBroker()
    for i in range(count):
        await broker.publish(channel, {"i": i, "pad": "x" * size}, KEEP)
    return broker


def full_reply(pubs: list[Publication], position: StreamPosition, encoding: Encoding) -> int:
    """The size of the history reply (id 7) holding all of `pubs`, encoded plainly."""
    result = {
        "publications": [p.to_dict() for p in pubs],
        "epoch": position.epoch,
        "offset": position.offset,
    }
    return len(encode(reply(7, "history", result), encoding))


def bounds(encoding: Encoding, limit: int, lone: int = 0) -> ReplyBounds:
    return ReplyBounds(encoding, reply_overhead(7, "history", encoding), limit, lone)


# Splicing ---------------------------------------------------------------------


@ENCODINGS
@pytest.mark.parametrize("count", [0, 1, 15, 16, 300])
def test_a_spliced_reply_is_byte_for_byte_the_plain_encoding(encoding: Encoding, count: int):
    pubs = [{"data": {"i": i, "s": "é" * (i % 3)}, "offset": i + 1} for i in range(count)]
    items = Encoded()
    for p in pubs:
        items.append(encode(p, encoding))
    spliced = Spliced(publications=items, epoch="ab", offset=count)
    plain = {"publications": pubs, "epoch": "ab", "offset": count}
    assert encode_reply(3, "history", spliced, encoding) == encode(
        reply(3, "history", plain), encoding
    )


@ENCODINGS
def test_nested_spliced_maps_and_plain_values_encode_as_usual(encoding: Encoding):
    items = Encoded()
    items.append(encode({"data": 1}, encoding))
    inner = Spliced(recoverable=True, publications=items, offset=1)
    result = Spliced(client="c", subs=Spliced(a=inner, b={"x": [1, 2]}))
    plain = {
        "client": "c",
        "subs": {
            "a": {"recoverable": True, "publications": [{"data": 1}], "offset": 1},
            "b": {"x": [1, 2]},
        },
    }
    assert encode_spliced(result, encoding) == encode(plain, encoding)


@ENCODINGS
def test_reply_overhead_plus_the_result_is_the_reply(encoding: Encoding):
    result = {"publications": [], "epoch": "e", "offset": 12}
    whole = encode(reply(99, "history", result), encoding)
    assert len(whole) == reply_overhead(99, "history", encoding) + len(encode(result, encoding))


# Reading within a budget ----------------------------------------------------------


@ENCODINGS
@pytest.mark.gen_test
async def test_everything_asked_for_comes_in_one_read_when_it_fits(encoding: Encoding):
    reads = Reads(await filled(20))
    result = await bounds(encoding, 1 << 20).history(reads, HistoryQuery(limit=20))
    assert [len(result["publications"]), result["offset"]] == [20, 20]
    assert len(reads.queries) == 1


@ENCODINGS
@pytest.mark.gen_test
async def test_a_reply_exactly_at_the_limit_holds_everything(encoding: Encoding):
    broker = await filled(50, size=100)
    history = await broker.history("ch", HistoryQuery(limit=50), KEEP)
    exact = full_reply(history.publications, history.position, encoding)
    result = await bounds(encoding, exact).history(Reads(broker), HistoryQuery(limit=50))
    assert len(result["publications"]) == 50
    assert len(encode_reply(7, "history", result, encoding)) == exact


@ENCODINGS
@pytest.mark.gen_test
async def test_one_byte_under_the_reply_the_last_publication_is_left_for_the_next_page(
    encoding: Encoding,
):
    broker = await filled(50, size=100)
    history = await broker.history("ch", HistoryQuery(limit=50), KEEP)
    exact = full_reply(history.publications, history.position, encoding)
    result = await bounds(encoding, exact - 1).history(Reads(broker), HistoryQuery(limit=50))
    assert len(result["publications"]) == 49
    assert len(encode_reply(7, "history", result, encoding)) <= exact - 1
    assert (result["epoch"], result["offset"]) == (history.position.epoch, 50)  # still the top


@ENCODINGS
@pytest.mark.gen_test
async def test_later_pages_are_sized_by_what_is_left_of_the_budget(encoding: Encoding):
    reads = Reads(await filled(1000, size=1000))
    result = await bounds(encoding, 100_000).history(reads, HistoryQuery(limit=1000))
    kept = len(result["publications"])
    assert 90 <= kept < 100
    assert reads.queries[0].limit == FIRST_PAGE
    # Never much more read than fits: the memory a request costs follows the budget.
    assert sum(q.limit for q in reads.queries) <= kept + FIRST_PAGE + 2


@ENCODINGS
@pytest.mark.gen_test
async def test_small_publications_need_at_most_two_reads(encoding: Encoding):
    reads = Reads(await filled(1000))
    result = await bounds(encoding, 1 << 20).history(reads, HistoryQuery(limit=1000))
    assert len(result["publications"]) == 1000
    assert len(reads.queries) == 2


@ENCODINGS
@pytest.mark.gen_test
async def test_pages_continue_with_since_in_either_direction(encoding: Encoding):
    broker = await filled(100)
    forward = await bounds(encoding, 1 << 20).history(
        Reads(broker), HistoryQuery(StreamPosition(10, broker._streams["ch"].epoch), 80)
    )
    backward = await bounds(encoding, 1 << 20).history(
        Reads(broker), HistoryQuery(limit=70, reverse=True)
    )

    def decoded(result: Spliced) -> list[int]:
        message = decode_frame(encode_reply(1, "history", result, encoding), encoding)[0]
        return [p["offset"] for p in message["history"]["publications"]]

    assert decoded(forward) == list(range(11, 91))
    assert decoded(backward) == list(range(100, 30, -1))


@ENCODINGS
@pytest.mark.gen_test
async def test_a_lone_publication_over_the_limit_comes_alone_within_the_budget(encoding: Encoding):
    broker = await filled(3, size=5000)
    result = await bounds(encoding, 2000, lone=10_000).history(Reads(broker), HistoryQuery(limit=3))
    assert len(result["publications"]) == 1


@ENCODINGS
@pytest.mark.gen_test
async def test_a_publication_larger_than_the_whole_budget_answers_106(encoding: Encoding):
    broker = await filled(3, size=5000)
    with pytest.raises(ReplyError) as caught:
        await bounds(encoding, 2000, lone=4000).history(Reads(broker), HistoryQuery(limit=3))
    assert caught.value.code is ErrorCode.LIMIT_EXCEEDED


@ENCODINGS
@pytest.mark.gen_test
async def test_a_stream_that_moves_on_between_pages_ends_the_answer_early(encoding: Encoding):
    broker = await filled(100)

    async def read(query: HistoryQuery) -> HistoryResult:
        if query.since is not None:  # between the pages, the stream starts a new epoch
            await broker.remove_history("ch")
            broker._streams.pop("ch")
            await broker.publish("ch", "new", KEEP)
        return await broker.history("ch", query, KEEP)

    within = await read_within(read, HistoryQuery(limit=100), encoding, lambda p: 50, 1 << 20)
    assert (len(within.encoded), within.cut, within.position.offset) == (FIRST_PAGE, True, 100)


@pytest.mark.gen_test
async def test_the_first_read_failing_raises():
    async def read(query: HistoryQuery) -> HistoryResult:
        raise ReplyError(ErrorCode.UNRECOVERABLE_POSITION)

    with pytest.raises(ReplyError):
        await read_within(read, HistoryQuery(limit=5), Encoding.JSON, lambda p: 50, 1000)


@pytest.mark.gen_test
async def test_a_limit_of_zero_reads_only_the_position():
    reads = Reads(await filled(5))
    result = await bounds(Encoding.JSON, 1000).history(reads, HistoryQuery(limit=0))
    assert (len(result["publications"]), result["offset"]) == (0, 5)
    assert [q.limit for q in reads.queries] == [0]


def test_history_result_keeps_the_wire_order():
    assert list(history_result(Encoded(), StreamPosition(1, "e"))) == [
        "publications",
        "epoch",
        "offset",
    ]
