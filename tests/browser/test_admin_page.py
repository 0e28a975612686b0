"""The admin page at /admin in a real browser: the server HTTP API with the operator's key.

Subscribers are plain protocol clients (the websockets sync client) with tokens for
their users, connected to the other instance than the page's, so what the page shows
and does goes across the cluster.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from wsfan.auth.cli import mint

from tests.browser.conftest import (
    DESKTOP,
    PAGE_TIMEOUT_MS,
    Watched,
    backing_env,
    base_url,
)
from tests.conftest import TIMEOUT_SCALE
from tests.processes import Server, run_to_exit

expect = pytest.importorskip(
    "playwright.sync_api", reason="browser tests need the playwright package"
).expect

ADMIN_KEY = f"admin-page-key-{uuid.uuid4().hex}"
SECRET = f"admin-page-secret-{uuid.uuid4().hex}"
XSS = "<img src=x onerror=window.__xss=1>"
XSS_CHANNEL = "<svg/onload=window.__xss=1>"  # channel names hold no whitespace
PHONE_375 = {"width": 375, "height": 812}
OVERFLOW = "() => document.documentElement.scrollWidth - window.innerWidth"
STORAGE_KEY = "wsfan.admin.apiKey"
# What chromium logs for a fetch answered 401 or 403; the tests that expect one allow it.
REFUSED_FETCH = re.compile(
    r"^Failed to load resource: the server responded with a status of 40[13]"
)


@pytest.fixture(scope="module")
def cluster_env(redis_url: str, mongo_url: str) -> dict[str, str]:
    """This module's instances: a key and a token secret of their own, no hooks (a
    token's info is the connection's info as given)."""
    return backing_env(
        redis_url,
        mongo_url,
        f"admin-{uuid.uuid4().hex[:12]}",
        WSFAN_API__KEYS=ADMIN_KEY,
        WSFAN_AUTH__HMAC_SECRET=SECRET,
        WSFAN_APP__HANDLERS="",
        WSFAN_CHANNELS__PRESENCE="true",  # off outside namespaces in config/default.toml
    )


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# A subscriber ----------------------------------------------------------------------


class Subscriber:
    """A connection of `user` subscribed to some channels, reading its pushes."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.client_id = ""
        self._id = 0
        self.pushes: list[dict[str, Any]] = []

    def _messages(self, timeout: float) -> Iterator[dict[str, Any]]:
        for line in str(self.ws.recv(timeout=timeout)).split("\n"):
            if line:
                yield json.loads(line)

    def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, method: params}))
        deadline = time.monotonic() + 5 * TIMEOUT_SCALE
        while True:
            for message in self._messages(max(deadline - time.monotonic(), 0.01)):
                if message.get("id") == self._id:
                    assert "error" not in message, message
                    return message[method]
                if "push" in message:
                    self.pushes.append(message["push"])

    def wait_push(self, test: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The first push (seen or to come) for which `test` holds."""
        deadline = time.monotonic() + 5 * TIMEOUT_SCALE
        while True:
            for push in self.pushes:
                if test(push):
                    return push
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no such push; got {self.pushes}"
            for message in self._messages(remaining):
                if "push" in message:
                    self.pushes.append(message["push"])

    def wait_closed(self) -> int | None:
        """The close code once the server closed the connection."""
        from websockets.exceptions import ConnectionClosed

        deadline = time.monotonic() + 5 * TIMEOUT_SCALE
        try:
            while True:
                remaining = deadline - time.monotonic()
                assert remaining > 0, "the connection stayed open"
                list(self._messages(remaining))
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None


@contextmanager
def subscriber(
    server: Server, channels: list[str], user: str, info: Any = None
) -> Iterator[Subscriber]:
    from websockets.sync.client import connect

    with connect(f"ws://127.0.0.1:{server.port}/connection/websocket") as ws:
        sub = Subscriber(ws)
        sub.client_id = sub.call("connect", {"token": mint(SECRET, user, info=info)})["client"]
        for channel in channels:
            sub.call("subscribe", {"channel": channel})
        yield sub


# The page --------------------------------------------------------------------------


def enter_key(page: Any, key: str = ADMIN_KEY) -> None:
    page.fill("#key", key)
    page.click("#key-form button[type=submit]")


def open_admin(open_page: Any, server: Server, **kwargs: Any) -> Any:
    """The admin page with the key entered and the console shown."""
    page = open_page(base_url(server) + "/admin", **kwargs)
    enter_key(page)
    expect(page.locator("#console")).to_be_visible()
    return page


def wait_for_nodes(page: Any, count: int) -> None:
    """Refresh the node list until it has `count` rows (an instance announces itself
    every api.node_info_interval)."""
    deadline = time.monotonic() + 10 * TIMEOUT_SCALE
    rows = page.locator("#nodes tr")
    while True:
        expect(page.locator("#nodes-result")).to_be_visible()
        if rows.count() == count:
            return
        assert time.monotonic() < deadline, f"{rows.count()} nodes shown, not {count}"
        page.click("#nodes-refresh")


def list_channels(page: Any, pattern: str, limit: int = 100) -> None:
    page.fill("#pattern", pattern)
    page.fill("#limit", str(limit))
    page.click("#channels-form button[type=submit]")


def channel_row(page: Any, channel: str) -> Any:
    return page.locator("#channels tr").filter(
        has=page.locator("td.name", has_text=re.compile(f"^{re.escape(channel)}$"))
    )


def open_channel(page: Any, channel: str) -> None:
    list_channels(page, channel)
    channel_row(page, channel).get_by_role("button", name="open").click()
    expect(page.locator("#channel-name")).to_have_text(channel)


@contextmanager
def refusing_page(browser: Any, url: str) -> Iterator[Any]:
    """A page of its own for a test expecting the API to refuse (401, 403): those
    answers and chromium's console line about them are allowed, nothing else is."""
    context = browser.new_context(viewport=DESKTOP, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    watched = Watched(page, (REFUSED_FETCH,))
    watched.attach()
    try:
        page.goto(url)
        yield page
    finally:
        context.close()
    problems = [p for p in watched.problems if not re.match(r"HTTP 40[13]: .*/api/", p)]
    assert not problems, "\n".join(problems)


# Tests -----------------------------------------------------------------------------


def test_admin_page_comes_with_its_content_security_policy(cluster, open_page):
    page = open_page(base_url(cluster[0]) + "/admin")
    response = page.goto(base_url(cluster[0]) + "/admin")
    assert response.headers["content-security-policy"].startswith("default-src 'self'")
    expect(page.locator("#key-form")).to_be_visible()  # its script runs under the policy


def test_admin_keeps_the_key_in_session_storage_only(cluster, open_page):
    page = open_admin(open_page, cluster[0])
    assert page.evaluate(f"sessionStorage.getItem('{STORAGE_KEY}')") == ADMIN_KEY
    assert ADMIN_KEY not in page.url
    assert page.evaluate("localStorage.length") == 0
    assert page.input_value("#key") == ""
    page.reload()
    expect(page.locator("#console")).to_be_visible()  # the tab still has it
    page.click("#forget")
    expect(page.locator("#key-form")).to_be_visible()
    expect(page.locator("#console")).to_be_hidden()
    assert page.evaluate(f"sessionStorage.getItem('{STORAGE_KEY}')") is None
    expect(page.locator("#channels tr")).to_have_count(0)


def test_admin_shows_every_node(cluster, open_page, screenshot):
    page = open_admin(open_page, cluster[0])
    wait_for_nodes(page, 2)
    uids = page.eval_on_selector_all("#nodes td.uid", "els => els.map(e => e.textContent)")
    assert len(set(uids)) == 2 and all(uids)
    screenshot(page, "nodes")


def test_admin_lists_a_channel_with_its_subscribers_across_the_cluster(cluster, open_page):
    channel = unique("room")
    with subscriber(cluster[1], [channel], "ann"), subscriber(cluster[0], [channel], "bob"):
        page = open_admin(open_page, cluster[0])
        list_channels(page, "room-*")
        expect(channel_row(page, channel).locator("td").nth(1)).to_have_text("2")


def test_admin_applies_the_limit_to_the_channel_list(cluster, open_page):
    prefix = unique("many")
    channels = [f"{prefix}-{i}" for i in range(3)]
    with subscriber(cluster[1], channels, "ann"):
        page = open_admin(open_page, cluster[0])
        list_channels(page, f"{prefix}-*", limit=2)
        expect(page.locator("#channels tr")).to_have_count(2)
        expect(page.locator("#channels-result")).to_contain_text("3 channels")
        expect(page.locator("#channels-result")).to_contain_text("the first 2 shown")


def test_admin_shows_a_channels_presence_and_history(cluster, open_page, screenshot):
    channel = unique("room")
    with subscriber(cluster[1], [channel], "ann", info={"name": "Ann"}) as ann:
        ann.call("publish", {"channel": channel, "data": {"text": "from ann"}})
        page = open_admin(open_page, cluster[0])
        open_channel(page, channel)
        entry = page.locator("#presence li")
        expect(entry).to_have_count(1)
        expect(entry).to_contain_text("user ann")
        expect(entry).to_contain_text(f"client {ann.client_id}")
        expect(entry.locator(".conn-info")).to_contain_text('"name": "Ann"')
        expect(page.locator("#history li")).to_have_count(1)
        expect(page.locator("#history li pre")).to_contain_text('"text": "from ann"')
        expect(page.locator("#history li")).to_contain_text("by user ann")
        screenshot(page, "channel")


def test_admin_publishes_what_reaches_a_subscriber(cluster, open_page):
    channel = unique("room")
    with subscriber(cluster[1], [channel], "ann") as ann:
        page = open_admin(open_page, cluster[0])
        open_channel(page, channel)
        page.fill("#publish-data", '{"text": "from the admin page", "n": 1}')
        page.click("#publish-form button[type=submit]")
        expect(page.locator("#publish-result")).to_have_text("Published at offset 1.")
        push = ann.wait_push(lambda p: p.get("channel") == channel and "pub" in p)
        assert push["pub"]["data"] == {"text": "from the admin page", "n": 1}
        expect(page.locator("#history li")).to_have_count(1)


def test_admin_refuses_to_publish_data_that_is_not_json(cluster, open_page):
    channel = unique("room")
    page = open_admin(open_page, cluster[0])
    page.fill("#open-name", channel)
    page.click("#open-form button[type=submit]")
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/api/publish" in r.url else None)
    page.fill("#publish-data", "{text: 'single quotes'}")
    page.click("#publish-form button[type=submit]")
    result = page.locator("#publish-result")
    expect(result).to_have_attribute("data-kind", "warn")
    expect(result).to_contain_text("not valid JSON")
    assert requests == []


def test_admin_shows_the_apis_error_for_a_publish_it_refuses(cluster, open_page):
    page = open_admin(open_page, cluster[0])
    page.fill("#open-name", "nowhere:room")  # no such namespace
    page.click("#open-form button[type=submit]")
    page.fill("#publish-data", '"hello"')
    page.click("#publish-form button[type=submit]")
    expect(page.locator("#publish-result")).to_have_text(re.compile(r"^publish: error 102: "))


def test_admin_disconnects_a_user(cluster, open_page):
    channel = unique("room")
    user = unique("user")
    with (
        subscriber(cluster[1], [channel], user) as target,
        subscriber(cluster[1], [channel], "bystander") as other,
    ):
        page = open_admin(open_page, cluster[0])
        page.fill("#disconnect-user", user)
        page.click("#disconnect-form button[type=submit]")
        expect(page.locator("#disconnect-result")).to_have_attribute("data-kind", "ok")
        assert target.wait_closed() == 3503
        other.call("presence_stats", {"channel": channel})  # still connected


def test_admin_disconnects_a_client_from_the_presence_list(cluster, open_page):
    channel = unique("room")
    with subscriber(cluster[1], [channel], "ann") as ann:
        page = open_admin(open_page, cluster[0])
        open_channel(page, channel)
        page.locator("#presence li").get_by_role("button", name="disconnect").click()
        expect(page.locator("#presence-result")).to_contain_text("Disconnect sent")
        assert ann.wait_closed() == 3503


def test_admin_unsubscribes_a_user_from_a_channel(cluster, open_page):
    channel, other_channel = unique("room"), unique("room")
    with subscriber(cluster[1], [channel, other_channel], "ann") as ann:
        page = open_admin(open_page, cluster[0])
        page.fill("#unsubscribe-user", "ann")
        page.fill("#unsubscribe-channel", channel)
        page.click("#unsubscribe-form button[type=submit]")
        expect(page.locator("#unsubscribe-result")).to_have_attribute("data-kind", "ok")
        push = ann.wait_push(lambda p: "unsubscribe" in p)
        assert push["channel"] == channel and push["unsubscribe"]["code"] == 2000
        list_channels(page, "room-*")
        expect(channel_row(page, other_channel)).to_have_count(1)
        expect(channel_row(page, channel)).to_have_count(0)


def test_admin_renders_what_clients_send_as_text(cluster, open_page, screenshot):
    with subscriber(cluster[1], [XSS_CHANNEL], "ann", info={"name": XSS}) as ann:
        ann.call("publish", {"channel": XSS_CHANNEL, "data": {"text": XSS}})
        page = open_admin(open_page, cluster[0])
        list_channels(page, "<svg*")
        expect(channel_row(page, XSS_CHANNEL)).to_have_count(1)
        channel_row(page, XSS_CHANNEL).get_by_role("button", name="open").click()
        expect(page.locator("#channel-name")).to_have_text(XSS_CHANNEL)
        expect(page.locator("#presence .conn-info")).to_contain_text(XSS)
        expect(page.locator("#history li pre")).to_contain_text(XSS)
        assert page.locator("img, svg").count() == 0
        assert page.evaluate("typeof window.__xss") == "undefined"
        screenshot(page, "xss")


def test_admin_says_when_the_key_is_wrong(cluster, browser):
    with refusing_page(browser, base_url(cluster[0]) + "/admin") as page:
        enter_key(page, "not-the-key")
        expect(page.locator("#notice")).to_contain_text("refused this API key (401)")
        expect(page.locator("#console")).to_be_hidden()
        assert page.evaluate(f"sessionStorage.getItem('{STORAGE_KEY}')") is None


def test_admin_shows_what_a_scoped_key_may_not_do(cluster, cluster_env, browser):
    created = run_to_exit(
        ["apikey", "create", unique("read-only"), "--scope", "info", "--scope", "channels"],
        cluster_env,
    )
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    with refusing_page(browser, base_url(cluster[0]) + "/admin") as page:
        enter_key(page, key)
        wait_for_nodes(page, 2)
        page.fill("#disconnect-user", "ann")
        page.click("#disconnect-form button[type=submit]")
        expect(page.locator("#disconnect-result")).to_have_text(
            "disconnect: HTTP 403 (error 103: this key may not call 'disconnect')"
        )


def test_admin_fits_a_375px_screen(cluster, open_page, screenshot):
    channel = "a-channel-with-a-rather-long-name-" + "x" * 80
    with subscriber(cluster[1], [channel], "a-user-with-a-long-name-" + "y" * 60):
        page = open_page(base_url(cluster[0]) + "/admin", viewport=PHONE_375)
        assert page.evaluate(OVERFLOW) <= 0
        screenshot(page, "key")
        enter_key(page)
        open_channel(page, channel)
        expect(page.locator("#presence li")).to_have_count(1)
        assert page.evaluate(OVERFLOW) <= 0
        screenshot(page, "console")
