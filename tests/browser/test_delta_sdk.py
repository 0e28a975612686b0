"""The official JavaScript SDK (static/vendor/centrifuge/centrifuge.js) subscribes
with `delta: 'fossil'` in Chromium against a real run.py server: the data it
surfaces for each publication is what was published, while most of them reached
it as Fossil patches that the SDK applied itself (its own `deltaStats()` counts
them)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.conftest import PageOpener, backing_env, base_url, protocol_client
from tests.processes import Server, running

pytest.importorskip("playwright.sync_api", reason="browser tests need the playwright package")

NAMESPACE = {  # a namespace whose every publication may go as a patch
    "WSFAN_NAMESPACES__DOC__HISTORY_SIZE": "10",
    "WSFAN_NAMESPACES__DOC__ALLOW_ANONYMOUS": "true",
    "WSFAN_NAMESPACES__DOC__ALLOW_PUBLISH": "true",
    "WSFAN_NAMESPACES__DOC__ALLOWED_DELTA_TYPES": '["fossil"]',
    "WSFAN_NAMESPACES__DOC__DELTA_PUBLISH": "true",
}

SUBSCRIBE = """async (channel) => {
    const client = new Centrifuge(`ws://${location.host}/connection/websocket`);
    const sub = client.newSubscription(channel, { delta: 'fossil' });
    window.deltaSub = sub;
    window.received = [];
    window.errors = [];
    sub.on('publication', (ctx) => window.received.push(ctx.data));
    sub.on('error', (ctx) => window.errors.push(ctx.error.message || String(ctx.error)));
    client.connect();
    const subscribed = new Promise((resolve) => sub.on('subscribed', resolve));
    sub.subscribe();
    await subscribed;
    return sub._delta_negotiated;
}"""


@pytest.fixture(scope="module")
def server(
    browser: Any, redis_url: str, mongo_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    env = backing_env(redis_url, mongo_url, f"browser-delta-{uuid.uuid4().hex[:12]}", **NAMESPACE)
    with running(tmp_path_factory.mktemp("delta"), env, ("--workers", "1"), name="delta") as s:
        s.wait_ready()
        yield s


def document(version: int) -> dict[str, Any]:
    """About 2 KB; each version changes two values, one of them non-ASCII."""
    items = [
        {"id": i, "name": f"item-{i}", "price": i * 1.5, "tags": ["a", "b"]} for i in range(30)
    ]
    items[version % 30]["name"] = f"изменено {version} 😀"
    return {"items": items, "version": version, "note": "Grüße, мир"}


def test_the_sdk_surfaces_the_published_data_from_fossil_patches(
    server: Server, open_page: PageOpener
) -> None:
    page = open_page(base_url(server) + "/")  # the chat page: a real page that loads the SDK
    channel = f"doc:{uuid.uuid4().hex[:8]}"
    assert page.evaluate(SUBSCRIBE, channel) is True
    published = [document(v) for v in range(8)]
    with protocol_client(server) as publisher:
        for data in published:
            publisher.publish(channel, data)
    page.wait_for_function("(n) => window.received.length >= n", arg=len(published))
    assert page.evaluate("() => window.received") == published
    assert page.evaluate("() => window.errors") == []
    stats = page.evaluate("() => window.deltaSub.deltaStats()")
    assert stats["numFullPayloads"] == 1
    assert stats["numDeltaPayloads"] == len(published) - 1
    assert stats["bytesReceived"] * 3 < stats["bytesDecoded"]
