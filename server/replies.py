"""Answers bounded in size: publications read page by page and encoded one by one
until the reply would pass its byte budget.

A history or recovery answer is the only reply whose size a client chooses (with
`limit`). Reading everything asked for and encoding it as one message would hold
megabytes per request; here pages are sized from the publications seen so far,
each publication is encoded once (the reply splices the pieces together, see
`protocol.encode_reply`), and reading stops as soon as the next one would not fit.

Contract of `read_within`:
- the publications returned are the first ones `query` names, in its order, with
  no gap; `cut` says that more were wanted and exist but did not fit;
- the reply they make (`size_of(position)` plus the array's growth and the
  publications' bytes) stays within `limit`, except that a lone first
  publication may take it up to `lone` (0: never), so paging always advances;
- `position` is the stream's top as the last page read it: every publication
  returned is at or below it;
- pages after the first that can no longer be read (the stream moved on,
  `ReplyError(112)`) end the answer early (`cut`); other errors propagate.

`ReplyBounds.history` answers a client's `history` this way: a single publication
too large even for `lone` (the connection's whole budget) answers error 106,
since the client could never page past it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from .broker.base import HistoryQuery, HistoryResult
from .errors import ErrorCode, ReplyError
from .protocol import (
    Encoded,
    Encoding,
    Publication,
    Spliced,
    StreamPosition,
    array_growth,
    encode,
    encode_spliced,
)

__all__ = ["FIRST_PAGE", "ReplyBounds", "Within", "history_result", "read_within"]

FIRST_PAGE = 32
"""Publications the first read asks for: enough for most answers in one read,
few enough that even large publications cost little before their size is known."""

Read = Callable[[HistoryQuery], Awaitable[HistoryResult]]


@dataclass(slots=True)
class Within:
    """What fits: the publications (encoded, and as read) and the stream's top."""

    encoded: Encoded
    publications: list[Publication] = field(default_factory=list)
    position: StreamPosition = StreamPosition(0, "")  # noqa: RUF009 - frozen value
    cut: bool = False
    read: int = 0  # publications read, fitting or not (at most the query's limit)


async def read_within(
    read: Read,
    query: HistoryQuery,
    encoding: Encoding,
    size_of: Callable[[StreamPosition], int],
    limit: int,
    lone: int = 0,
    first_page: int = FIRST_PAGE,
) -> Within:
    """Read `query` (its `limit` >= 0) page by page while the reply fits (see the
    module's contract); `size_of(position)` is the reply's size with no publications."""
    out = Within(Encoded())
    want = query.limit
    page = min(want, first_page)
    since = query.since
    while True:
        try:
            result = await read(HistoryQuery(since, page, query.reverse))
        except ReplyError as exc:
            if out.read == 0 or exc.code is not ErrorCode.UNRECOVERABLE_POSITION:
                raise
            out.cut = True
            return out
        empty = size_of(result.position)
        if out.encoded and not _fits(out, empty, encoding, limit, lone):
            out.cut = True  # with the newer top, the reply grew: answer with the older one
            return out
        out.position = result.position
        pubs = result.publications
        out.read += len(pubs)
        for pub in pubs:
            data = encode(pub.to_dict(), encoding)
            out.encoded.append(data)
            out.publications.append(pub)
            if not _fits(out, empty, encoding, limit, lone):
                _drop_last(out)
                out.cut = True
                return out
        want -= len(pubs)
        if want <= 0 or len(pubs) < page or not pubs[-1].offset:
            return out
        since = StreamPosition(pubs[-1].offset, result.position.epoch)
        # Size the next page by what is left of the budget, from the sizes seen.
        average = max(1, out.encoded.size // max(1, len(out.encoded)))
        room = limit - empty - out.encoded.size
        page = min(want, max(1, room // average + 1))


def _fits(out: Within, empty: int, encoding: Encoding, limit: int, lone: int) -> bool:
    count = len(out.encoded)
    size = empty + array_growth(count, encoding) + out.encoded.size
    return size <= limit or (count == 1 and size <= lone)


def _drop_last(out: Within) -> None:
    out.encoded.pop()
    out.publications.pop()


def history_result(publications: Encoded, position: StreamPosition) -> Spliced:
    """A history reply's result (`encode_reply` splices the publications in)."""
    return Spliced(publications=publications, epoch=position.epoch, offset=position.offset)


@dataclass(frozen=True, slots=True)
class ReplyBounds:
    """How large a client's answer may be.

    `overhead`: the reply's bytes around its result (`protocol.reply_overhead`);
    `limit`: the whole reply's bytes at most (`client.reply_bytes`); `lone`: a
    reply with one publication may reach this instead (`client.max_unsent_bytes`).
    """

    encoding: Encoding
    overhead: int
    limit: int
    lone: int = 0

    async def history(self, read: Read, query: HistoryQuery) -> Spliced:
        """The history reply's result for `query` (limit >= 0), cut to fit."""

        def size_of(position: StreamPosition) -> int:
            empty = history_result(Encoded(), position)
            return self.overhead + len(encode_spliced(empty, self.encoding))

        within = await read_within(read, query, self.encoding, size_of, self.limit, self.lone)
        if within.cut and not within.encoded and within.read:
            raise ReplyError(ErrorCode.LIMIT_EXCEEDED, "publication too large for this client")
        return history_result(within.encoded, within.position)
