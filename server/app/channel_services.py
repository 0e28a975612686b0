"""Occupancy events and channel sources, attached to a node: `attach` builds the
ones an application registered, on the node's broker backend, and makes them
the hub's listener of first and last local subscribers.

With nothing registered, `attach` returns None and leaves the hub without a
listener: a subscribe then costs no extra step and no extra Redis command.
Start the services after the node, and close them before it (closing leaves
every channel at once, so the others need not wait for leases to run out).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from .hooks import SourceFactory
from .occupancy import ChannelHandler, OccupancyService
from .sources import SourceRunner

if TYPE_CHECKING:
    from ..node import Node

__all__ = ["ChannelServices", "attach"]


class ChannelServices:
    """The hub's one listener, telling both services; their life cycle."""

    def __init__(self, occupancy: OccupancyService | None, sources: SourceRunner | None) -> None:
        self.occupancy = occupancy
        self.sources = sources

    def occupied_here(self, channel: str) -> None:
        if self.occupancy is not None:
            self.occupancy.occupied_here(channel)
        if self.sources is not None:
            self.sources.occupied_here(channel)

    def vacated_here(self, channel: str) -> None:
        if self.occupancy is not None:
            self.occupancy.vacated_here(channel)
        if self.sources is not None:
            self.sources.vacated_here(channel)

    async def start(self) -> None:
        if self.occupancy is not None:
            await self.occupancy.start()

    async def close(self) -> None:
        if self.sources is not None:
            await self.sources.close()
        if self.occupancy is not None:
            await self.occupancy.close()


def attach(
    node: Node,
    on_occupied: ChannelHandler | None = None,
    on_vacated: ChannelHandler | None = None,
    sources: Mapping[str, SourceFactory] | None = None,
) -> ChannelServices | None:
    """The services for what is registered, listening to `node`'s hub (not
    started); None when nothing is. ValueError names a malformed source pattern."""
    if on_occupied is None and on_vacated is None and not sources:
        return None
    store, leases = node.broker.channel_stores()
    member = node.cluster.uid
    app = node.settings.app
    occupancy: OccupancyService | None = None
    runner: SourceRunner | None = None
    if on_occupied is not None or on_vacated is not None:
        repeat = node.settings.log.repeat_interval
        occupancy = OccupancyService(store, member, app, on_occupied, on_vacated, repeat)
    if sources:
        runner = SourceRunner(node, leases, sources, app, member)
    services = ChannelServices(occupancy, runner)
    node.hub.channel_listener = services
    return services
