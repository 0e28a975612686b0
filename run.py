#!/usr/bin/env python3
"""The `wsfan` command from a checkout: `.venv/bin/python run.py [serve] --port N ...` or
`run.py apikey|loadtest|publish|token ...` (see server/cli.py). It needs the package
installed in that interpreter (`make venv` installs it, editable, as `wsfan`)."""

import sys

try:
    from wsfan.cli import main
except ModuleNotFoundError as exc:  # not the venv's interpreter
    sys.exit(f"run.py: {exc}; run `make venv`, then `.venv/bin/python run.py` or `.venv/bin/wsfan`")

if __name__ == "__main__":
    sys.exit(main())
