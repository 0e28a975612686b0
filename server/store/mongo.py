"""MongoDB through Motor: the connection, and (later) the publication log and keys."""

from __future__ import annotations

import asyncio
from typing import Any

from motor.motor_asyncio import AsyncIOMotorClient

__all__ = ["MongoStore"]


class MongoStore:
    """One Motor client for the node; connecting is lazy, so a down MongoDB never
    blocks start-up or delivery, and `ping` reports it."""

    def __init__(self, url: str, database: str, timeout: float = 2.0) -> None:
        ms = int(timeout * 1000)
        self._client: AsyncIOMotorClient[Any] = AsyncIOMotorClient(
            url, serverSelectionTimeoutMS=ms, connectTimeoutMS=ms, tz_aware=True
        )
        self.db = self._client[database]

    async def ping(self) -> None:
        """Raises when MongoDB cannot be reached within the timeout."""
        await self._client.admin.command("ping")

    async def close(self) -> None:
        # Motor's close() waits for a server lookup in progress: off the event loop.
        await asyncio.to_thread(self._client.close)
