#!/usr/bin/env python3
"""Start the server: `python run.py --port N --workers N --config FILE` (see server/cli.py)."""

import sys

from server.cli import main

if __name__ == "__main__":
    sys.exit(main())
