"""The README's browser example works against a server as shipped."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.browser.conftest import base_url

expect = pytest.importorskip(
    "playwright.sync_api", reason="browser tests need the playwright package"
).expect

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> str:
    """The first html block of the README's "In the browser" section."""
    section = README.read_text().split("\n## In the browser\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```html\n(.*?)```", section, re.S)
    assert match, "no html example in the README's browser section"
    return match.group(1)


def test_readme_browser_example_subscribes_and_publishes(cluster, open_page, screenshot):
    # As if saved to static/example.html, without writing into the repository: the
    # example replaces a page this server served, so it runs in the server's origin.
    page = open_page(base_url(cluster[0]) + "/healthz")
    page.set_content(readme_example())
    expect(page.locator("body")).to_contain_text('{"text":"hello from the browser"}')
    screenshot(page, "example")
