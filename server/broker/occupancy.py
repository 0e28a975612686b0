"""Where cluster-wide channel occupancy is decided: one state machine per channel,
kept by the broker's backend (in this process, or in Redis:
server/broker/redis_occupancy.py), stepped atomically by every node.

Per channel it holds:
- members: the nodes with local subscribers, each leased until its expiry (a
  node renews its leases; a dead node's run out);
- wanted: OCCUPIED while it has members, VACATED once it has had none for
  `vacate_delay` (a member coming back within the delay cancels it);
- delivered: the last event delivered. While it differs from `wanted`, the
  next event in alternation (`1 - delivered`) is due, and the first node to
  step the channel claims its delivery for `claim_ttl`: that one node calls the
  handler, then steps ACK. A claim that runs out unacknowledged (its node died)
  is claimed again by the next node to step the channel: at least once.

So events alternate per channel (a flap within one delivery is folded away),
each is claimed by one node at a time, and a channel whose members all died is
vacated `member_ttl` + `vacate_delay` after their last renewal, once a node
steps it: nodes sweep the channels that are `due` (next expiry, vacate or claim
deadline passed) every sweep interval.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "NOTHING",
    "OCCUPIED",
    "VACATED",
    "MemoryOccupancy",
    "OccupancyStore",
    "Op",
    "Timing",
]

VACATED, OCCUPIED, NOTHING = 0, 1, -1
"""Events (and what a step returns: the event the caller must deliver, or NOTHING)."""


class Op(StrEnum):
    JOIN = "join"  # this node has local subscribers (also: renew its lease)
    LEAVE = "leave"  # this node's last local subscriber left
    CHECK = "check"  # nothing changed here: re-evaluate (deadlines, dead members)
    ACK = "ack"  # this node delivered the event it claimed


@dataclass(frozen=True, slots=True)
class Timing:
    """Seconds: a member's lease, the vacate delay, a delivery claim's lease."""

    member_ttl: float
    vacate_delay: float
    claim_ttl: float


class OccupancyStore(ABC):
    """Contract: `step` is atomic per channel; it returns the event the caller
    must now deliver (then step ACK with it), or NOTHING. `due` lists up to
    `limit` channels whose next deadline has passed (to be stepped CHECK)."""

    @abstractmethod
    async def step(
        self, channel: str, member: str, op: Op, timing: Timing, delivered: int = NOTHING
    ) -> int: ...

    @abstractmethod
    async def due(self, limit: int) -> list[str]: ...


@dataclass(slots=True)
class _Channel:
    members: dict[str, float] = field(default_factory=dict)  # member -> lease expiry
    wanted: int = VACATED
    delivered: int = VACATED
    vacate_at: float | None = None
    claimer: str | None = None
    claim_until: float = 0.0

    def advance(
        self, member: str, op: Op, now: float, timing: Timing, acked: int
    ) -> tuple[int, float | None]:
        """One step (the Lua script in redis_occupancy.py is the same, line for
        line): the event to deliver, and the next deadline (None: quiescent)."""
        if op is Op.JOIN:
            self.members[member] = now + timing.member_ttl
        elif op is Op.LEAVE:
            self.members.pop(member, None)
        elif op is Op.ACK and self.claimer == member:
            self.delivered, self.claimer = acked, None
        self.members = {m: t for m, t in self.members.items() if t > now}
        deadline: float | None = None
        if self.members:
            self.wanted, self.vacate_at = OCCUPIED, None
            deadline = min(self.members.values())
        elif self.wanted == OCCUPIED:
            if self.vacate_at is None:
                self.vacate_at = now + timing.vacate_delay
            if now >= self.vacate_at:
                self.wanted, self.vacate_at = VACATED, None
            else:
                deadline = self.vacate_at
        deliver = NOTHING
        if self.wanted != self.delivered or self.claimer is not None:
            if self.claimer is None or self.claim_until <= now:
                self.claimer, self.claim_until = member, now + timing.claim_ttl
                deliver = 1 - self.delivered
            deadline = self.claim_until if deadline is None else min(deadline, self.claim_until)
        return deliver, deadline


class MemoryOccupancy(OccupancyStore):
    """In this process: the memory broker's cluster is this one node."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._channels: dict[str, _Channel] = {}
        self._deadlines: dict[str, float] = {}

    async def step(
        self, channel: str, member: str, op: Op, timing: Timing, delivered: int = NOTHING
    ) -> int:
        state = self._channels.get(channel) or _Channel()
        deliver, deadline = state.advance(member, op, self._clock(), timing, delivered)
        if deadline is None:
            self._channels.pop(channel, None)
            self._deadlines.pop(channel, None)
        else:
            self._channels[channel] = state
            self._deadlines[channel] = deadline
        return deliver

    async def due(self, limit: int) -> list[str]:
        now = self._clock()
        return [c for c, at in self._deadlines.items() if at <= now][:limit]
