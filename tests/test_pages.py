"""The pages as HTTP resources: routes, templates, and the vendored libraries they load.

What they do in a browser is tested in tests/browser/.
"""

from __future__ import annotations

import re

import pytest

from server.web.pages import STATIC_DIR

VENDORED = [
    "vendor/centrifuge/centrifuge.js",
    "vendor/centrifuge/LICENSE",
    "vendor/uplot/uPlot.iife.min.js",
    "vendor/uplot/uPlot.min.css",
    "vendor/uplot/LICENSE",
    "vendor/VERSIONS.md",
]


@pytest.fixture(params=["memory"])
def broker_type(request: pytest.FixtureRequest) -> str:
    return request.param  # pages do not depend on the broker


def local_assets(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html)


@pytest.mark.gen_test
@pytest.mark.parametrize("path", ["/", "/dashboard"])
async def test_page_loads_only_assets_this_server_serves(http_client, base_url, path):
    response = await http_client.fetch(base_url + path)
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.headers["Cache-Control"] == "no-cache"
    html = response.body.decode()
    assets = local_assets(html)
    assert any("centrifuge.js" in a for a in assets)
    for asset in assets:
        assert asset.startswith("/"), asset
        assert (await http_client.fetch(base_url + asset)).code == 200


@pytest.mark.gen_test
async def test_dashboard_page_names_the_configured_stats_channel(http_client, base_url):
    html = (await http_client.fetch(base_url + "/dashboard")).body.decode()
    assert 'data-stats-channel="sys:stats"' in html


@pytest.mark.gen_test
@pytest.mark.settings(stats={"channel": "sys:<numbers>"})
async def test_page_values_are_html_escaped(http_client, base_url):
    html = (await http_client.fetch(base_url + "/dashboard")).body.decode()
    assert 'data-stats-channel="sys:&lt;numbers&gt;"' in html


@pytest.mark.gen_test
async def test_favicon_is_served(http_client, base_url):
    response = await http_client.fetch(base_url + "/favicon.ico")
    assert response.body.startswith(b"\x00\x00\x01\x00")


@pytest.mark.parametrize("path", VENDORED)
def test_vendored_file_is_kept_with_its_licence_and_version(path):
    assert (STATIC_DIR / path).stat().st_size > 0


def test_vendored_versions_match_the_refresh_script():
    script = (STATIC_DIR / "vendor" / "refresh.sh").read_text()
    versions = (STATIC_DIR / "vendor" / "VERSIONS.md").read_text()
    for name in ("CENTRIFUGE_VERSION", "UPLOT_VERSION"):
        pinned = re.search(rf"^{name}=(\S+)", script, re.M)
        assert pinned and f"| {pinned.group(1)} |" in versions, name
