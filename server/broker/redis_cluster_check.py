"""Start-up checks of `[redis] cluster = true`: is `redis.url` a node of a Redis
Cluster, and which slots are served?

- not a cluster (cluster support disabled), or no slot served at all:
  `ClusterConfigError` (a ConfigError: the command line exits with code 2);
- some slots not served: a warning; the broker serves the channels of the others
  (run the cluster with `cluster-require-full-coverage no`, so its nodes do too);
- the node cannot be reached: a warning; the broker keeps trying (as a single
  Redis broker does), so instances can start during an outage.

`check_cluster_settings` runs from the command line before anything starts;
`RedisClusterBroker.start` runs `check_cluster` itself for embedded use.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
import redis.asyncio
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..config import ConfigError, Settings

__all__ = [
    "SLOTS",
    "ClusterConfigError",
    "check_cluster",
    "check_cluster_settings",
    "check_cluster_sync",
    "covered_slots",
]

log = logging.getLogger(__name__)

SLOTS = 16384


class ClusterConfigError(ConfigError):
    """`redis.url` does not name a usable Redis Cluster."""


def covered_slots(cluster_slots: Any) -> int:
    """How many slots a CLUSTER SLOTS answer says are served."""
    return sum(int(entry[1]) - int(entry[0]) + 1 for entry in cluster_slots)


def _assess(url: str, error: ResponseError | None, cluster_slots: Any) -> int:
    """Raise ClusterConfigError or warn, from what the node answered; the count of
    slots served."""
    if error is not None:
        if "disabled" in str(error).lower() or "unknown" in str(error).lower():
            raise ClusterConfigError(
                f"redis.url: {url} is not a Redis Cluster node (cluster support is "
                "disabled there); set redis.cluster = false, or name a cluster node"
            )
        raise ClusterConfigError(f"redis.url: {url} answered CLUSTER SLOTS with {error}")
    served = covered_slots(cluster_slots)
    if served == 0:
        raise ClusterConfigError(
            f"redis.url: the Redis Cluster at {url} serves no slot (none is assigned)"
        )
    if served < SLOTS:
        log.warning(
            "Redis Cluster at %s serves %d of %d slots: channels in the others answer "
            "errors until they are served (run it with cluster-require-full-coverage no)",
            url,
            served,
            SLOTS,
        )
    return served


def check_cluster_sync(url: str, timeout: float) -> int | None:
    """The check, blocking: slots served, or None when the node cannot be reached."""
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        try:
            answer = client.execute_command("CLUSTER", "SLOTS")
        except ResponseError as exc:
            return _assess(url, exc, None)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            log.warning("Redis Cluster at %s not reachable yet: %s", url, exc)
            return None
        return _assess(url, None, answer)
    finally:
        client.close()


async def check_cluster(url: str, timeout: float) -> int | None:
    """The check: slots served, or None when the node cannot be reached."""
    client = redis.asyncio.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout
    )
    try:
        try:
            answer = await client.execute_command("CLUSTER", "SLOTS")
        except ResponseError as exc:
            return _assess(url, exc, None)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            log.warning("Redis Cluster at %s not reachable yet: %s", url, exc)
            return None
        return _assess(url, None, answer)
    finally:
        await client.aclose()


def check_cluster_settings(settings: Settings) -> None:
    """For the command line: ClusterConfigError unless `redis.url` names a cluster
    node that serves some slots (nothing to check without `redis.cluster`)."""
    if settings.broker.type != "redis" or not settings.redis.cluster:
        return
    if not settings.redis.url:
        raise ClusterConfigError(
            "redis.url: redis.cluster needs the URL of a Redis Cluster node "
            "(an embedded Valkey is a single node)"
        )
    check_cluster_sync(settings.redis.url, settings.redis.connect_timeout)
