"""The README's browser example works against a server as shipped."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import pytest
from wsfan.api.keys import DEVELOPMENT_KEY

from tests.browser.conftest import base_url
from tests.processes import clean_env, run_to_exit

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


def test_readme_browser_example_connects_with_a_token_from_run_py_token(
    cluster, cluster_env, open_page, screenshot
):
    minted = run_to_exit(["token", "alice"], clean_env())
    assert minted.returncode == 0, minted.stderr
    token = minted.stdout.strip()
    page = open_page(base_url(cluster[0]) + "/healthz?token=" + token)
    page.set_content(readme_example())
    expect(page.locator("body")).to_contain_text('{"text":"hello from the browser"}')
    request = urllib.request.Request(
        base_url(cluster[0]) + "/api/presence",
        data=json.dumps({"channel": "chat:lobby"}).encode(),
        headers={"X-API-Key": DEVELOPMENT_KEY, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        presence = json.loads(response.read())["result"]["presence"]
    assert "alice" in {entry["user"] for entry in presence.values()}
    screenshot(page, "example-token")
