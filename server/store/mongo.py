"""MongoDB through Motor: the only module that talks to the driver.

Collections: `publications` (the durable log, unique on channel + epoch + offset,
expiring through a TTL index on `expire_at`), `states` (each retained channel's
latest publication or API-set state) and `api_keys` (see `keys.py`).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from motor.motor_asyncio import AsyncIOMotorClient
from pymongo import ASCENDING, DESCENDING, UpdateOne
from pymongo.errors import BulkWriteError

from ..protocol import Publication
from .records import LogRecord, RetainedState, publication_from_document

__all__ = ["DUPLICATE_KEY", "MongoStore"]

DUPLICATE_KEY = 11000


def _only_duplicates(exc: BulkWriteError) -> bool:
    errors = exc.details.get("writeErrors", [])
    concern = exc.details.get("writeConcernErrors", [])
    return not concern and all(e.get("code") == DUPLICATE_KEY for e in errors)


class MongoStore:
    """One Motor client for the node; connecting is lazy, so a down MongoDB never
    blocks start-up or delivery, and `ping` reports it."""

    def __init__(self, url: str, database: str, timeout: float = 2.0) -> None:
        ms = int(timeout * 1000)
        self._client: AsyncIOMotorClient[Any] = AsyncIOMotorClient(
            url, serverSelectionTimeoutMS=ms, connectTimeoutMS=ms, tz_aware=True
        )
        self.db = self._client[database]
        self.publications = self.db["publications"]
        self.states = self.db["states"]
        self.api_keys = self.db["api_keys"]

    async def ping(self) -> None:
        """Raises when MongoDB cannot be reached within the timeout."""
        await self._client.admin.command("ping")

    async def ensure_indexes(self) -> None:
        """Create the indexes the store relies on (idempotent; run at start-up)."""
        await self.publications.create_index(
            [("channel", ASCENDING), ("epoch", ASCENDING), ("offset", ASCENDING)],
            unique=True,
            name="position",
        )
        await self.publications.create_index("expire_at", expireAfterSeconds=0, name="ttl")
        await self.api_keys.create_index("name", name="name")

    async def close(self) -> None:
        # Motor's close() waits for a server lookup in progress: off the event loop.
        await asyncio.to_thread(self._client.close)

    # The publication log ------------------------------------------------------

    async def write_log(self, records: list[LogRecord]) -> None:
        """Insert a batch; rows already there (a retried batch) are skipped, not errors."""
        try:
            await self.publications.insert_many([r.document() for r in records], ordered=False)
        except BulkWriteError as exc:
            if not _only_duplicates(exc):
                raise
        latest: dict[str, LogRecord] = {}
        for record in records:
            if record.retain and record.time >= latest.get(record.channel, record).time:
                latest[record.channel] = record
        if latest:
            await self._upsert_states(
                [(channel, r.state_document()) for channel, r in latest.items()]
            )

    async def read_log(
        self, channel: str, epoch: str, after: int, upto: int, reverse: bool = False
    ) -> list[Publication]:
        """Publications with `after` < offset <= `upto` in `epoch`, in offset order."""
        if upto <= after:
            return []
        query = {"channel": channel, "epoch": epoch, "offset": {"$gt": after, "$lte": upto}}
        cursor = self.publications.find(query, {"_id": 0, "time": 0, "expire_at": 0})
        cursor = cursor.sort("offset", DESCENDING if reverse else ASCENDING)
        return [publication_from_document(doc) async for doc in cursor]

    async def top_offset(self, channel: str, epoch: str) -> int:
        """The highest offset the log holds for `channel` in `epoch` (0: none)."""
        doc = await self.publications.find_one(
            {"channel": channel, "epoch": epoch}, {"offset": 1}, sort=[("offset", DESCENDING)]
        )
        return 0 if doc is None else int(doc["offset"])

    # Retained state -----------------------------------------------------------

    async def _upsert_states(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        """Set each channel's state unless the stored one is newer (a duplicate-key
        error on the upsert means exactly that, and is the expected outcome)."""
        ops = [
            UpdateOne({"_id": ch, "time": {"$lt": doc["time"]}}, {"$set": doc}, upsert=True)
            for ch, doc in items
        ]
        try:
            await self.states.bulk_write(ops, ordered=False)
        except BulkWriteError as exc:
            if not _only_duplicates(exc):
                raise

    async def set_state(self, channel: str, pub: Publication, when: datetime) -> None:
        record = LogRecord.of(channel, pub, when.timestamp(), 0.0, retain=True)
        await self._upsert_states([(channel, {**record.state_document(), "explicit": True})])

    async def get_state(self, channel: str) -> RetainedState | None:
        doc = await self.states.find_one({"_id": channel})
        return None if doc is None else RetainedState.from_document(doc)
