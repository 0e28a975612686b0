"""Brokers: how publications, history and presence are shared between nodes."""

from ..config import Settings
from .base import (
    Broker,
    BrokerEventHandler,
    HistoryOptions,
    HistoryQuery,
    HistoryResult,
    PresenceManager,
    PresenceStats,
)

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
    if settings.broker.type == "redis" and settings.redis.cluster:
        return _cluster_broker(settings)
    if settings.broker.type == "redis":
        redis = settings.redis
        if redis.shards:
            return _sharded(settings)
        if not redis.url:
            raise ValueError("broker.type 'redis' needs redis.url")
        return _redis(settings, redis.url)
    from .memory import MemoryBroker, MemoryPresence

    return MemoryBroker(), MemoryPresence()


def _redis(settings: Settings, url: str) -> tuple[Broker, PresenceManager]:
    """A broker and presence on the one Redis at `url`."""
    from .redis import RedisBroker, RedisPresence
    from .redis_connection import redis_client

    redis = settings.redis
    client = redis_client(url, redis.connect_timeout, redis.command_timeout, redis.max_connections)
    broker = RedisBroker(
        client,
        redis.prefix,
        redis.command_timeout,
        redis.reconnect_delay_min,
        redis.reconnect_delay_max,
        settings.log.repeat_interval,
    )
    return broker, RedisPresence(client, redis.prefix, redis.presence_ttl)


def _sharded(settings: Settings) -> tuple[Broker, PresenceManager]:
    """Client-side sharding over `redis.shards` (server/broker/sharded.py)."""
    from .sharded import ShardedBroker, ShardedPresence, shard_label

    built = [_redis(settings, url) for url in settings.redis.shards]
    labels = [shard_label(url) for url in settings.redis.shards]
    broker = ShardedBroker([b for b, _ in built], labels)
    return broker, ShardedPresence([p for _, p in built])


def _cluster_broker(settings: Settings) -> tuple[Broker, PresenceManager]:
    """`[redis] cluster = true`: the broker on the Redis Cluster `redis.url` names."""
    from typing import cast

    from redis.asyncio import Redis

    from .redis_cluster import RedisClusterBroker, cluster_client
    from .redis_presence import RedisPresence

    redis = settings.redis
    if not redis.url:
        raise ValueError("redis.cluster needs redis.url (any node of the cluster)")
    client = cluster_client(
        redis.url, redis.connect_timeout, redis.command_timeout, redis.max_connections
    )
    broker = RedisClusterBroker(
        client,
        redis.prefix,
        redis.command_timeout,
        redis.reconnect_delay_min,
        redis.reconnect_delay_max,
        settings.log.repeat_interval,
        url=redis.url,
    )
    # Presence's commands (a script, single-slot MULTI) work alike on the cluster.
    return broker, RedisPresence(cast(Redis, client), redis.prefix, redis.presence_ttl)
