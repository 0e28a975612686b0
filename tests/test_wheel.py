"""The built wheel: installed alone into a fresh virtualenv, `wsfan serve` run from an
empty directory starts the whole system (embedded Valkey and SecantusDB included) and
serves its pages and the client protocol.

The wheel is installed with `--no-deps` (by this environment's pip); its dependencies
come from this test environment's site-packages, put on the fresh venv's path by a
`.pth` file, which adds the directories only: the checkout's own editable install is
not activated there.
"""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.sync.client import connect
from wsfan.embedded import free_port

from tests.conftest import TIMEOUT_SCALE
from tests.processes import Server, ready

ROOT = Path(__file__).resolve().parents[1]
SOURCES = (
    "setup.py",
    "setup.cfg",
    "pyproject.toml",
    "README.md",
    "LICENSE",
    "server",
    "static",
    "config",
)
IGNORED = ("__pycache__", "*.pyc", "production.toml")
BUILD_TIMEOUT = 300 * TIMEOUT_SCALE  # pip fetches setuptools for the isolated build


def _run(args: list[str], cwd: Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False
    )
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of this checkout's sources (the build leaves its
    build/ directory there, not in the checkout)."""
    out = tmp_path_factory.mktemp("wheel")
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns(*IGNORED))
        else:
            shutil.copy2(ROOT / name, source / name)
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)], out
    )
    (built,) = out.glob("wsfan-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel installed (no dependencies): its bin/."""
    home = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", "--without-pip", str(home)], home)
    python = home / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = [entry for entry in sys.path if entry.endswith("site-packages")]
    (Path(site) / "test_environment.pth").write_text("".join(f"{entry}\n" for entry in ours))
    install = ["install", "--no-deps", "--no-index", "-q", str(wheel)]
    _run([sys.executable, "-m", "pip", "--python", str(python), *install], home)
    return home / "bin"


def wheel_names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def test_the_wheel_claims_only_the_top_level_name_wsfan(wheel: Path):
    tops = {name.split("/")[0] for name in wheel_names(wheel) if ".dist-info/" not in name}
    assert tops == {"wsfan"}


def test_the_wheel_carries_the_pages_and_the_default_configuration(wheel: Path):
    names = set(wheel_names(wheel))
    assert {"wsfan/static/chat.html", "wsfan/static/dashboard.html"} <= names
    assert any(n.startswith("wsfan/static/vendor/centrifuge/") for n in names)
    assert "wsfan/defaults/default.toml" in names
    assert "wsfan/__main__.py" in names


def test_the_wheel_installs_the_wsfan_command(venv: Path):
    done = _run([str(venv / "wsfan"), "token", "--help"], venv)
    assert done.stdout.startswith("usage: wsfan token")


def test_python_dash_m_runs_the_same_command(venv: Path):
    done = _run([str(venv / "python"), "-m", "wsfan", "--help"], venv)
    assert "usage: python -m wsfan" in done.stdout


@pytest.fixture
def served(venv: Path, tmp_path: Path) -> Iterator[Server]:
    """`wsfan serve` from an empty directory, nothing configured."""
    empty = tmp_path / "empty"
    empty.mkdir()
    port = free_port()
    command = [str(venv / "wsfan"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    with ready(command, port, tmp_path / "serve.stderr", cwd=empty) as server:
        yield server


def test_wsfan_serve_from_an_empty_directory_serves_pages_and_clients(
    served: Server, venv: Path, tmp_path: Path
):
    served_dir = tmp_path / "empty"
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=5 * TIMEOUT_SCALE)
    try:
        conn.request("GET", "/")
        page = conn.getresponse()
        assert page.status == 200
        assert b"centrifuge" in page.read()
    finally:
        conn.close()
    url = f"ws://127.0.0.1:{served.port}/connection/websocket"
    with connect(url, open_timeout=5 * TIMEOUT_SCALE) as ws:
        ws.send(json.dumps({"id": 1, "connect": {}}))
        reply = json.loads(ws.recv(timeout=5 * TIMEOUT_SCALE))
        assert reply["id"] == 1 and "client" in reply["connect"]
        ws.send(json.dumps({"id": 2, "subscribe": {"channel": "news"}}))
        subscribed = json.loads(ws.recv(timeout=5 * TIMEOUT_SCALE))
        assert subscribed["id"] == 2 and subscribed["subscribe"]["recoverable"] is True
        # `wsfan publish`, run where `wsfan serve` was, finds that server by itself
        _run([str(venv / "wsfan"), "publish", "news", '{"text": "hi"}'], served_dir)
        push = json.loads(ws.recv(timeout=5 * TIMEOUT_SCALE))
        assert push["push"]["channel"] == "news"
        assert push["push"]["pub"]["data"] == {"text": "hi"}
    assert served.terminate() == 0
