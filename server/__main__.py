"""`python -m wsfan [serve|token|publish|apikey|loadtest] ...`: the `wsfan` command."""

import sys

from .cli import main

sys.exit(main())
