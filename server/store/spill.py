"""Append-only spill files: where queued log records go while MongoDB cannot take them.

Each process appends to its own file and holds an exclusive `flock` on it for as
long as the file is open, so several workers can share one directory: a file
nobody holds a lock on belongs to a process that is gone, and whoever claims it
replays it. A record cut short by a crash ends the file's readable part; the
records before it are replayed.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import msgpack

from .records import LogRecord

__all__ = ["SpillFile", "Spool"]

log = logging.getLogger(__name__)

SUFFIX = ".spill"


class SpillFile:
    """One spill file, exclusively locked by this process while open."""

    def __init__(self, path: Path, fh: IO[bytes]) -> None:
        self.path = path
        self._fh = fh
        self.size = path.stat().st_size

    @classmethod
    def create(cls, directory: Path) -> SpillFile:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{os.getpid()}-{time.time_ns()}{SUFFIX}"
        fh = path.open("ab")
        fcntl.flock(fh, fcntl.LOCK_EX)
        return cls(path, fh)

    @classmethod
    def claim(cls, path: Path) -> SpillFile | None:
        """The file, locked, or None when a live process holds it (or it is gone)."""
        try:
            fh = path.open("ab")
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            return None
        if not path.exists():  # replayed and removed between listing and locking
            fh.close()
            return None
        return cls(path, fh)

    def append(self, records: list[LogRecord]) -> None:
        data = b"".join(msgpack.packb(r.to_list(), use_bin_type=True) for r in records)
        self._fh.write(data)
        self._fh.flush()
        self.size += len(data)

    def records(self) -> Iterator[LogRecord]:
        """Every complete record, in the order written."""
        with self.path.open("rb") as fh:
            unpacker = msgpack.Unpacker(fh, raw=False, strict_map_key=False)
            try:
                for item in unpacker:
                    yield LogRecord.from_list(item)
            except (ValueError, TypeError, msgpack.UnpackException) as exc:
                log.warning("spill file %s ends in a damaged record: %s", self.path.name, exc)

    def sync(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sync()
        self._fh.close()

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        self._fh.close()


class Spool:
    """This process's spill files: the one being appended to, and the ones to replay."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._active: SpillFile | None = None
        self._pending: list[SpillFile] = []

    @property
    def size(self) -> int:
        """Bytes held in spill files this process owns."""
        files = self._pending + ([self._active] if self._active else [])
        return sum(f.size for f in files)

    def write(self, records: list[LogRecord]) -> None:
        if self._active is None:
            self._active = SpillFile.create(self.directory)
            log.warning("MongoDB queue full: spilling to %s", self._active.path)
        self._active.append(records)

    def has_pending(self) -> bool:
        return bool(self._pending or self._active)

    def take(self) -> list[SpillFile]:
        """Files to replay now: our own (the active one closes) and any orphans."""
        if self._active is not None:
            self._active.sync()
            self._pending.append(self._active)
            self._active = None
        if self.directory.is_dir():
            mine = {f.path for f in self._pending}
            for path in sorted(self.directory.glob(f"*{SUFFIX}")):
                if path not in mine and (claimed := SpillFile.claim(path)) is not None:
                    log.info("replaying spill file %s left by another process", path.name)
                    self._pending.append(claimed)
        files, self._pending = self._pending, []
        return files

    def give_back(self, files: list[SpillFile]) -> None:
        """Files not (fully) replayed yet; kept locked for the next attempt."""
        self._pending = files + self._pending

    def close(self) -> None:
        """Sync and release every file; they are replayed at the next start."""
        for f in [*self._pending, *([self._active] if self._active else [])]:
            f.close()
        self._pending, self._active = [], None
