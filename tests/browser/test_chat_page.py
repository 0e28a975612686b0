"""The chat demo at /: messages, history, presence, recovery and names from the
connecting hook (examples/chat_app.py, loaded as `make run` does), in a real browser."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import pytest
from wsfan.api.keys import DEVELOPMENT_KEY
from wsfan.embedded import free_port

from tests.browser.conftest import (
    PAGE_TIMEOUT_MS,
    WS_CONNECT_FAILED,
    base_url,
    chat_message,
    join_room,
    protocol_client,
    send,
)
from tests.conftest import TIMEOUT_SCALE
from tests.processes import running

expect = pytest.importorskip(
    "playwright.sync_api", reason="browser tests need the playwright package"
).expect

# A page reconnects within its maxReconnectDelay (5 s) of the server coming back.
RECONNECT_TIMEOUT_MS = 20_000 + PAGE_TIMEOUT_MS


def texts(page):
    return page.locator("#messages li.msg .text")


def test_pages_on_two_instances_exchange_messages(cluster, open_page, screenshot):
    alice = open_page(base_url(cluster[0]) + "/")
    bob = open_page(base_url(cluster[1]) + "/")
    join_room(alice, "alice", "exchange")
    join_room(bob, "bob", "exchange")
    send(alice, "hello from alice")
    expect(texts(bob)).to_have_text(["hello from alice"])
    send(bob, "hi alice")
    expect(texts(alice)).to_have_text(["hello from alice", "hi alice"])
    expect(alice.locator("#messages li.msg.mine .text")).to_have_text(["hello from alice"])
    screenshot(alice, "alice")
    screenshot(bob, "bob")


def test_status_line_names_the_transport(cluster, open_page):
    page = open_page(base_url(cluster[0]) + "/")
    join_room(page, "alice", "status")
    expect(page.locator("#status")).to_have_attribute("data-transport", "websocket")
    expect(page.locator("#status")).to_have_text("online · WebSocket")


def blocking_websocket(dead_port: int) -> str:
    """A page script under which every WebSocket goes to `dead_port`, where nothing
    listens: its handshake fails before it opens, as behind a proxy that blocks it."""
    return f"""(() => {{
      const Real = window.WebSocket;
      function Blocked(url, protocols) {{
        const to = new URL(url, location.href);
        to.port = '{dead_port}';
        return new Real(to.href, protocols);
      }}
      Blocked.prototype = Real.prototype;
      Object.assign(Blocked, {{ CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 }});
      window.WebSocket = Blocked;
    }})();"""


def test_chat_falls_back_to_http_streaming_when_websocket_is_blocked(
    cluster, open_page, screenshot
):
    alice = open_page("about:blank", allow_console=(WS_CONNECT_FAILED,))
    alice.add_init_script(blocking_websocket(free_port()))
    alice.goto(base_url(cluster[0]) + "/")
    bob = open_page(base_url(cluster[1]) + "/")
    join_room(alice, "alice", "blocked")
    join_room(bob, "bob", "blocked")
    status = alice.locator("#status")
    expect(status).to_have_attribute("data-transport", "http_stream")
    expect(status).to_have_text("online · HTTP streaming")
    expect(bob.locator("#status")).to_have_attribute("data-transport", "websocket")
    send(alice, "sent over HTTP streaming")
    expect(texts(bob)).to_have_text(["sent over HTTP streaming"])
    send(bob, "received over HTTP streaming")
    expect(texts(alice)).to_have_text(["sent over HTTP streaming", "received over HTTP streaming"])
    expect(alice.locator("#presence li")).to_have_text(["alice", "bob"])
    screenshot(alice, "fallback")


def test_joining_a_room_shows_its_history(cluster, open_page, screenshot):
    with protocol_client(cluster[1], "carol") as other:
        for i in range(3):
            other.publish("chat:history", chat_message("carol", f"earlier {i}"))
    page = open_page(base_url(cluster[0]) + "/#history")
    join_room(page, "alice", "history")
    expect(texts(page)).to_have_text(["earlier 0", "earlier 1", "earlier 2"])
    expect(page.locator("#messages li.msg .who").first).to_have_text("carol")
    screenshot(page, "history")


def test_presence_and_join_leave_travel_between_pages(cluster, open_page, screenshot):
    alice = open_page(base_url(cluster[0]) + "/")
    bob = open_page(base_url(cluster[1]) + "/")
    join_room(alice, "alice", "presence")
    join_room(bob, "bob", "presence")
    expect(alice.locator("#presence li")).to_have_text(["alice", "bob"])
    expect(alice.locator("#messages li.system").last).to_have_text("bob joined")
    screenshot(alice, "both-present")
    bob.click("#leave")
    expect(alice.locator("#presence li")).to_have_text(["alice"])
    expect(alice.locator("#messages li.system").last).to_have_text("bob left")
    expect(alice.locator("#count")).to_have_text("1")
    screenshot(alice, "bob-left")


def test_names_come_from_the_connecting_hook_not_from_a_hello_publication(
    cluster, open_page, screenshot
):
    alice = open_page(base_url(cluster[0]) + "/")
    bob = open_page(base_url(cluster[1]) + "/")
    join_room(alice, "Alice Liddell", "named")
    join_room(bob, "bob", "named")
    expect(bob.locator("#presence li")).to_have_text(["Alice Liddell", "bob"])
    expect(alice.locator("#messages li.system").last).to_have_text("bob joined")
    send(alice, "hi bob")
    expect(bob.locator("#messages li.msg .who")).to_have_text(["Alice Liddell"])
    # A message's own `name` does not override the name the server gave its sender.
    with protocol_client(cluster[1], "carol") as carol:
        carol.publish("chat:named", chat_message("mallory", "who am I?"))
        expect(bob.locator("#messages li.msg .who")).to_have_text(["Alice Liddell", "carol"])
        presence = carol.call("presence", {"channel": "chat:named"})["presence"]
        history = carol.history("chat:named")
    names = sorted(entry["conn_info"]["name"] for entry in presence.values())
    assert names == ["Alice Liddell", "bob"]
    assert [pub["data"]["type"] for pub in history] == ["msg", "msg"]  # no hello
    screenshot(bob, "named")


def test_without_the_hook_the_page_still_works_with_guest_names(
    cluster_env, tmp_path, open_page, screenshot
):
    env = {**cluster_env, "WSFAN_APP__HANDLERS": ""}  # as `python run.py` ships
    with running(tmp_path, env, ("--workers", "1"), name="no-hook") as server:
        server.wait_ready()
        pages = []
        for name in ("alice", "bob"):
            page = open_page(base_url(server) + "/", allow_console=(WS_CONNECT_FAILED,))
            page.fill("#name", name)
            page.fill("#room", "guests")
            page.click("#join button")
            page.wait_for_selector("#status[data-state=connected]")
            pages.append(page)
        alice, bob = pages
        expect(alice.locator("#presence li")).to_have_count(2)
        expect(alice.locator("#presence li").first).to_have_text(re.compile(r"^guest-\w{4}$"))
        send(alice, "hello without a hook")
        expect(bob.locator("#messages li.msg .who")).to_have_text(["alice"])  # the message's
        screenshot(bob, "guests")


def restart_while_others_publish(
    cluster, env, tmp_path: Path, open_page, missed: list[str], room: str
):
    """A page joined on its own instance X; X is killed, `missed` is published through
    another instance, X starts again on the same port. Returns (page, the new X)."""
    with running(tmp_path, env, ("--workers", "1"), name="x-before") as x:
        x.wait_ready()
        page = open_page(base_url(x) + "/", allow_console=(WS_CONNECT_FAILED,))
        join_room(page, "alice", room)
        send(page, "before the restart")
        expect(texts(page)).to_have_text(["before the restart"])
        x.kill()
        expect(page.locator("#status")).not_to_have_attribute("data-state", "connected")
        with protocol_client(cluster[0], "bob") as other:
            for text in missed:
                other.publish(f"chat:{room}", chat_message("bob", text))
        port = x.port
    return page, running(tmp_path, env, ("--workers", "1"), name="x-after", port=port)


def test_page_recovers_what_was_published_while_its_server_restarted(
    cluster, cluster_env, tmp_path, open_page, screenshot
):
    missed = ["missed 1", "missed 2", "missed 3"]
    page, again = restart_while_others_publish(
        cluster, cluster_env, tmp_path, open_page, missed, "restart"
    )
    with again as x:
        x.wait_ready()
        expect(page.locator("#status")).to_have_attribute(
            "data-state", "connected", timeout=RECONNECT_TIMEOUT_MS
        )
        expect(texts(page)).to_have_text(["before the restart", *missed])
        expect(page.locator("#notice")).to_have_attribute("data-kind", "info")
        expect(page.locator("#notice")).to_have_text("Reconnected and recovered 3 missed messages.")
        send(page, "after the restart")
        expect(texts(page)).to_have_text(["before the restart", *missed, "after the restart"])
        screenshot(page, "recovered")


def test_page_says_when_it_could_not_recover_and_shows_the_latest_history(
    cluster, cluster_env, tmp_path, open_page, screenshot
):
    # Recovery gives back at most 2 publications here; 5 are missed.
    env = {**cluster_env, "WSFAN_CLIENT__RECOVERY_MAX_LIMIT": "2"}
    missed = [f"missed {i}" for i in range(1, 6)]
    page, again = restart_while_others_publish(
        cluster, env, tmp_path, open_page, missed, "unrecoverable"
    )
    with again as x:
        x.wait_ready()
        notice = page.locator("#notice")
        expect(notice).to_have_attribute("data-kind", "warn", timeout=RECONNECT_TIMEOUT_MS)
        expect(notice).to_contain_text("could not be recovered")
        expect(texts(page)).to_have_text(["before the restart", *missed])
        screenshot(page, "not-recovered")


def api_publish(server, channel: str, data) -> None:
    """POST /api/publish, as the README's curl example does."""
    request = urllib.request.Request(
        base_url(server) + "/api/publish",
        data=json.dumps({"channel": channel, "data": data}).encode(),
        headers={"X-API-Key": DEVELOPMENT_KEY, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10 * TIMEOUT_SCALE) as response:
        assert "result" in json.loads(response.read())


XSS = "<img src=x onerror=window.__xss=1>"


def test_the_room_shows_any_publication_and_unknown_shapes_as_raw_json(
    cluster, open_page, screenshot
):
    page = open_page(base_url(cluster[0]) + "/")
    join_room(page, "alice", "anything")
    api_publish(cluster[1], "chat:anything", {"text": "hello"})  # the README's publish
    expect(texts(page)).to_have_text(["hello"])
    expect(page.locator("#messages li.msg .who")).to_have_text(["server"])
    for data in (42, "plain", {"price": 1.5}, ["a", 1], None, {"type": "hello"}, {"html": XSS}):
        api_publish(cluster[1], "chat:anything", data)
    raw = page.locator("#messages li.msg.raw .text")
    expect(raw).to_have_text(
        [
            "42",
            '"plain"',
            '{"price":1.5}',
            '["a",1]',
            "null",
            '{"type":"hello"}',
            json.dumps({"html": XSS}, separators=(",", ":")),
        ]
    )
    # text only: the payload is shown, never parsed as HTML
    assert page.locator("#messages img").count() == 0
    assert page.evaluate("() => window.__xss") is None
    screenshot(page, "raw")


def test_history_shows_publications_of_any_shape_on_join(cluster, open_page):
    api_publish(cluster[0], "chat:shapes", {"text": "from the api"})
    api_publish(cluster[0], "chat:shapes", {"n": 1})
    page = open_page(base_url(cluster[1]) + "/")
    join_room(page, "bob", "shapes")
    expect(texts(page)).to_have_text(["from the api", '{"n":1}'])
