"""The README's JavaScript example, run with Node as the README says, exits by itself.

npm is not used: the `centrifuge` package it imports is the SDK build kept in
static/vendor/ (the same code npm ships, as a browser bundle), wrapped as an ES
module in a node_modules of the test's own. Skipped without `node`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import TIMEOUT_SCALE
from tests.processes import ROOT, clean_env, running

README = ROOT / "README.md"
SDK = ROOT / "static" / "vendor" / "centrifuge" / "centrifuge.js"
RUN_TIMEOUT = 20 * TIMEOUT_SCALE


def js_example() -> str:
    """The js block that follows "save this as `example.mjs`" in the README."""
    text = README.read_text()
    after = text.split("save this as `example.mjs`", 1)[1]
    match = re.search(r"```js\n(.*?)```", after, re.S)
    assert match, "no js block after the example.mjs instructions"
    return match.group(1)


def node_command(node: str) -> list[str]:
    """`node example.mjs`, with --experimental-websocket on Node 20 (as the README says)."""
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    major = int(version.stdout.strip().lstrip("v").split(".")[0])
    return [node, *(["--experimental-websocket"] if major < 22 else []), "example.mjs"]


def centrifuge_package(directory: Path) -> None:
    """node_modules/centrifuge: the vendored SDK bundle, exporting `Centrifuge`."""
    package = directory / "node_modules" / "centrifuge"
    package.mkdir(parents=True)
    shutil.copy(SDK, package / "bundle.cjs")  # sets globalThis.Centrifuge
    (package / "package.json").write_text(
        '{"name": "centrifuge", "type": "module", "exports": "./index.js"}\n'
    )
    (package / "index.js").write_text(
        "import './bundle.cjs';\nexport const Centrifuge = globalThis.Centrifuge;\n"
    )


def test_readme_js_example_prints_its_publication_and_exits(
    tmp_path: Path, redis_url: str, mongo_url: str
) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("the JavaScript example needs node")
    env = clean_env(
        REDIS_URL=redis_url,
        MONGO_URL=mongo_url,
        WSFAN_EMBEDDED__DIR=str(tmp_path / "var"),
        WSFAN_LOG__LEVEL="warning",
    )
    with running(tmp_path, env, ("--workers", "1")) as server:
        server.wait_ready()
        work = tmp_path / "js"
        centrifuge_package(work)
        example = js_example()
        assert "ws://localhost:8888/" in example
        (work / "example.mjs").write_text(
            example.replace("ws://localhost:8888/", f"ws://127.0.0.1:{server.port}/")
        )
        done = subprocess.run(
            node_command(node),
            cwd=work,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,  # an example that never exits fails here
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"\d+ \{ text: 'hello' \}\n", done.stdout), done.stdout
