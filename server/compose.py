"""The composition root: every object a server instance is made of, built from settings.

`build(settings)` is what the command line runs (server/cli.py) and what an
application embedding the server calls; it returns the public facade
(`server.facade.Server`). `build_node` is its core: the node with its broker,
presence, token verifier, metrics and cluster view, and the server API's cluster
commands registered. Tests use it to hand in a broker or channel log of their own.

Nothing else builds these: the node receives them (it imports neither the API
nor the web layer), and the layers above register with it here.
"""

from __future__ import annotations

from server.api.cluster_commands import ClusterCommands
from server.api.keys import ApiKeyChecker
from server.auth.tokens import TokenVerifier
from server.broker import create_broker
from server.broker.base import Broker, PresenceManager
from server.broker.memory import MemoryBroker, MemoryPresence
from server.channel_log import ChannelLog, spill_dir
from server.cluster import Cluster
from server.config import Settings
from server.facade import Server
from server.metrics import Metrics
from server.node import Node
from server.stats_channel import NodeStats
from server.store.keys import KeyStore
from server.store.mongo import MongoStore
from server.web.health import ReadinessCheck

__all__ = ["READINESS_TIMEOUT", "build", "build_node"]

READINESS_TIMEOUT = 1.0
"""MongoDB's server-selection and connect timeout: shorter than /readyz's own
limit, so the driver's real error is what /readyz reports."""


def build_node(
    settings: Settings,
    broker: Broker | None = None,
    presence: PresenceManager | None = None,
    durable: ChannelLog | None = None,
) -> Node:
    """A node whose dependencies come from settings, not started.

    `broker` and `presence` replace the ones `broker.type` names; given one half
    only, the other is the in-process one (MemoryBroker / MemoryPresence).
    `durable` is the MongoDB channel log (None: nothing is kept beyond the broker).
    """
    if broker is None and presence is None:
        broker, presence = create_broker(settings)
    broker = broker or MemoryBroker()
    node = Node(
        settings,
        broker=broker,
        presence=presence or MemoryPresence(),
        tokens=TokenVerifier.from_settings(settings.auth),
        metrics=Metrics(),
        cluster=Cluster(broker, settings.api.node_info_interval, settings.log.repeat_interval),
        durable=durable,
    )
    ClusterCommands(node).register()
    return node


def build(settings: Settings, app: object | None = None) -> Server:
    """One server instance, not started: the node, its stats channel and, when
    `mongo.url` is set, the MongoDB store with the channel log and stored API keys.

    `app` is reserved for the application layer (hooks that are yet to come);
    it is kept on the facade as `Server.app` and not used otherwise.
    """
    store = durable = None
    if settings.mongo.url:
        store = MongoStore(settings.mongo.url, settings.mongo.database, READINESS_TIMEOUT)
        durable = ChannelLog(
            store, settings.persist, spill_dir(settings), settings.log.repeat_interval
        )
    node = build_node(settings, durable=durable)
    readiness: dict[str, ReadinessCheck] = {}
    if settings.broker.type == "redis":
        readiness["redis"] = node.broker.ping
    if store is not None:
        readiness["mongo"] = store.ping
    lookup = KeyStore(store).verify if store is not None else None
    return Server(
        node,
        stats=NodeStats(node),
        store=store,
        readiness=readiness,
        api_keys=ApiKeyChecker(settings.api.keys, lookup),
        app=app,
    )
