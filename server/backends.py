"""Connections to the backing servers a node uses, and their readiness checks."""

from __future__ import annotations

from redis.asyncio import Redis

from server.config import Settings
from server.store.mongo import MongoStore
from server.web.health import ReadinessCheck

__all__ = ["Backends"]


class Backends:
    """Redis and MongoDB clients built from settings; either is absent when its URL is empty."""

    def __init__(self, settings: Settings, timeout: float = 1.0) -> None:
        # Shorter than /readyz's own limit, so the driver's real error is what it reports.
        self.redis: Redis | None = None
        self.mongo: MongoStore | None = None
        if settings.redis.url:
            self.redis = Redis.from_url(
                settings.redis.url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
        if settings.mongo.url:
            self.mongo = MongoStore(settings.mongo.url, settings.mongo.database, timeout)

    def checks(self) -> dict[str, ReadinessCheck]:
        checks: dict[str, ReadinessCheck] = {}
        if self.redis is not None:
            redis = self.redis

            async def redis_ping() -> None:
                await redis.ping()

            checks["redis"] = redis_ping
        if self.mongo is not None:
            checks["mongo"] = self.mongo.ping
        return checks

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()
        if self.mongo is not None:
            await self.mongo.close()
