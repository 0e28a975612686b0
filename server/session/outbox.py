"""A connection's outgoing queue and its one budget.

Promises:
- Outgoing messages are queued and flushed once per event-loop turn as one
  batched write (the hub runs the flushes), so nothing in fan-out waits on a
  client's socket.
- One budget, `client.max_unsent_bytes`, bounds everything held for the peer:
  queued messages, publications held back during a subscribe (`hold`), and
  what the socket has not taken. Past it the outbox calls its `overflow`
  (its owner, the session, closes with 3008) and what was held is dropped.

The path of a message is downward: `queue` -> (first message since the last
flush) the hub's `want_flush` -> the hub calls `flush` -> `Transport.write`.
A transport that was behind calls `writable` once its socket took everything,
which asks the hub for a flush again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ..metrics import Metrics
from ..protocol import Encoding, encode
from ..transport import Frame, Transport

__all__ = ["Outbox", "OutboxOwner"]


class OutboxOwner(Protocol):
    """Whom an outbox tells that it passed its budget (the session)."""

    def overflowed(self, held: int) -> None:
        """The budget was passed with `held` bytes held: close the connection."""


class Outbox:
    """What waits to be written to one connection, within `budget` bytes.

    `want_flush(outbox)` is called once for the first message queued since the
    last flush (the hub's `want_flush`); `owner.overflowed(held)` once the budget
    is passed, with the bytes held then. (An owner, not a callback: a bound
    method would be one more object per connection.)
    """

    __slots__ = (
        "_behind",
        "_held",
        "_metrics",
        "_out",
        "_owner",
        "_queued",
        "_shared",
        "_shared_count",
        "_transport",
        "_unsent",
        "_want_flush",
        "budget",
        "client_id",
        "closed",
        "encoding",
        "variant",
    )

    def __init__(
        self,
        transport: Transport,
        budget: int,
        metrics: Metrics,
        want_flush: Callable[[Outbox], None],
        owner: OutboxOwner,
        client_id: str,
    ) -> None:
        self._transport = transport
        self.variant = transport.variant
        self.encoding: Encoding = transport.variant.encoding
        self.budget = budget
        self._metrics = metrics
        self._want_flush = want_flush
        self._owner = owner
        self.client_id = client_id  # named in the hub's log when a flush fails
        self.closed = False
        self._out: list[bytes] = []
        self._shared: Frame | None = None  # the hub's frame, while it is all `_out` holds
        self._shared_count = 1  # the messages `_shared` frames
        # The budget: `_queued` (bytes in `_out`) + `_unsent` (what the socket had
        # not taken when last asked; it only shrinks until the next write) + `_held`
        # (publications held back by subscribes under way) <= `budget`.
        self._queued = 0
        self._unsent = 0
        self._held = 0
        # While the socket is behind, `_out` waits (and later leaves as one frame)
        # until the transport calls `writable`.
        self._behind = False

    def send(self, message: dict[str, Any]) -> None:
        """Encode and queue one protocol message."""
        self.queue(encode(message, self.encoding))

    def queue(self, data: bytes, shared: Frame | None = None) -> None:
        """Queue one encoded message; `shared` is the hub's frame of exactly these bytes.

        A message that takes the connection past its budget overflows it."""
        if self.closed:
            return
        out = self._out
        out.append(data)
        self._queued += len(data)
        if self._queued + self._unsent + self._held > self.budget:
            self._owner.overflowed(self._queued + self._unsent + self._held)
            return
        if len(out) == 1:
            self._shared = shared
            self._shared_count = 1
            self._want_flush(self)

    def queue_batch(self, messages: Sequence[bytes], shared: Frame) -> None:
        """Queue several encoded messages, in order; `shared` is the hub's frame of
        exactly these (written as it is when nothing else was queued with them)."""
        if self.closed:
            return
        out = self._out
        first = not out
        out.extend(messages)
        self._queued += sum(len(m) for m in messages)
        if self._queued + self._unsent + self._held > self.budget:
            self._owner.overflowed(self._queued + self._unsent + self._held)
            return
        if first:
            self._shared = shared
            self._shared_count = len(messages)
            self._want_flush(self)

    def queue_last(self, data: bytes) -> None:
        """Queue a closing message past the budget check: it leaves at once with
        the close (see `flush(force=True)`)."""
        self._out.append(data)

    def hold(self, size: int) -> None:
        """Count `size` bytes held back elsewhere (a subscribe under way) in the budget."""
        self._held += size
        self._check_budget()

    def release(self, size: int) -> None:
        """`size` bytes held back are no longer held (sent on, or dropped)."""
        self._held -= size

    def flush(self, force: bool = False) -> None:
        """Write the queue as one frame, unless the peer is behind.

        While the socket still holds unsent bytes the queue is held back (the
        transport calls `writable` once they are gone, and everything held leaves
        as one frame: a peer that reads slowly costs fewer writes, not more).
        Every byte counts against the budget: what is queued, what the socket has
        not taken, and publications held back by a subscribe under way; past it
        the outbox overflows, its memory stays bounded and nobody else's delivery
        waits for it. `force` writes even to a socket that is behind (a closing
        message).
        """
        out = self._out
        if not out:
            return
        transport = self._transport
        unsent = self._unsent = transport.unsent_bytes()
        if unsent and not force:
            self._behind = True
            self._check_budget()
            return
        self._behind = False
        count = len(out)
        written = transport.write(out, self._shared if count == self._shared_count else None)
        out.clear()  # the same list again: no allocation per flush
        self._queued = 0
        self._shared = None
        self._unsent = transport.unsent_bytes()  # what the socket did not take
        metrics = self._metrics
        metrics.messages_out += count
        metrics.bytes_out += written

    def writable(self) -> None:
        """The socket took everything it held: send what waited meanwhile."""
        self._unsent = 0
        if self._behind and self._out:
            self._behind = False
            self._want_flush(self)

    def close(self) -> None:
        """Drop everything held; later messages are dropped too."""
        self.closed = True
        self._out = []
        self._shared = None
        self._queued = self._unsent = self._held = 0
        self._behind = False

    @property
    def held_bytes(self) -> int:
        """Everything counted in the budget now."""
        return self._queued + self._unsent + self._held

    def _check_budget(self) -> None:
        if self._queued + self._unsent + self._held > self.budget:
            self._owner.overflowed(self._queued + self._unsent + self._held)
