"""A subscribe's result: the stream position and, when the client asks to recover,
the publications since its position, all or nothing within the reply's limits."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

from .. import delta
from ..broker.base import HistoryQuery
from ..errors import ErrorCode, ReplyError
from ..protocol import (
    FLAG_REJECT_UNRECOVERED,
    Encoded,
    Encoding,
    Publication,
    Spliced,
    StreamPosition,
    SubscribeRequest,
    encode,
    encode_spliced,
)
from ..replies import read_within
from .port import ReadsPort
from .subscription_state import Subscription

__all__ = ["RecoveryLimits", "reply_form", "subscribe_result"]


@dataclass(frozen=True, slots=True)
class RecoveryLimits:
    """`client.recovery_max_limit` publications, and `client.reply_bytes` per reply."""

    most: int
    reply_bytes: int


async def subscribe_result(
    reads: ReadsPort,
    channel: str,
    request: SubscribeRequest,
    sub: Subscription,
    base: int,
    encoding: Encoding,
    limits: RecoveryLimits,
) -> tuple[dict[str, Any], list[Publication]]:
    """The subscribe result and the publications it recovers; positions `sub`.

    A recovery is all or nothing: when the publications since the client's
    position are more than `limits.most`, or would take the reply past
    `limits.reply_bytes` (`base` + the result), or are gone, the answer is
    `recovered: false` with the current position (error 112 with the
    reject-unrecovered flag).
    """
    if not sub.options.recoverable:
        return {}, []
    # History is kept: the subscription is positioned (the SDKs track its offset).
    result: dict[str, Any] = {"recoverable": True, "positioned": True}
    publications: list[Publication] = []
    if request.recover:
        limit = limits.most
        since = StreamPosition(request.offset, request.epoch)
        result["was_recovering"] = True
        result["recovered"] = True

        def size_of(position: StreamPosition) -> int:
            empty = Spliced(
                result, publications=Encoded(), epoch=position.epoch, offset=position.offset
            )
            extra = len(encode({"delta": True}, encoding)) if sub.delta else 0
            return base + len(encode_spliced(empty, encoding)) + extra

        within = None
        try:
            within = await read_within(
                partial(reads.history, channel),
                HistoryQuery(since, limit + 1),
                encoding,
                size_of,
                limits.reply_bytes,
                shape=partial(reply_form, sub, encoding=encoding),
            )
            position = within.position
        except ReplyError as exc:
            if exc.code is not ErrorCode.UNRECOVERABLE_POSITION:
                raise
            position = await reads.position(channel)
        recovered = within is not None and not within.cut and within.read <= limit
        if not recovered and request.flag & FLAG_REJECT_UNRECOVERED:
            raise ReplyError(ErrorCode.UNRECOVERABLE_POSITION)
        result["recovered"] = recovered
        if recovered and within is not None and within.encoded:
            result = Spliced(result, publications=within.encoded)
            publications = within.publications
    else:
        position = await reads.position(channel)
    result["epoch"] = position.epoch
    result["offset"] = position.offset
    sub.recoverable = True
    sub.offset = position.offset
    sub.epoch = position.epoch
    return result, publications


def reply_form(sub: Subscription, pub: Publication, encoding: Encoding) -> dict[str, Any]:
    """`pub` as the subscription gets it in its subscribe reply: in full, its
    `data` as bytes for a delta subscription (the SDK keeps them as the base
    of the next patch, whatever it recovers)."""
    if not sub.delta:
        return pub.to_dict()
    return delta.full_form(pub, delta.data_bytes(pub.data, encoding), encoding)
