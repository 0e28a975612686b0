"""Command line: `python run.py [--port N] [--workers N] [--config FILE] [--host H]`.

Loads settings once, starts embedded Valkey / SecantusDB when no URL is
configured, serves until SIGTERM or SIGINT, then shuts down cleanly. A bad
configuration prints the key at fault and exits with code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from tornado.httpserver import HTTPServer

from server.backends import Backends
from server.config import ConfigError, Settings, load_settings
from server.embedded import EmbeddedGroup, EmbeddedServerError, start_embedded
from server.node import Node
from server.web.app import make_app

__all__ = ["main", "parse_args", "serve"]

log = logging.getLogger("wsfan")

EXIT_CONFIG = 2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="run.py", description="Run the wsfan server.")
    parser.add_argument("--config", type=Path, help="TOML file layered over config/default.toml")
    parser.add_argument("--host", help="address to listen on (server.host)")
    parser.add_argument("--port", type=int, help="port to listen on (server.port)")
    parser.add_argument("--workers", type=int, help="processes sharing the port (server.workers)")
    return parser.parse_args(argv)


def _settings(args: argparse.Namespace) -> Settings:
    flags = {"server": {k: v for k in ("host", "port", "workers") if (v := getattr(args, k))}}
    settings = load_settings(args.config, flags=flags)
    if settings.server.workers > 1 and settings.broker.type == "memory":
        raise ConfigError(
            "server.workers: more than 1 worker needs a shared broker; "
            "broker.type 'memory' keeps channels inside one process"
        )
    return settings


def _with_embedded(settings: Settings) -> tuple[Settings, EmbeddedGroup | None]:
    need_redis, need_mongo = not settings.redis.url, not settings.mongo.url
    if not settings.embedded.enabled or not (need_redis or need_mongo):
        return settings, None
    group = start_embedded(Path(settings.embedded.dir), need_redis, need_mongo)
    overrides = {}
    if group.redis is not None:
        log.info("embedded Valkey at %s (pid %s)", group.redis.url, group.redis.pid)
        overrides["redis"] = {"url": group.redis.url}
    if group.mongo is not None:
        log.info("embedded SecantusDB at %s (pid %s)", group.mongo.url, group.mongo.pid)
        overrides["mongo"] = {"url": group.mongo.url}
    return settings.with_overrides(**overrides), group


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Serve until `stop` is set (or SIGTERM / SIGINT), then close every client with 3001."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    backends = Backends(settings)
    node = Node(settings)
    await node.start()
    server = HTTPServer(make_app(node, backends.checks()), xheaders=True)
    server.listen(settings.server.port, settings.server.host)
    log.info(
        "serving on http://%s:%d (node %s)", settings.server.host, settings.server.port, node.name
    )
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        server.stop()
        await node.close()
        await server.close_all_connections()
        await backends.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = _settings(args)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    logging.basicConfig(
        level=settings.log.level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings, group = _with_embedded(settings)
    except EmbeddedServerError as exc:
        log.error("%s", exc)
        return 1
    try:
        asyncio.run(serve(settings))
    finally:
        if group is not None:
            group.stop()
    return 0
