"""A node with channel services in a process of its own, for the tests that kill it
(tests/test_app_processes.py):

    python -m tests.app_instance REDIS_URL PREFIX CHANNEL...

It keeps one in-process subscriber on each CHANNEL (so they are occupied here),
runs the `counter` source on `ticker:*`, and prints `occupied <channel>` when its
`on_occupied` is called. The test's own node uses the same `settings_for` and
`counter`, so the two instances agree.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

from wsfan.app.channel_services import attach
from wsfan.compose import build_node
from wsfan.config import Settings, load_settings
from wsfan.protocol import Publication

from tests.app_channels import Subscriber

APP = {
    "source_takeover": 1.5,
    "occupancy_lease": 1.0,
    "occupancy_sweep_interval": 0.1,
    "vacate_delay": 0.3,
    "timeout": 0.5,
}
PERIOD = 0.05  # between two items of `counter`


def settings_for(url: str, prefix: str) -> Settings:
    return load_settings(env={}).with_overrides(
        broker={"type": "redis"},
        redis={"url": url, "prefix": prefix},
        app=APP,
        namespaces={"ticker": {"history_size": 1000}},
    )


async def counter(channel: str, last: Publication | None) -> AsyncIterator[dict[str, Any]]:
    """Counts on from the channel's last publication: item n is publication n."""
    n = 0 if last is None else int(last.data["n"])
    while True:
        n += 1
        yield {"n": n, "pid": os.getpid()}
        await asyncio.sleep(PERIOD)


async def main(url: str, prefix: str, channels: list[str]) -> None:
    node = build_node(settings_for(url, prefix))
    await node.start()

    async def occupied(channel: str) -> None:
        print("occupied", channel, flush=True)

    services = attach(node, occupied, None, {"ticker:*": counter})
    assert services is not None
    await services.start()
    for channel in channels:
        await node.add_subscriber(channel, Subscriber())  # type: ignore[arg-type]
    await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
