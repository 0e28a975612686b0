"""``python -m server.embedded keep KIND DIR [...]``: the keeper (server.embedded.keeper)."""

import sys

from server.embedded.keeper import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
