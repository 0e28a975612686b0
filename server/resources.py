"""Where the browser pages and the default configuration are.

In a checkout they sit beside the package's source (`static/`, `config/`); an
installed wheel carries them inside the package (`wsfan/static`, `wsfan/defaults`,
see setup.py). Either way they are found from this file, so the server runs from any
working directory.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DEFAULT_CONFIG", "STATIC_DIR"]

_PACKAGE = Path(__file__).resolve().parent


def _first_dir(*candidates: Path) -> Path:
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return candidates[0]


STATIC_DIR = _first_dir(_PACKAGE / "static", _PACKAGE.parent / "static")
"""The pages, scripts and vendored browser libraries served at `/`."""

DEFAULT_CONFIG = _first_dir(_PACKAGE / "defaults", _PACKAGE.parent / "config") / "default.toml"
"""The configuration every other layer goes over."""
