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

__all__ = [
    "Broker",
    "BrokerEventHandler",
    "HistoryOptions",
    "HistoryQuery",
    "HistoryResult",
    "PresenceManager",
    "PresenceStats",
]
