"""``python -m wsfan.embedded keep KIND DIR [...]``: the keeper (wsfan.embedded.keeper)."""

import sys

from .keeper import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
