"""Settings: loaded once, validated, frozen (see `loading` for the layers and
`settings` for every key). Import from here."""

from .loading import DEFAULT_CONFIG, ENV_PREFIX, load_settings
from .settings import (
    ApiSettings,
    AppSettings,
    AuthSettings,
    BrokerSettings,
    ChannelOptions,
    ClientSettings,
    ConfigError,
    EmbeddedSettings,
    LogSettings,
    MongoSettings,
    PersistSettings,
    ProxySettings,
    RedisSettings,
    ServerSettings,
    Settings,
    StatsSettings,
    TransportsSettings,
)

__all__ = [
    "DEFAULT_CONFIG",
    "ENV_PREFIX",
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
    "TransportsSettings",
    "load_settings",
]
