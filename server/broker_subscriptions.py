"""The broker subscriptions one node holds: one per channel, shared by everyone on
the node who needs the channel delivered (local subscribers, observers).

Redis SUBSCRIBEs on the first need and UNSUBSCRIBEs when the node lets go; who
still needs a channel is the node's business, not this module's.
"""

from __future__ import annotations

import asyncio

from .broker.base import Broker
from .errors import ErrorCode, ReplyError
from .logs import Repeated

__all__ = ["BrokerSubscriptions"]


class BrokerSubscriptions:
    """Channel -> this node's broker subscription to it.

    `acquire` returns once the broker delivers the channel. Concurrent first
    callers share one broker call and its outcome: a broker failure raises
    ReplyError(100) in each of them and leaves nothing held. `release` ends the
    subscription; its failures are only logged (the broker forgets a dead
    connection's subscriptions anyway). Failures go to `failures`, the node's
    rate-bounded log of broker trouble.
    """

    def __init__(self, broker: Broker, failures: Repeated) -> None:
        self._broker = broker
        self._failures = failures
        self._held: dict[str, asyncio.Future[None]] = {}

    async def acquire(self, channel: str) -> None:
        future = self._held.get(channel)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._held[channel] = future
            try:
                await self._broker.subscribe([channel])
            except Exception as exc:
                self._failures("broker subscribe to %r failed: %s", channel, exc)
                future.set_exception(ReplyError(ErrorCode.INTERNAL))
                future.exception()  # observed here; waiters re-raise it
                self._held.pop(channel, None)
                raise ReplyError(ErrorCode.INTERNAL) from None
            future.set_result(None)
        elif not future.done():
            await asyncio.shield(future)

    async def release(self, channel: str) -> None:
        self._held.pop(channel, None)
        try:
            await self._broker.unsubscribe([channel])
        except Exception as exc:
            self._failures("broker unsubscribe from %r failed: %s", channel, exc)
