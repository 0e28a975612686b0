"""Cluster-wide channel occupancy: `on_occupied(channel)` when a channel gets its
first subscriber anywhere in the cluster, `on_vacated(channel)` once the last
one left `app.vacate_delay` seconds ago (and none came back meanwhile).

Promises (the state machine is server/broker/occupancy.py's):
- Each event is called on one node, at least once: a node that dies while
  calling it leaves the claim to run out (`app.timeout` + `app.occupancy_lease`),
  then another node calls it again.
- Per channel the events alternate, occupied first; a vacate and re-occupy
  within one delivery is folded away (the channel simply stays occupied).
- A node that dies without a word (SIGKILL) stops renewing its leases: its
  channels are vacated within `app.occupancy_lease` + `app.vacate_delay` +
  2 x `app.occupancy_sweep_interval` of its death (the sweep that sees the
  lease gone starts the delay, the one after it delivers), when no other node
  has subscribers there; if it died while calling a handler, the event is
  called again first (above), and the vacate follows it.
- A handler that raises or outlives `app.timeout` is logged in one line and
  counts as called; the service carries on. Backend trouble (Redis down) is
  logged at most once per `log.repeat_interval`; the renewals and sweeps
  after it repair what was missed.

The hub tells this service of first and last local subscribers (`occupied_here`,
`vacated_here`): with no service registered a subscribe costs nothing more.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ..broker.occupancy import NOTHING, OCCUPIED, OccupancyStore, Op, Timing
from ..config.settings import AppSettings
from ..logs import Repeated

__all__ = ["SWEEP_BATCH", "ChannelHandler", "OccupancyService"]

log = logging.getLogger(__name__)

ChannelHandler = Callable[[str], Awaitable[None]]
"""`on_occupied` / `on_vacated`: async (channel) -> None."""

SWEEP_BATCH = 1000
"""Channels stepped per sweep at most (the rest wait for the next sweep)."""


class OccupancyService:
    def __init__(
        self,
        store: OccupancyStore,
        member: str,
        settings: AppSettings,
        on_occupied: ChannelHandler | None = None,
        on_vacated: ChannelHandler | None = None,
        repeat_interval: float = 10.0,
    ) -> None:
        """`member` names this node in the store (unique in the cluster)."""
        self.member = member
        self._store = store
        self._on_occupied = on_occupied
        self._on_vacated = on_vacated
        self._hook_timeout = settings.timeout
        self._vacate_delay = settings.vacate_delay
        self._sweep_interval = settings.occupancy_sweep_interval
        self._renew_interval = settings.occupancy_lease / 3
        self._timing = Timing(
            settings.occupancy_lease,
            settings.vacate_delay,
            settings.timeout + settings.occupancy_lease,
        )
        self._failures = Repeated(log, repeat_interval)
        self._local: set[str] = set()  # channels with subscribers here
        self._chains: dict[str, asyncio.Task[None]] = {}  # channel -> its latest step
        self._loops: list[asyncio.Task[None]] = []
        self._closed = False

    # The hub's listener (server/hub.py ChannelListener) ------------------------

    def occupied_here(self, channel: str) -> None:
        if not self._closed:
            self._local.add(channel)
            self._enqueue(channel, Op.JOIN)

    def vacated_here(self, channel: str) -> None:
        if not self._closed:
            self._local.discard(channel)
            self._enqueue(channel, Op.LEAVE)

    # Life cycle --------------------------------------------------------------

    async def start(self) -> None:
        if not self._loops:
            self._closed = False
            loop = asyncio.get_running_loop()
            self._loops = [loop.create_task(self._renew()), loop.create_task(self._sweep())]

    async def close(self, timeout: float = 2.0) -> None:
        """Leave every channel (others then vacate them without waiting for the
        leases to run out) and stop, within about `timeout`."""
        self._closed = True
        loops, self._loops = self._loops, []
        for task in loops:
            task.cancel()
        if loops:
            await asyncio.wait(loops, timeout=timeout)
        for channel in list(self._local):
            self._enqueue(channel, Op.LEAVE)
        self._local.clear()
        pending = list(self._chains.values())
        if pending:
            await asyncio.wait(pending, timeout=timeout)
        for task in pending:
            task.cancel()

    # Steps, one at a time per channel ------------------------------------------

    def _enqueue(self, channel: str, op: Op) -> None:
        previous = self._chains.get(channel)
        task = asyncio.get_running_loop().create_task(self._after(previous, channel, op))
        self._chains[channel] = task
        task.add_done_callback(lambda done: self._chain_done(channel, done))

    def _chain_done(self, channel: str, task: asyncio.Task[None]) -> None:
        if self._chains.get(channel) is task:
            del self._chains[channel]
        if not task.cancelled() and task.exception() is not None:
            log.error("occupancy step of %r failed", channel, exc_info=task.exception())

    async def _after(self, previous: asyncio.Task[None] | None, channel: str, op: Op) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        await self._step(channel, op)
        if op is Op.LEAVE and not self._closed:
            loop = asyncio.get_running_loop()
            loop.call_later(self._vacate_delay, self._check, channel)

    def _check(self, channel: str) -> None:
        if not self._closed:
            self._enqueue(channel, Op.CHECK)

    async def _step(self, channel: str, op: Op) -> None:
        """Step the channel; deliver each event this node claims, then acknowledge it."""
        delivered = NOTHING
        while True:
            try:
                deliver = await self._store.step(channel, self.member, op, self._timing, delivered)
            except Exception as exc:
                self._failures("channel occupancy %s of %r failed: %s", op.value, channel, exc)
                return
            if deliver == NOTHING:
                return
            await self._deliver(channel, deliver)
            op, delivered = Op.ACK, deliver

    async def _deliver(self, channel: str, event: int) -> None:
        occupied = event == OCCUPIED
        handler = self._on_occupied if occupied else self._on_vacated
        if handler is None:
            return
        name = "channel_occupied" if occupied else "channel_vacated"
        try:
            await asyncio.wait_for(handler(channel), self._hook_timeout)
        except TimeoutError:
            log.warning("%s(%r) took longer than %gs: cancelled", name, channel, self._hook_timeout)
        except Exception as exc:
            log.warning("%s(%r) failed: %r", name, channel, exc)

    # Background --------------------------------------------------------------

    async def _renew(self) -> None:
        """Renew this node's leases (which also repairs what a failed step missed)."""
        while not self._closed:
            await asyncio.sleep(self._renew_interval)
            for channel in list(self._local):
                if channel not in self._chains:  # no backlog: a busy one, at the next pass
                    self._enqueue(channel, Op.JOIN)

    async def _sweep(self) -> None:
        """Step the channels whose deadline passed: dead members, vacate delays,
        claims that ran out."""
        while not self._closed:
            await asyncio.sleep(self._sweep_interval)
            try:
                due = await self._store.due(SWEEP_BATCH)
            except Exception as exc:
                if self._closed:  # redis-py may turn the cancel into a connection error
                    return
                self._failures("channel occupancy sweep failed: %s", exc)
                continue
            for channel in due:
                if channel not in self._chains:  # a step under way re-evaluates anyway
                    self._enqueue(channel, Op.CHECK)
