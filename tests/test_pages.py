"""The pages as HTTP resources: routes, templates, and the vendored libraries they load.

What they do in a browser is tested in tests/browser/.
"""

from __future__ import annotations

import re

import pytest
from wsfan.web.pages import STATIC_DIR

VENDORED = [
    "vendor/centrifuge/centrifuge.js",
    "vendor/centrifuge/LICENSE",
    "vendor/uplot/uPlot.iife.min.js",
    "vendor/uplot/uPlot.min.css",
    "vendor/uplot/LICENSE",
    "vendor/VERSIONS.md",
]

pytestmark = pytest.mark.brokers("memory")  # pages do not depend on the broker


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


@pytest.mark.gen_test
async def test_admin_page_loads_only_its_own_script_and_styles(http_client, base_url):
    response = await http_client.fetch(base_url + "/admin")
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.headers["Cache-Control"] == "no-cache"
    html = response.body.decode()
    assets = local_assets(html)
    assert any("js/admin.js" in a for a in assets)
    assert not any("vendor/" in a for a in assets)  # the API only: no client SDK
    for asset in assets:
        assert asset.startswith("/"), asset
        assert (await http_client.fetch(base_url + asset)).code == 200
    # No inline script or style for the CSP to refuse.
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)
    assert "<style" not in html and " style=" not in html
    assert not re.search(r"\son[a-z]+=", html)


@pytest.mark.gen_test
async def test_admin_page_forbids_inline_code_framing_and_form_submission(http_client, base_url):
    response = await http_client.fetch(base_url + "/admin")
    policy = [p.strip() for p in response.headers["Content-Security-Policy"].split(";")]
    assert policy[0] == "default-src 'self'"
    assert {"form-action 'none'", "frame-ancestors 'none'", "base-uri 'none'"} <= set(policy)
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.gen_test
async def test_admin_page_refusals_carry_its_policy_too(http_client, base_url):
    response = await http_client.fetch(
        base_url + "/admin", method="POST", body=b"", raise_error=False
    )
    assert response.code == 405
    assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")


@pytest.mark.gen_test
async def test_admin_page_inputs_have_no_names_to_submit(http_client, base_url):
    html = (await http_client.fetch(base_url + "/admin")).body.decode()
    controls = re.findall(r"<(?:input|textarea|select)\b[^>]*>", html)
    assert controls and not any(re.search(r"\sname=", c) for c in controls)
