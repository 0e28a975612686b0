"""Both pages on a phone-sized screen (390 x 844): nothing wider than the screen."""

from __future__ import annotations

import pytest

from tests.browser.conftest import PHONE, base_url, join_room, send

expect = pytest.importorskip(
    "playwright.sync_api", reason="browser tests need the playwright package"
).expect

OVERFLOW = "() => document.documentElement.scrollWidth - window.innerWidth"


def test_chat_fits_a_phone_screen(cluster, open_page, screenshot):
    page = open_page(base_url(cluster[0]) + "/", viewport=PHONE)
    screenshot(page, "join-form")
    assert page.evaluate(OVERFLOW) <= 0
    join_room(page, "a-rather-long-name-for-a-phone", "phone-room-with-a-long-name")
    send(page, "a long message without spaces " + "x" * 120)
    expect(page.locator("#messages li.msg")).to_have_count(1)
    assert page.evaluate(OVERFLOW) <= 0
    screenshot(page, "room")


def test_dashboard_fits_a_phone_screen(cluster, open_page, screenshot):
    page = open_page(base_url(cluster[0]) + "/dashboard", viewport=PHONE)
    expect(page.locator("#nodes tr")).to_have_count(2)
    page.wait_for_function("() => Number(document.getElementById('c-latency').dataset.points) > 0")
    assert page.evaluate(OVERFLOW) <= 0
    screenshot(page, "dashboard")
