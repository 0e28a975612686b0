"""The settings schema: one frozen dataclass per section, each key's type,
default and range (in its field metadata), and `ChannelOptions` of a namespace.
Loading and checking them is server/config/loading.py's."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ..loops import LOOP_CHOICES

__all__ = [
    "NAMESPACE_SEPARATOR",
    "SECTIONS",
    "ApiSettings",
    "AppSettings",
    "AuthSettings",
    "BrokerSettings",
    "ChannelOptions",
    "ClientSettings",
    "ConfigError",
    "EmbeddedSettings",
    "LogSettings",
    "MongoSettings",
    "PersistSettings",
    "ProxySettings",
    "RedisSettings",
    "ServerSettings",
    "Settings",
    "StatsSettings",
]

NAMESPACE_SEPARATOR = ":"


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names the key."""


def _range(lo: float | None = None, hi: float | None = None) -> dict[str, Any]:
    return {"min": lo, "max": hi}


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = field(default=8888, metadata=_range(1, 65535))
    workers: int = field(default=1, metadata=_range(0, 256))  # 0: one per CPU core
    name: str = ""  # node name in info and logs; empty means host:pid
    # WebSocket connections per process; handshakes beyond answer HTTP 503.
    max_connections: int = field(default=10000, metadata=_range(1))
    # Connections the kernel queues before the server accepts them (capped by the
    # kernel's net.core.somaxconn); a full queue drops connects, which retry after 1 s.
    backlog: int = field(default=1024, metadata=_range(1, 65535))
    shutdown_timeout: float = field(default=10.0, metadata=_range(0.1))  # SIGTERM to exit
    drain_delay: float = field(default=0.0, metadata=_range(0))  # /readyz 503 before closing
    # auto: uvloop when installed (the `fast` extra), else asyncio's own loop.
    event_loop: str = field(default="auto", metadata={"choices": LOOP_CHOICES})
    # The cyclic garbage collector (server/gc_tuning.py): objects made at start-up
    # are frozen out of its walks, and it runs every `gc_threshold` net
    # allocations (Python's default: 700; 0 keeps Python's).
    gc_freeze: bool = True
    gc_threshold: int = field(default=10000, metadata=_range(0, 10_000_000))
    # Seconds a new connection may take to send its whole request head (then closed).
    head_timeout: float = field(default=10.0, metadata=_range(0.01))
    # Seconds a keep-alive HTTP connection may sit idle between requests (and a
    # request body may take).
    idle_timeout: float = field(default=30.0, metadata=_range(0.01))
    # Accepted sockets that have not upgraded to WebSocket yet (HTTP requests in
    # progress, handshakes); beyond, the one waiting longest for its request head
    # is closed (see server/web/pending.py).
    max_pending_connections: int = field(default=1024, metadata=_range(1))
    # Peers whose X-Forwarded-For / X-Real-Ip / X-Forwarded-Proto headers are believed
    # (exact addresses or CIDR blocks); from anyone else they are ignored.
    trusted_proxies: tuple[str, ...] = field(
        default=("127.0.0.1", "::1"), metadata={"networks": True}
    )


@dataclass(frozen=True, slots=True)
class ClientSettings:
    ping_interval: float = field(default=25.0, metadata=_range(0.01))
    pong_timeout: float = field(default=8.0, metadata=_range(0.01))
    stale_timeout: float = field(default=10.0, metadata=_range(0.01))
    max_frame_bytes: int = field(default=65536, metadata=_range(64))
    max_channels: int = field(default=128, metadata=_range(1))
    max_channel_length: int = field(default=255, metadata=_range(1, 65535))
    history_max_limit: int = field(default=1000, metadata=_range(1))
    recovery_max_limit: int = field(default=1000, metadata=_range(1))
    max_data_depth: int = field(default=64, metadata=_range(1, 512))
    allow_anonymous: bool = True  # connect without a token
    # WebSocket Origin allow-list: exact origins or `*` patterns; empty means same
    # origin only. Requests without an Origin header (non-browser clients) pass.
    allowed_origins: tuple[str, ...] = ()
    command_rate: float = field(default=100.0, metadata=_range(0))  # per second; 0: no limit
    command_burst: int = field(default=200, metadata=_range(1))
    # More rejected (error 111) commands than this within the window closes with 3013.
    max_rejected_commands: int = field(default=50, metadata=_range(1))
    rejected_commands_window: float = field(default=10.0, metadata=_range(0.01))
    max_connections_per_ip: int = field(default=0, metadata=_range(0))  # per process; 0: none
    max_connections_per_user: int = field(default=0, metadata=_range(0))  # 0: none
    # Where max_connections_per_user counts: "process" (this process's connections)
    # or "cluster" (every instance's, through leases in Redis that expire
    # redis.presence_ttl after their instance stops renewing them; with the memory
    # broker the process is the cluster).
    max_connections_per_user_scope: str = field(
        default="process", metadata={"choices": ("process", "cluster")}
    )
    # The one outgoing budget of a connection: bytes queued for it, held back, and
    # written but not yet taken by its socket. A client past it is closed with 3008
    # (slow) instead of holding memory or anyone's delivery.
    max_unsent_bytes: int = field(default=1048576, metadata=_range(1024))
    # Seconds a flush to many connections (a fan-out) holds the next one back. Under
    # load what queues for a connection meanwhile shares one frame (fewer writes, at
    # most this much added latency); after a quiet spell messages go out at once.
    write_interval: float = field(default=0.02, metadata=_range(0.0, 1.0))
    # Fragments of one incoming message (continuation frames); beyond: close 1009.
    max_fragments: int = field(default=128, metadata=_range(1))
    # A history reply (or recovery) is cut before this many encoded bytes (or
    # max_unsent_bytes, when smaller: one answer always fits the outgoing budget).
    max_reply_bytes: int = field(default=524288, metadata=_range(1024))
    # Frames per second a connection's socket is read at (control frames and
    # fragments count), up to frame_burst at once; beyond, it is read more slowly
    # (nothing is refused). Bounds the CPU one client costs; 0: no limit.
    frame_rate: float = field(default=1000.0, metadata=_range(0))
    frame_burst: int = field(default=1000, metadata=_range(1))

    @property
    def reply_bytes(self) -> int:
        """The size a history or recovery answer stays under."""
        return min(self.max_reply_bytes, self.max_unsent_bytes)


@dataclass(frozen=True, slots=True)
class ChannelOptions:
    """What a namespace allows. Declared namespaces start from these (closed) defaults."""

    history_size: int = field(default=0, metadata=_range(0))
    history_ttl: float = field(default=300.0, metadata=_range(0.001))
    history_meta_ttl: float = field(default=30 * 86400.0, metadata=_range(0.001))
    recovery: bool = True  # subscriptions are recoverable when history is kept
    presence: bool = False
    join_leave: bool = False
    # Join and leave pushes stop while a channel has more subscribers than this on
    # the instance delivering them (its local count); presence still answers. 0: no limit.
    join_leave_max_subscribers: int = field(default=0, metadata=_range(0))
    allow_subscribe: bool = True
    allow_publish: bool = False  # clients may publish (the server API always may)
    allow_history: bool = True
    allow_presence: bool = True
    allow_anonymous: bool = False  # users without an identity may use the namespace
    # Durable log in MongoDB (needs history_size > 0: offsets identify publications).
    persist: bool = False
    persist_ttl: float = field(default=30 * 86400.0, metadata=_range(0))  # 0: keep forever
    # Every new subscriber gets the channel's latest publication (or the state set
    # through the API) in its subscribe reply; needs persist.
    retained: bool = False
    # Subscribing needs a subscription token for the channel and user; publish,
    # history and presence then need that subscription too.
    require_sub_token: bool = False
    # The HTTP proxy's subscribe / publish / sub_refresh endpoint decides for
    # these channels, whatever allow_subscribe / allow_publish say ([proxy]).
    subscribe_proxy: bool = False
    publish_proxy: bool = False
    sub_refresh_proxy: bool = False

    @property
    def recoverable(self) -> bool:
        return self.recovery and self.history_size > 0

    def check(self, path: str) -> None:
        """Cross-key rules a single key's range cannot express."""
        if self.persist and self.history_size == 0:
            raise ConfigError(f"{path}.persist: needs history_size > 0 (offsets identify rows)")
        if self.retained and not self.persist:
            raise ConfigError(f"{path}.retained: needs persist = true")


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    type: str = field(default="memory", metadata={"choices": ("memory", "redis")})


@dataclass(frozen=True, slots=True)
class RedisSettings:
    url: str = ""  # empty: run.py starts an embedded Valkey
    prefix: str = "wsfan"  # every key and pub/sub channel starts with it
    connect_timeout: float = field(default=2.0, metadata=_range(0.01))
    command_timeout: float = field(default=5.0, metadata=_range(0.01))
    max_connections: int = field(default=32, metadata=_range(2, 10000))  # per process
    reconnect_delay_min: float = field(default=0.05, metadata=_range(0.001))
    reconnect_delay_max: float = field(default=5.0, metadata=_range(0.001))
    presence_ttl: float = field(default=60.0, metadata=_range(0.1))
    presence_update_interval: float = field(default=25.0, metadata=_range(0.05))
    # `url` names any node of a Redis Cluster: channels go to the shard owning their
    # slot, subscriptions use sharded pub/sub (SSUBSCRIBE). Excludes `shards`.
    cluster: bool = False
    # Independent Redis servers, channels spread over them by a jump hash of the
    # channel name (client-side sharding); `url` is then unused. Excludes `cluster`.
    shards: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MongoSettings:
    url: str = ""  # empty: run.py starts an embedded SecantusDB
    database: str = "wsfan"


@dataclass(frozen=True, slots=True)
class PersistSettings:
    """The queue between fan-out and MongoDB: bounded memory, then a spill file."""

    batch_size: int = field(default=500, metadata=_range(1, 100000))  # documents per write
    flush_interval: float = field(default=0.05, metadata=_range(0.001))  # seconds
    queue_max: int = field(default=50000, metadata=_range(1))  # held in memory, then spilled
    write_timeout: float = field(default=5.0, metadata=_range(0.01))
    retry_delay_max: float = field(default=5.0, metadata=_range(0.01))
    shutdown_timeout: float = field(default=5.0, metadata=_range(0))  # flush before spilling
    spill_dir: str = ""  # empty: <embedded.dir>/spill
    read_timeout: float = field(default=2.0, metadata=_range(0.01))  # history and state reads
    # Publications a persisted channel's log may fall behind its broker stream;
    # beyond, publishing to that channel answers 100 (not acknowledged) until it
    # catches up. Channels that do not persist are never affected.
    max_lag: int = field(default=10000, metadata=_range(1))
    # Seconds between sweeps for persisted channels whose log stopped advancing
    # (a publisher that died or lost the broker's answer); they are filled from
    # the broker's stream.
    sweep_interval: float = field(default=2.0, metadata=_range(0.01))


@dataclass(frozen=True, slots=True)
class EmbeddedSettings:
    enabled: bool = True
    dir: str = "var"


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """How connection and subscription tokens (JWT) are verified.

    HS256 tokens verify with `hmac_secret`; RS256 / ES256 ones with the PEM public
    key in `public_key_file` or the matching key of `jwks_file`. With none of them
    set, tokens cannot be verified and a connect with a token closes with 3500.
    """

    hmac_secret: str = ""
    public_key_file: str = ""
    jwks_file: str = ""
    audience: str = ""  # when set, tokens must carry this `aud`
    issuer: str = ""  # when set, tokens must carry this `iss`
    # Time after a token's `exp` in which a refresh is still accepted before the
    # connection closes with 3005 (or the subscription ends with 2501).
    expired_close_delay: float = field(default=25.0, metadata=_range(0))


@dataclass(frozen=True, slots=True)
class StatsSettings:
    """Each node publishes its numbers into `channel` every `interval` seconds (0: never)."""

    interval: float = field(default=1.0, metadata=_range(0, 3600))
    channel: str = "sys:stats"


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """The server HTTP API (`POST /api/<method>`).

    With no key configured (and no key store wired in) every request answers 401.
    A `--config` file never inherits `keys` from config/default.toml, whose key is
    for development only.
    """

    keys: tuple[str, ...] = ()
    max_body_bytes: int = field(default=1048576, metadata=_range(64))
    max_batch_commands: int = field(default=1000, metadata=_range(1))
    max_broadcast_channels: int = field(default=1000, metadata=_range(1))
    # A publish repeating an idempotency_key within this window is answered with
    # the first one's result and not delivered again.
    idempotency_window: float = field(default=300.0, metadata=_range(0.001))
    # `channels` waits this long at most for every node's answer.
    survey_timeout: float = field(default=3.0, metadata=_range(0.01))
    # Nodes announce themselves this often; `info` forgets one silent for 3 intervals.
    node_info_interval: float = field(default=3.0, metadata=_range(0.01))


@dataclass(frozen=True, slots=True)
class LogSettings:
    level: str = field(default="info", metadata={"choices": ("debug", "info", "warning", "error")})
    format: str = field(
        default="text", metadata={"choices": ("text", "json")}
    )  # json: one object a line
    # A failure that repeats is logged once per this many seconds, with a count.
    repeat_interval: float = field(default=10.0, metadata=_range(0.01))


@dataclass(frozen=True, slots=True)
class AppSettings:
    """The application's Python hooks (server/app)."""

    handlers: str = ""  # "package.module:object"; empty: no Python hooks
    timeout: float = field(default=5.0, metadata=_range(0.001))  # one hook call, at most
    # A channel's last subscriber left this long ago: channel_vacated.
    vacate_delay: float = field(default=5.0, metadata=_range(0))
    # A channel source's instance died: another runs it within this time.
    source_takeover: float = field(default=10.0, metadata=_range(0.1))
    # A node's claim on its channels' occupancy, renewed every third of it: a node
    # that died has its channels vacated within this + vacate_delay + 2 sweeps.
    occupancy_lease: float = field(default=10.0, metadata=_range(0.03))
    occupancy_sweep_interval: float = field(default=1.0, metadata=_range(0.01))
    # The event loop held this long by one step: the watchdog names the hook.
    loop_lag_warning: float = field(default=0.5, metadata=_range(0.01))


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """Centrifugo-compatible HTTP proxy hooks; an empty endpoint is not proxied."""

    connect_endpoint: str = ""
    refresh_endpoint: str = ""
    subscribe_endpoint: str = ""
    publish_endpoint: str = ""
    sub_refresh_endpoint: str = ""
    rpc_endpoint: str = ""
    timeout: float = field(default=1.0, metadata=_range(0.001))  # every endpoint's default
    # Per-endpoint timeouts; 0: `timeout`.
    connect_timeout: float = field(default=0.0, metadata=_range(0))
    refresh_timeout: float = field(default=0.0, metadata=_range(0))
    subscribe_timeout: float = field(default=0.0, metadata=_range(0))
    publish_timeout: float = field(default=0.0, metadata=_range(0))
    sub_refresh_timeout: float = field(default=0.0, metadata=_range(0))
    rpc_timeout: float = field(default=0.0, metadata=_range(0))
    # Handshake headers forwarded to the backend, e.g. ["Cookie", "Authorization"].
    http_headers: tuple[str, ...] = ()
    # Headers sent with every proxy request, e.g. {"X-Api-Key" = "..."}.
    static_http_headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    max_connections: int = field(default=64, metadata=_range(1, 10000))  # concurrent requests
    ca_file: str = ""  # extra CA bundle for https endpoints; empty: the system's
    # A longer answer from the backend is a failure (error 100), read no further.
    max_response_bytes: int = field(default=1048576, metadata=_range(64))
    # A failed refresh is tried again after this long (the connection stays).
    refresh_retry_interval: float = field(default=10.0, metadata=_range(0.01))

    def timeout_of(self, point: str) -> float:
        """The timeout of `point`'s endpoint ("connect", "sub_refresh", ...)."""
        return float(getattr(self, f"{point}_timeout")) or self.timeout

    def endpoint_of(self, point: str) -> str:
        return str(getattr(self, f"{point}_endpoint"))


@dataclass(frozen=True, slots=True)
class TransportsSettings:
    """The endpoints besides `/connection/websocket` (server/web/streams.py).
    The bidirectional ones (with `/emulation`) are on unless turned off; the
    unidirectional ones are off unless turned on. All of them speak JSON only."""

    http_stream: bool = True  # POST /connection/http_stream (+ /emulation)
    sse: bool = True  # GET /connection/sse (+ /emulation)
    uni_sse: bool = False  # GET /connection/uni_sse
    uni_http_stream: bool = False  # POST /connection/uni_http_stream
    uni_websocket: bool = False  # /connection/uni_websocket
    # A connect body (http_stream, uni_http_stream) or an /emulation body over this: 413.
    max_request_body_bytes: int = field(default=65536, metadata=_range(64, 16 * 1048576))
    # /emulation requests per second from one address (a burst of twice that); 0: no limit.
    emulation_rate: float = field(default=50.0, metadata=_range(0))
    # One /emulation request waits this long for the instance holding its stream.
    emulation_timeout: float = field(default=3.0, metadata=_range(0.01))
    # CORS preflight answers may be cached by browsers this long (seconds).
    cors_max_age: int = field(default=600, metadata=_range(0))


SECTIONS: dict[str, type] = {
    "server": ServerSettings,
    "client": ClientSettings,
    "channels": ChannelOptions,
    "broker": BrokerSettings,
    "redis": RedisSettings,
    "mongo": MongoSettings,
    "persist": PersistSettings,
    "embedded": EmbeddedSettings,
    "auth": AuthSettings,
    "stats": StatsSettings,
    "api": ApiSettings,
    "log": LogSettings,
    "app": AppSettings,
    "proxy": ProxySettings,
    "transports": TransportsSettings,
}


@dataclass(frozen=True, slots=True)
class Settings:
    server: ServerSettings = ServerSettings()
    client: ClientSettings = ClientSettings()
    channels: ChannelOptions = ChannelOptions()  # channels with no namespace
    namespaces: Mapping[str, ChannelOptions] = field(default_factory=lambda: MappingProxyType({}))
    broker: BrokerSettings = BrokerSettings()
    redis: RedisSettings = RedisSettings()
    mongo: MongoSettings = MongoSettings()
    persist: PersistSettings = PersistSettings()
    embedded: EmbeddedSettings = EmbeddedSettings()
    auth: AuthSettings = AuthSettings()
    stats: StatsSettings = StatsSettings()
    api: ApiSettings = ApiSettings()
    log: LogSettings = LogSettings()
    app: AppSettings = AppSettings()
    proxy: ProxySettings = ProxySettings()
    transports: TransportsSettings = TransportsSettings()

    def channel_options(self, channel: str) -> ChannelOptions | None:
        """Options of the channel's namespace; None when the namespace is unknown."""
        namespace, sep, _ = channel.partition(NAMESPACE_SEPARATOR)
        if not sep:
            return self.channels
        return self.namespaces.get(namespace)

    def with_overrides(self, **sections: Mapping[str, Any]) -> Settings:
        """A copy with some keys replaced, validated like any other layer (tests use it)."""
        from .loading import apply_layer  # the loader imports this module

        return apply_layer({name: dict(v) for name, v in sections.items()}, base=self)
