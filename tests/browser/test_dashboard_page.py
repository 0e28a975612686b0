"""The dashboard at /dashboard: the cluster's numbers, fed by sys:stats, in a real browser."""

from __future__ import annotations

import re
import time

import pytest

from tests.browser.conftest import base_url, protocol_client
from tests.conftest import TIMEOUT_SCALE
from tests.processes import running

expect = pytest.importorskip(
    "playwright.sync_api", reason="browser tests need the playwright package"
).expect

RATE = 20  # publications per second from the test's publisher

# A tile's number as the page shows it (en-US: "1,234.5").
TILE = "id => Number(document.getElementById(id).textContent.replace(/,/g, ''))"


def tile(page, name: str) -> float:
    return page.evaluate(TILE, f"t-{name}")


def wait_for_tile(page, name: str, test: str) -> None:
    page.wait_for_function(f"({TILE})('t-{name}') {test}")


def test_dashboard_numbers_move_while_a_publisher_runs(
    cluster, open_page, publisher_thread, screenshot
):
    page = open_page(base_url(cluster[0]) + "/dashboard")
    expect(page.locator("#t-instances")).to_have_text("2")
    idle = tile(page, "in"), tile(page, "out")
    stop = publisher_thread(cluster[1], "chat:dashboard", RATE)
    # A quarter of the rate at least: on a busy machine each round trip takes longer.
    wait_for_tile(page, "in", f">= {RATE / 4}")
    wait_for_tile(page, "out", f">= {RATE / 4}")
    busy = tile(page, "in"), tile(page, "out")
    assert busy[0] > idle[0] and busy[1] > idle[1]
    points = int(page.get_attribute("#c-messages", "data-points"))
    page.wait_for_function(
        f"() => Number(document.getElementById('c-messages').dataset.points) > {points}"
    )
    screenshot(page, "busy")
    stop.set()
    wait_for_tile(page, "in", "< 2")  # the page itself sends a pong now and then
    screenshot(page, "after")


def test_dashboard_lists_every_instance_with_its_fanout_latency(cluster, open_page, screenshot):
    page = open_page(base_url(cluster[0]) + "/dashboard")
    rows = page.locator("#nodes tr")
    expect(rows).to_have_count(2)
    expect(page.locator("#t-latency")).to_have_text(re.compile(r"^\d+(\.\d+)? ms$"))
    for i in range(2):
        expect(rows.nth(i).locator("td").nth(6)).to_have_text(re.compile(r"^\d+(\.\d+)?$"))
    screenshot(page, "instances")


def test_dashboard_draws_recent_minutes_from_history_at_once(cluster, open_page):
    # Wait until sys:stats holds a few reports of each instance.
    deadline = time.monotonic() + 10 * TIMEOUT_SCALE
    with protocol_client(cluster[1]) as viewer:
        while len(viewer.call("history", {"channel": "sys:stats", "limit": 6})["publications"]) < 6:
            assert time.monotonic() < deadline, "instances did not report"
            time.sleep(0.2)
    page = open_page(base_url(cluster[0]) + "/dashboard")
    page.wait_for_function("() => Number(document.getElementById('c-messages').dataset.points) > 0")
    # Live reports alone come two a second; the replay brings six or more at once.
    assert int(page.get_attribute("#c-messages", "data-points")) >= 6


# Pixels of the clients chart's canvas near each series' colour (uPlot draws on a canvas).
CANVAS_COLOURS = """([el, colours]) => {
  const canvas = el.querySelector('canvas');
  const px = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  return colours.map(([r, g, b]) => {
    let n = 0;
    for (let i = 0; i < px.length; i += 4) {
      if (Math.abs(px[i] - r) + Math.abs(px[i + 1] - g) + Math.abs(px[i + 2] - b) < 40) n += 1;
    }
    return n;
  });
}"""
CONNECTIONS, SUBSCRIPTIONS = (0x93, 0x33, 0xEA), (0xEA, 0x58, 0x0C)


def test_equal_connections_and_subscriptions_both_stay_visible(
    cluster_env, tmp_path, open_page, screenshot
):
    with running(tmp_path, cluster_env, ("--workers", "1"), name="alone") as server:
        server.wait_ready()
        page = open_page(base_url(server) + "/dashboard")
        # The page is the only client: one connection, one subscription (sys:stats).
        expect(page.locator("#t-connections")).to_have_text("1")
        expect(page.locator("#t-subscriptions")).to_have_text("1")
        page.wait_for_function(
            "() => Number(document.getElementById('c-clients').dataset.points) >= 3"
        )
        chart = page.locator("#c-clients")
        connections, subscriptions = page.evaluate(
            CANVAS_COLOURS, [chart.element_handle(), [CONNECTIONS, SUBSCRIPTIONS]]
        )
        screenshot(page, "equal-lines")
        assert subscriptions > 0
        # Solid lines of one width drawn on top of each other would leave next to none.
        assert connections > subscriptions / 3, (connections, subscriptions)
