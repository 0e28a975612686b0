#!/usr/bin/env python3
"""Start the server (`python run.py --port N --workers N --config FILE`) or a tool
(`python run.py apikey|loadtest|publish|token ...`); see server/cli.py."""

import sys

from wsfan.cli import main

if __name__ == "__main__":
    sys.exit(main())
