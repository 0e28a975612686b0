"""The composition root hands an application object's channel services to the
node: `channel_occupied` / `channel_vacated` and `sources` run with no wiring of
the application's own, started and stopped with the node."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from wsfan.compose import build_node
from wsfan.config import ConfigError, Settings
from wsfan.protocol import Publication

from tests.app_channels import Subscriber, wait_until

NAMESPACES = {"ticker": {"history_size": 10}}
pytestmark = pytest.mark.settings(app={"vacate_delay": 0.0}, namespaces=NAMESPACES)


class Ticker:
    """An application with occupancy handlers and one source."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.sources = {"ticker:*": self.prices}

    async def channel_occupied(self, channel: str) -> None:
        self.events.append(("occupied", channel))

    async def channel_vacated(self, channel: str) -> None:
        self.events.append(("vacated", channel))

    async def prices(self, channel: str, last: Publication | None) -> AsyncIterator[Any]:
        yield {"price": 1 if last is None else last.data["price"] + 1}


@pytest.mark.gen_test(timeout=30)
async def test_an_applications_occupancy_handlers_and_sources_run_on_the_node(
    settings: Settings,
):
    app = Ticker()
    node = build_node(settings, app=app)
    await node.start()
    try:
        subscriber = Subscriber()
        await node.add_subscriber("ticker:eur", subscriber)  # type: ignore[arg-type]
        await wait_until(lambda: subscriber.data() == [{"price": 1}])
        await wait_until(lambda: app.events == [("occupied", "ticker:eur")])
        await node.remove_subscriber("ticker:eur", subscriber)  # type: ignore[arg-type]
        await wait_until(lambda: app.events[-1] == ("vacated", "ticker:eur"))
    finally:
        await node.close()


def test_an_application_without_channel_handlers_attaches_no_services(settings: Settings):
    class Plain:
        async def rpc(self, ctx: Any) -> Any: ...

    node = build_node(settings, app=Plain())
    assert node.app.services is None and node.hub.channel_listener is None


def test_a_malformed_source_pattern_is_a_configuration_error(settings: Settings):
    class Bad:
        sources = {"ticker:[": Ticker().prices}

    with pytest.raises(ConfigError, match=r"app\.handlers"):
        build_node(settings, app=Bad())
