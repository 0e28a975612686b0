"""The official JavaScript SDK (static/vendor/centrifuge/centrifuge.js) over the
HTTP-streaming and SSE transports with bidirectional emulation, in Chromium, in
a page that has no WebSocket at all.

The page (sdk_harness.js in a page of the stream's instance's own origin) connects
with the transports list [websocket, <transport>]: the SDK finds no WebSocket and
falls back. Its later commands go to `/emulation` of the OTHER instance (a
cross-origin request, so through CORS: the instances allow http://127.0.0.1:*),
which hands them on to the instance holding the stream through the broker.
"""

from __future__ import annotations

import http.client
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import (
    PAGE_TIMEOUT_MS,
    PageOpener,
    backing_env,
    base_url,
    chat_message,
    protocol_client,
)
from tests.conftest import TIMEOUT_SCALE
from tests.processes import Server, running

pytest.importorskip("playwright.sync_api", reason="browser tests need the playwright package")

TRANSPORTS = ["http_stream", "sse"]
ENDPOINTS = {"http_stream": "/connection/http_stream", "sse": "/connection/sse"}
HARNESS = Path(__file__).parent / "sdk_harness.js"
NO_WEBSOCKET = "delete window.WebSocket;"
# What the browser logs when the stream's instance is killed mid-stream (its chunked
# answer never ends) and while the SDK keeps trying it until it is back.
STREAM_INSTANCE_DOWN = re.compile(r"net::ERR_(INCOMPLETE_CHUNKED_ENCODING|CONNECTION_REFUSED)$")
# The restart test's page retries at most 1 s apart (maxReconnectDelay).
RECONNECT_TIMEOUT_MS = 5_000 + PAGE_TIMEOUT_MS


@pytest.fixture(scope="module")
def cluster_env(redis_url: str, mongo_url: str) -> dict[str, str]:
    """The module's instances: their own Redis prefix, and pages of any local port
    may use their streams and /emulation across origins."""
    return backing_env(
        redis_url,
        mongo_url,
        f"browser-sdk-{uuid.uuid4().hex[:12]}",
        WSFAN_CLIENT__ALLOWED_ORIGINS="http://127.0.0.1:*",
        WSFAN_CHANNELS__PRESENCE="true",  # off outside namespaces in config/default.toml
    )


@dataclass
class SdkPage:
    """The harness page in a browser, its stream on `stream`, its emulation
    requests to `emulation`; `emulation_answers`: (url, status, allowed origin)
    of every /emulation response the page got."""

    page: Any
    transport: str
    stream: Server
    emulation: Server
    emulation_answers: list[tuple[str, int, str | None]] = field(default_factory=list)

    @property
    def origin(self) -> str:
        return base_url(self.stream)

    def call(self, expression: str, *args: Any) -> Any:
        """`harness.<expression>` applied to `args`, awaited in the page."""
        return self.page.evaluate(f"(args) => harness.{expression}(...args)", list(args))

    def connect(self, **options: Any) -> dict[str, Any]:
        transports = [
            {"transport": "websocket", "endpoint": self.origin.replace("http", "ws", 1)},
            {"transport": self.transport, "endpoint": ENDPOINTS[self.transport]},
        ]
        options = {
            "emulationEndpoint": base_url(self.emulation) + "/emulation",
            "data": {"name": f"page-{self.transport}"},
            **options,
        }
        result: dict[str, Any] = self.call("connect", transports, options)
        return result

    def events(self, kind: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.page.evaluate(f"() => harness.events.{kind}")
        return result

    def wait_received(self, channel: str, expected: list[Any]) -> None:
        """Until the page's publications in `channel` are exactly `expected`."""
        try:
            self.page.wait_for_function(
                "([channel, n]) => harness.received(channel).length >= n",
                arg=[channel, len(expected)],
            )
        finally:
            assert self.call("received", channel) == expected


def open_sdk_page(
    open_page: PageOpener,
    transport: str,
    stream: Server,
    emulation: Server,
    allow_console: tuple[re.Pattern[str], ...] = (),
) -> SdkPage:
    """The harness in a page of `stream`'s origin without WebSocket: the chat page,
    which loads the SDK, before anyone joins. (Not a page Playwright makes up with
    `route.fulfill`: such a document has no address, so Chromium's local network
    access rules count it as public and block its requests to another loopback origin.)"""
    page = open_page("about:blank", allow_console=allow_console)
    sdk = SdkPage(page, transport, stream, emulation)
    page.add_init_script(NO_WEBSOCKET)

    def answered(response: Any) -> None:
        if response.url.endswith("/emulation"):
            allowed = response.header_value("access-control-allow-origin")
            sdk.emulation_answers.append((response.url, response.status, allowed))

    page.on("response", answered)
    page.goto(base_url(stream) + "/")
    page.add_script_tag(path=str(HARNESS))
    page.evaluate("ms => { harness.timeoutMs = ms; }", PAGE_TIMEOUT_MS)
    return sdk


@pytest.fixture(params=TRANSPORTS)
def sdk(request: pytest.FixtureRequest, cluster: list[Server], open_page: PageOpener) -> SdkPage:
    """A harness page streaming from cluster[0], emulating through cluster[1]."""
    return open_sdk_page(open_page, request.param, cluster[0], cluster[1])


def channel_name(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}"


def transport_gauge(server: Server, transport: str) -> float:
    """wsfan_transport_connections{transport=...} of `server`'s /metrics."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=3 * TIMEOUT_SCALE)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    match = re.search(
        rf'^wsfan_transport_connections\{{transport="{transport}"\}} (\S+)$', text, re.M
    )
    return float(match.group(1)) if match else 0.0


def test_sdk_connects_over_the_fallback_when_the_page_has_no_websocket(sdk: SdkPage) -> None:
    assert sdk.page.evaluate("() => typeof window.WebSocket") == "undefined"
    connected = sdk.connect()
    assert connected["transport"] == sdk.transport
    assert connected["client"]
    assert transport_gauge(sdk.stream, sdk.transport) >= 1
    assert sdk.events("errors") == []


def test_emulation_goes_across_origins_to_the_other_instance(sdk: SdkPage) -> None:
    sdk.connect()
    channel = channel_name("emulated")
    with sdk.page.expect_response(lambda r: r.url.endswith("/emulation")):
        subscribed = sdk.call("subscribe", channel)  # a command after connect: emulated
    assert subscribed["channel"] == channel
    other = base_url(sdk.emulation) + "/emulation"
    assert all(answer == (other, 204, sdk.origin) for answer in sdk.emulation_answers), (
        sdk.emulation_answers
    )
    assert sdk.events("errors") == []


def test_publications_travel_both_ways_over_the_fallback(sdk: SdkPage) -> None:
    sdk.connect()
    channel = channel_name("pubsub")
    sdk.call("subscribe", channel)
    sdk.call("publish", channel, {"text": "from the page"})
    with protocol_client(sdk.emulation, "bob") as bob:
        bob.publish(channel, {"text": "from bob"})
        sdk.wait_received(channel, [{"text": "from the page"}, {"text": "from bob"}])
        assert [pub["data"] for pub in bob.history(channel)] == [
            {"text": "from the page"},
            {"text": "from bob"},
        ]
    names = [pub["info"]["connInfo"]["name"] for pub in sdk.events("publications")]
    assert names == [f"page-{sdk.transport}", "bob"]


def test_presence_over_the_fallback_is_seen_on_both_instances(sdk: SdkPage) -> None:
    me = sdk.connect()["client"]
    channel = channel_name("presence")
    sdk.call("subscribe", channel)
    clients = sdk.call("presence", channel)["clients"]
    assert list(clients) == [me]
    assert clients[me]["connInfo"] == {"name": f"page-{sdk.transport}"}
    with protocol_client(sdk.emulation, "bob") as bob:
        presence = bob.call("presence", {"channel": channel})["presence"]
    assert presence[me]["conn_info"] == {"name": f"page-{sdk.transport}"}


def test_history_over_the_fallback_returns_what_was_published(sdk: SdkPage) -> None:
    channel = channel_name("history")
    with protocol_client(sdk.emulation, "bob") as bob:
        for i in range(3):
            bob.publish(channel, chat_message("bob", f"earlier {i}"))
    sdk.connect()
    sdk.call("subscribe", channel)
    history = sdk.call("history", channel, {"limit": 10})
    assert [pub["data"]["text"] for pub in history["publications"]] == [
        "earlier 0",
        "earlier 1",
        "earlier 2",
    ]
    latest = sdk.call("history", channel, {"limit": 2, "reverse": True})
    assert [pub["data"]["text"] for pub in latest["publications"]] == ["earlier 2", "earlier 1"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_page_recovers_what_was_published_while_its_stream_instance_restarted(
    transport: str,
    cluster: list[Server],
    cluster_env: dict[str, str],
    tmp_path: Path,
    open_page: PageOpener,
) -> None:
    channel = channel_name("recover")
    missed = [{"text": f"missed {i}"} for i in range(3)]
    with running(tmp_path, cluster_env, ("--workers", "1"), name="x-before") as x:
        x.wait_ready()
        sdk = open_sdk_page(open_page, transport, x, cluster[1], (STREAM_INSTANCE_DOWN,))
        sdk.connect(minReconnectDelay=100, maxReconnectDelay=1000)
        sdk.call("subscribe", channel)
        sdk.call("publish", channel, {"text": "before"})
        sdk.wait_received(channel, [{"text": "before"}])
        x.kill()
        sdk.page.wait_for_function("() => harness.state() === 'connecting'")
        with protocol_client(cluster[0], "bob") as bob:
            for data in missed:
                bob.publish(channel, data)
        port = x.port
    with running(tmp_path, cluster_env, ("--workers", "1"), name="x-after", port=port) as again:
        again.wait_ready()
        sdk.page.wait_for_function(
            "() => harness.events.subscribed.length === 2", timeout=RECONNECT_TIMEOUT_MS
        )
        resubscribed = sdk.events("subscribed")[1]
        assert (resubscribed["wasRecovering"], resubscribed["recovered"]) == (True, True)
        sdk.wait_received(channel, [{"text": "before"}, *missed])
        assert [c["transport"] for c in sdk.events("connected")] == [transport, transport]
        sdk.call("publish", channel, {"text": "after"})
        sdk.wait_received(channel, [{"text": "before"}, *missed, {"text": "after"}])
    # Each command went to the other instance, which found the new stream's node.
    assert {answer[:2] for answer in sdk.emulation_answers} == {
        (base_url(cluster[1]) + "/emulation", 204)
    }
