"""Settings loaded once, validated, frozen: layers, environment, cross-section rules.

Layers, later wins: the dataclass defaults (server/config/settings.py),
`config/default.toml`, the file given with `--config`, environment variables,
then command-line flags. Any
unknown key, wrong type or out-of-range value raises `ConfigError` naming the key
and what was expected; `run.py` turns that into exit code 2.

Channel options (`[channels]` and `[namespaces]`) come from one file: the
`--config` file when one is given, otherwise `config/default.toml`; a
production file never inherits the demo's open namespaces. The same holds for
`api.keys`: the default file's key is for development only. Environment
variables then adjust single keys.

Environment: `REDIS_URL` and `MONGO_URL`, plus `WSFAN_<SECTION>__<KEY>` for any
other key (`WSFAN_SERVER__PORT=9000`, `WSFAN_NAMESPACES__CHAT__PRESENCE=true`),
with the value read as a TOML value when it parses as one (and the key is not a
string key) and as a string otherwise. Names are lowercased.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, get_type_hints

from ..auth.proxies import check_networks
from ..resources import DEFAULT_CONFIG
from .settings import SECTIONS, ChannelOptions, ConfigError, Settings

__all__ = ["DEFAULT_CONFIG", "ENV_PREFIX", "apply_layer", "load_settings"]

ENV_PREFIX = "WSFAN_"
_NAMESPACE_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


_STRINGS = tuple[str, ...]
_STRING_MAP = Mapping[str, str]


def _describe(kind: Any, meta: Mapping[str, Any]) -> str:
    names = {int: "an integer", float: "a number", bool: "a boolean", str: "a string"}
    if kind == _STRING_MAP:
        return "a table of strings"
    text = "a list of strings" if kind == _STRINGS else names[kind]
    if "choices" in meta:
        return "one of " + ", ".join(repr(c) for c in meta["choices"])
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and hi is not None:
        text += f" from {lo:g} to {hi:g}"
    elif lo is not None:
        text += f" >= {lo:g}"
    return text


class _EnvText(str):
    """An environment value: text for string keys, its TOML reading for the others."""

    parsed: Any


def _strings(value: Any) -> Any:
    """A list of strings as a tuple; an environment text may list them with commas."""
    if isinstance(value, _EnvText):
        parsed = value.parsed
        if isinstance(parsed, list):
            value = parsed
        else:
            text = parsed if isinstance(parsed, str) else str(value)
            value = [part.strip() for part in text.split(",") if part.strip()]
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return None


def _string_map(value: Any) -> Any:
    """A table of strings, read-only; an environment text is a TOML inline table."""
    if isinstance(value, _EnvText):
        value = value.parsed
    if isinstance(value, Mapping) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        return MappingProxyType(dict(value))
    return None


def _value(path: str, kind: Any, meta: Mapping[str, Any], value: Any) -> Any:
    if kind == _STRING_MAP:
        table = _string_map(value)
        if table is None:
            raise ConfigError(f"{path}: expected {_describe(kind, meta)}, got {value!r}")
        return table
    if kind == _STRINGS:
        strings = _strings(value)
        if strings is None:
            raise ConfigError(f"{path}: expected {_describe(kind, meta)}, got {value!r}")
        bad = check_networks(strings) if meta.get("networks") else None
        if bad is not None:
            raise ConfigError(f"{path}: expected IP addresses or CIDR blocks, got {bad!r}")
        unknown = [v for v in strings if "choices" in meta and v not in meta["choices"]]
        if unknown:
            allowed = ", ".join(repr(c) for c in meta["choices"])
            raise ConfigError(f"{path}: expected a list of {allowed}, got {unknown[0]!r}")
        return strings
    if isinstance(value, _EnvText):
        text, parsed = str(value), value.parsed
        value = (parsed if isinstance(parsed, str) else text) if kind is str else parsed
    ok = (
        (kind is bool and type(value) is bool)
        or (kind is int and type(value) is int)
        or (kind is float and type(value) in (int, float))
        or (kind is str and isinstance(value, str))
    )
    if ok and kind in (int, float):
        lo, hi = meta.get("min"), meta.get("max")
        ok = (lo is None or value >= lo) and (hi is None or value <= hi)
    if ok and "choices" in meta:
        ok = value in meta["choices"]
    if not ok:
        raise ConfigError(f"{path}: expected {_describe(kind, meta)}, got {value!r}")
    return float(value) if kind is float else value


def _section(path: str, cls: type, data: Any, base: Any) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a table of keys, got {data!r}")
    hints = get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    for key in data:
        if key not in known:
            raise ConfigError(
                f"{path}.{key}: unknown key; expected one of {', '.join(sorted(known))}"
            )
    values = {
        key: _value(f"{path}.{key}", hints[key], known[key].metadata, value)
        for key, value in data.items()
    }
    return replace(base, **values)


def apply_layer(layer: Mapping[str, Any], base: Settings) -> Settings:
    values: dict[str, Any] = {}
    for name, data in layer.items():
        if name == "namespaces":
            if not isinstance(data, Mapping):
                raise ConfigError(f"namespaces: expected a table of namespaces, got {data!r}")
            namespaces = dict(base.namespaces)
            for ns, options in data.items():
                if not _NAMESPACE_NAME.match(ns):
                    raise ConfigError(
                        f"namespaces.{ns}: a namespace name is letters, digits, '_', '-', '.'"
                    )
                start = namespaces.get(ns, ChannelOptions())
                namespaces[ns] = _section(f"namespaces.{ns}", ChannelOptions, options, start)
                namespaces[ns].check(f"namespaces.{ns}")
            values[name] = MappingProxyType(namespaces)
        elif name in SECTIONS:
            values[name] = _section(name, SECTIONS[name], data, getattr(base, name))
            if name == "channels":
                values[name].check(name)
        else:
            known = ", ".join(sorted([*SECTIONS, "namespaces"]))
            raise ConfigError(f"{name}: unknown section; expected one of {known}")
    return replace(base, **values)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path}: not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None


def _env_value(raw: str) -> _EnvText:
    text = _EnvText(raw)
    try:
        text.parsed = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        text.parsed = raw
    return text


def _env_layer(env: Mapping[str, str]) -> dict[str, Any]:
    layer: dict[str, Any] = {}
    if "REDIS_URL" in env:
        layer.setdefault("redis", {})["url"] = env["REDIS_URL"]
    if "MONGO_URL" in env:
        layer.setdefault("mongo", {})["url"] = env["MONGO_URL"]
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        if len(parts) < 2 or not all(parts):
            raise ConfigError(f"{name}: expected {ENV_PREFIX}<SECTION>__<KEY>")
        node = layer
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = _env_value(raw)
    return layer


def load_settings(
    config_file: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Mapping[str, Any]] | None = None,
    defaults_file: Path | None = DEFAULT_CONFIG,
) -> Settings:
    """Settings from every layer, validated. Raises ConfigError naming the bad key."""
    settings = Settings()
    if defaults_file is not None:
        settings = apply_layer(_read_toml(defaults_file), settings)
    if config_file is not None:
        layer = _read_toml(Path(config_file))
        settings = replace(
            settings,
            channels=ChannelOptions(),
            namespaces=MappingProxyType({}),
            api=replace(settings.api, keys=()),  # the default file's key is for development
        )
        settings = apply_layer(layer, settings)
    settings = apply_layer(_env_layer(os.environ if env is None else env), settings)
    if flags:
        settings = apply_layer({k: dict(v) for k, v in flags.items() if v}, settings)
    _check_combinations(settings)
    return settings


def _check_combinations(settings: Settings) -> None:
    """Rules across sections, which no single key's range can express."""
    server = settings.server
    if settings.broker.type == "memory" and server.workers > 1:
        raise ConfigError(
            "server.workers: more than 1 worker needs broker.type 'redis'; "
            "the memory broker keeps channels inside one process"
        )
    if server.drain_delay + settings.persist.shutdown_timeout >= server.shutdown_timeout:
        raise ConfigError(
            "server.shutdown_timeout: must exceed server.drain_delay plus "
            "persist.shutdown_timeout, so the MongoDB queue is written or spilled before exit"
        )
    if settings.redis.cluster and settings.redis.shards:
        raise ConfigError("redis.shards: excludes redis.cluster; a Redis Cluster shards by itself")
    if (
        settings.broker.type == "redis"
        and not settings.redis.url
        and not settings.redis.shards
        and not settings.embedded.enabled
    ):
        raise ConfigError("redis.url: broker.type 'redis' needs a URL (or embedded.enabled)")
