"""Embedded Valkey / SecantusDB: real servers on loopback, shared through keepers.

`servers` runs one server process; `keeper` is the process that holds one for every
user; `lease` attaches a process to it; `group` is what `run.py` uses.
"""

from .group import EmbeddedSet, is_embedded_url, running_url, start_embedded
from .lease import Lease, attach
from .servers import (
    HOST,
    EmbeddedSecantus,
    EmbeddedServer,
    EmbeddedServerError,
    EmbeddedValkey,
    Fsync,
    free_port,
)

__all__ = [
    "HOST",
    "EmbeddedSecantus",
    "EmbeddedServer",
    "EmbeddedServerError",
    "EmbeddedSet",
    "EmbeddedValkey",
    "Fsync",
    "Lease",
    "attach",
    "free_port",
    "is_embedded_url",
    "running_url",
    "start_embedded",
]
