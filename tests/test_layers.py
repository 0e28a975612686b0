"""Dependencies point one way: web -> api -> node -> hub / broker / store -> protocol /
errors / config. The core imports neither the server API nor the web layer; only the
composition root (server/compose.py), the facade and the command line sit above both.

Imports are read with `ast`, so those under `if TYPE_CHECKING:` count too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SERVER = Path(__file__).resolve().parent.parent / "server"

CORE = [
    "node.py",
    "hub.py",
    "session.py",
    "session/*.py",
    "session_*.py",
    "broker/*.py",
    "store/*.py",
    "protocol.py",
    "protocol/*.py",
    "errors.py",
    "config.py",
    "config/*.py",
    "frames.py",
    "transport.py",
    "channel_log.py",
    "stats_channel.py",
    "cluster.py",
    "broker_subscriptions.py",
    "replies.py",
    "app/*.py",
]
"""Globs under server/; a name that does not exist (yet) matches nothing."""

ABOVE_THE_CORE = ("wsfan.api", "wsfan.web")


def core_modules() -> list[Path]:
    found = {path for pattern in CORE for path in SERVER.glob(pattern)}
    return sorted(found)


def package_of(path: Path) -> list[str]:
    """The package `path` (a file under server/) belongs to, as import names."""
    parts = ["wsfan", *path.relative_to(SERVER).with_suffix("").parts]
    return parts[:-1]


def imported(path: Path) -> set[str]:
    """Every module `path` imports, as absolute names: `from ..web import app` in
    server/api/x.py gives `wsfan.web` and `wsfan.web.app`."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = package_of(path)
                base = package[: len(package) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def test_relative_imports_resolve_to_the_package_names():
    names = imported(SERVER / "api" / "executor.py")
    assert any(name.startswith("wsfan.") for name in names)
    assert not any(name.startswith(".") or name.startswith("server.") for name in names)


def test_the_core_module_list_finds_the_modules_it_names():
    names = {p.relative_to(SERVER).as_posix() for p in core_modules()}
    assert {"node.py", "hub.py", "protocol/codec.py", "broker/base.py", "store/mongo.py"} <= names


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: p.relative_to(SERVER).as_posix())
def test_core_module_imports_neither_the_api_nor_the_web_layer(path: Path):
    wrong = sorted(
        name
        for name in imported(path)
        if any(name == top or name.startswith(top + ".") for top in ABOVE_THE_CORE)
    )
    assert wrong == [], f"server/{path.relative_to(SERVER)} imports {wrong}"


def test_importing_the_node_loads_neither_the_api_nor_the_web_layer():
    """The package's own `__init__` must not pull them in behind the node's back."""
    code = (
        "import sys, wsfan.node; "
        "print(sorted(m for m in sys.modules if m.startswith(('wsfan.api', 'wsfan.web'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=SERVER.parent,
    ).stdout.strip()
    assert out == "[]"
