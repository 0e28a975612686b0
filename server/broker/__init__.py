"""Brokers: how publications, history and presence are shared between nodes."""

from server.broker.base import (
    Broker,
    BrokerEventHandler,
    HistoryOptions,
    HistoryQuery,
    HistoryResult,
    PresenceManager,
    PresenceStats,
)
from server.config import Settings

__all__ = [
    "Broker",
    "BrokerEventHandler",
    "HistoryOptions",
    "HistoryQuery",
    "HistoryResult",
    "PresenceManager",
    "PresenceStats",
    "create_broker",
]


def create_broker(settings: Settings) -> tuple[Broker, PresenceManager]:
    """The broker and presence manager `broker.type` names, built from settings."""
    if settings.broker.type == "redis":
        from server.broker.redis import RedisBroker, RedisPresence, redis_client

        redis = settings.redis
        if not redis.url:
            raise ValueError("broker.type 'redis' needs redis.url")
        client = redis_client(
            redis.url, redis.connect_timeout, redis.command_timeout, redis.max_connections
        )
        broker = RedisBroker(
            client,
            redis.prefix,
            redis.command_timeout,
            redis.reconnect_delay_min,
            redis.reconnect_delay_max,
            settings.log.repeat_interval,
        )
        return broker, RedisPresence(client, redis.prefix, redis.presence_ttl)
    from server.broker.memory import MemoryBroker, MemoryPresence

    return MemoryBroker(), MemoryPresence()
