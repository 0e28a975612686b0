"""The composition root: every object a server instance is made of, built from settings.

`build(settings)` is what the command line runs (server/cli.py) and what an
application embedding the server calls; it returns the public facade
(`wsfan.facade.Server`). `build_node` is its core: the node with its broker,
presence, token verifier, metrics and cluster view, and the server API's cluster
commands registered. Tests use it to hand in a broker or channel log of their own.

Nothing else builds these: the node receives them (it imports neither the API
nor the web layer), and the layers above register with it here.
"""

from __future__ import annotations

from .api.cluster_commands import ClusterCommands
from .api.keys import ApiKeyChecker
from .app.channel_services import attach
from .app.hooks import HookPoint, Hooks
from .app.layer import AppLayer
from .app.proxy import ProxyHooks
from .app.python_hooks import PythonHooks, load_app
from .auth.tokens import TokenVerifier
from .broker import create_broker
from .broker.base import Broker, PresenceManager
from .broker.memory import MemoryBroker, MemoryPresence
from .channel_log import ChannelLog, spill_dir
from .cluster import Cluster
from .config import ConfigError, Settings
from .facade import Server
from .metrics import Metrics
from .node import Node
from .stats_channel import NodeStats
from .store.keys import KeyStore
from .store.mongo import MongoStore
from .web.health import Advisory, ReadinessCheck

__all__ = [
    "READINESS_TIMEOUT",
    "app_layer",
    "build",
    "build_node",
    "proxy_hooks",
    "python_hooks",
]

READINESS_TIMEOUT = 1.0
"""MongoDB's server-selection and connect timeout: shorter than /readyz's own
limit, so the driver's real error is what /readyz reports."""


def build_node(
    settings: Settings,
    broker: Broker | None = None,
    presence: PresenceManager | None = None,
    durable: ChannelLog | None = None,
    app: object | None = None,
    proxy: Hooks | None = None,
) -> Node:
    """A node whose dependencies come from settings, not started.

    `broker` and `presence` replace the ones `broker.type` names; given one half
    only, the other is the in-process one (MemoryBroker / MemoryPresence).
    `durable` is the MongoDB channel log (None: nothing is kept beyond the broker).
    `app` and `proxy`: see `app_layer`. ConfigError for a bad `[app] handlers`,
    or a Python hook and a proxy endpoint for the same point.
    """
    metrics = Metrics()
    layer = app_layer(settings, metrics, app, proxy)
    if broker is None and presence is None:
        broker, presence = create_broker(settings)
    broker = broker or MemoryBroker()
    node = Node(
        settings,
        broker=broker,
        presence=presence or MemoryPresence(),
        tokens=TokenVerifier.from_settings(settings.auth),
        metrics=metrics,
        cluster=Cluster(broker, settings.api.node_info_interval, settings.log.repeat_interval),
        app=layer,
        durable=durable,
    )
    ClusterCommands(node).register()
    python = layer.python
    if python is not None:
        try:
            layer.services = attach(
                node, python.channel_occupied, python.channel_vacated, python.sources
            )
        except ValueError as exc:  # a malformed source pattern
            raise ConfigError(f"app.handlers: {exc}") from None
    return node


def app_layer(
    settings: Settings, metrics: Metrics, app: object | None = None, proxy: Hooks | None = None
) -> AppLayer:
    """The application layer: Python hooks from `app` (an object passed when
    embedding) or else the object `[app] handlers` names; `proxy`, the HTTP
    proxy's hooks (None: no proxy; `build` makes them from `[proxy]`: `proxy_hooks`)."""
    return AppLayer(python_hooks(settings, app), proxy, settings, metrics)


def python_hooks(settings: Settings, app: object | None = None) -> PythonHooks | None:
    """The hooks of `app`, or of the object `[app] handlers` names (None: neither);
    ConfigError for a bad `[app] handlers`. (`AppLayer` refuses a point also given
    a proxy endpoint: `check_points`.)"""
    if app is None and settings.app.handlers:
        app = load_app(settings.app.handlers)
    return PythonHooks(app) if app is not None else None


def proxy_hooks(settings: Settings) -> ProxyHooks | None:
    """The HTTP proxy's hooks when any `[proxy] <point>_endpoint` is set (else
    None); ConfigError naming the key for an endpoint or CA file that cannot be used."""
    proxy = settings.proxy
    if not any(proxy.endpoint_of(point.proxy_name) for point in HookPoint):
        return None
    try:
        return ProxyHooks(proxy, settings.client.max_data_depth)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def broker_readiness(broker: Broker) -> ReadinessCheck:
    """/readyz's broker check: fails only when no shard answers, reports each shard."""

    async def check() -> dict[str, str]:
        await broker.ping()
        return await broker.shard_states()

    return check


def build(settings: Settings, app: object | None = None) -> Server:
    """One server instance, not started: the node, its stats channel and, when
    `mongo.url` is set, the MongoDB store with the channel log and stored API keys.

    `app` is the application object whose methods are hooks (wsfan.app); without
    it, `[app] handlers` names one. It is kept on the facade as `Server.app`.
    ConfigError: see `build_node`.
    """
    store = durable = None
    if settings.mongo.url:
        store = MongoStore(settings.mongo.url, settings.mongo.database, READINESS_TIMEOUT)
        durable = ChannelLog(
            store, settings.persist, spill_dir(settings), settings.log.repeat_interval
        )
    node = build_node(settings, durable=durable, app=app, proxy=proxy_hooks(settings))
    # Known cluster-wide first: /emulation requests for this node are forwarded then.
    readiness: dict[str, ReadinessCheck] = {"cluster": node.cluster.check_heard}
    if settings.broker.type == "redis":
        readiness["redis"] = broker_readiness(node.broker)
    if store is not None:
        readiness["mongo"] = Advisory(store.ping)
    lookup = KeyStore(store).verify if store is not None else None
    return Server(
        node,
        stats=NodeStats(node),
        store=store,
        readiness=readiness,
        api_keys=ApiKeyChecker(settings.api.keys, lookup),
        app=node.app.python.app if node.app.python is not None else None,
    )
