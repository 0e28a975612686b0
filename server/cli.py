"""Command line: `wsfan [serve] [--port N] [--workers N] [--config FILE] [--host H]`.

`wsfan COMMAND ...` runs one of the tools in `COMMANDS` instead of the
server (`wsfan COMMAND --help` for each one's options).

Loads settings once, binds the port, attaches to embedded Valkey / SecantusDB
when no URL is configured (starting them unless another run.py of the same
`embedded.dir` runs them), serves until SIGTERM or SIGINT, then shuts down
cleanly. With more than one worker (`server.workers`, 0 for one per CPU core)
the processes share the port and the Redis broker. While it serves, the file
`<embedded.dir>/servers/<pid>.json` names its port (server/instances.py), so that
`run.py publish` finds it. Any start-up problem (a bad
setting or URL, an unreadable key file, a port in use, an embedded server that
cannot start) prints one line and exits with code 2, before anything is started.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from tornado.netutil import bind_sockets

from . import gc_tuning, instances
from .app.layer import check_points
from .auth.tokens import TokenVerifier
from .broker.redis_cluster_check import check_cluster_settings
from .compose import build, proxy_hooks, python_hooks
from .config import ConfigError, Settings, load_settings
from .cpu_quota import usable_cpus
from .embedded import (
    EmbeddedServerError,
    EmbeddedSet,
    Fsync,
    is_embedded_url,
    start_embedded,
)
from .facade import Server
from .logs import configure as configure_logging
from .loops import loop_factory
from .metrics import SYNC_INTERVAL, enable_multiprocess, mark_worker_dead, multiprocess_dir
from .node import Node
from .prog import prog_name
from .workers import run_workers

__all__ = ["main", "parse_args", "serve"]

log = logging.getLogger("wsfan")

EXIT_CONFIG = 2

# name -> module with `main(argv: list[str]) -> int`; imported only when used so
# the server does not load a tool's dependencies.
COMMANDS: dict[str, str] = {
    "apikey": "wsfan.store.cli",
    "loadtest": "wsfan.loadtest.cli",
    "publish": "wsfan.api.cli",
    "token": "wsfan.auth.cli",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog_name(),
        description="Run the wsfan server.",
        epilog="tools: " + ", ".join(f"{prog_name(name)} --help" for name in sorted(COMMANDS)),
    )
    parser.add_argument("--config", type=Path, help="TOML file layered over config/default.toml")
    parser.add_argument("--host", help="address to listen on (server.host)")
    parser.add_argument("--port", type=int, help="port to listen on (server.port)")
    parser.add_argument(
        "--workers", type=int, help="processes sharing the port, 0 for one per core"
    )
    return parser.parse_args(argv)


def _settings(args: argparse.Namespace) -> Settings:
    names = ("host", "port", "workers")
    flags = {"server": {k: v for k in names if (v := getattr(args, k)) is not None}}
    settings = load_settings(args.config, flags=flags)
    configure_logging(settings.log)  # before the checks below, which may warn
    _check_urls(settings)
    check_cluster_settings(settings)  # `[redis] cluster`: a cluster node that serves slots
    check_points(python_hooks(settings), settings)  # [app] handlers imports, agrees with [proxy]
    proxy_hooks(settings)  # [proxy] endpoints are http(s) URLs, its CA file reads
    if (
        not TokenVerifier.from_settings(settings.auth).enabled
        and not settings.client.allow_anonymous
    ):
        raise ConfigError(
            "auth.hmac_secret: client.allow_anonymous is false, so tokens are required, "
            "but no hmac_secret, public_key_file or jwks_file is set"
        )
    return settings


def _check_urls(settings: Settings) -> None:
    """The drivers' own URL parsers, now rather than after the servers started."""
    from pymongo.errors import PyMongoError
    from pymongo.uri_parser import parse_uri
    from redis.connection import parse_url

    for key, urls in (("redis.url", [settings.redis.url]), ("redis.shards", settings.redis.shards)):
        for redis_url in filter(None, urls):
            try:
                parse_url(redis_url)
            except ValueError as exc:
                raise ConfigError(f"{key}: {exc}") from None
    url = settings.mongo.url
    if url and not url.startswith("mongodb+srv://"):  # +srv: parsing would query DNS
        try:
            parse_uri(url)
        except (PyMongoError, ValueError) as exc:
            raise ConfigError(f"mongo.url: {exc}") from None


def worker_count(settings: Settings) -> int:
    """server.workers, with 0 meaning one per usable CPU (cores, affinity and the
    cgroup's CPU quota: server/cpu_quota.py), and one for the memory broker."""
    if settings.server.workers:
        return settings.server.workers
    return 1 if settings.broker.type == "memory" else usable_cpus()


def fsync_policy(settings: Settings) -> Fsync:
    """Embedded Valkey's appendfsync: "always" when any channel persists, so that a
    publication acknowledged with an offset survives a Valkey crash."""
    options = [settings.channels, *settings.namespaces.values()]
    return "always" if any(o.persist for o in options) else "everysec"


def _with_embedded(settings: Settings) -> tuple[Settings, EmbeddedSet | None]:
    """Attach to the embedded servers this process needs: those with no URL, and those
    whose URL names one running under `embedded.dir` (so it outlives its starter)."""
    if not settings.embedded.enabled:
        return settings, None
    var = Path(settings.embedded.dir)
    urls = {"redis": settings.redis.url, "mongo": settings.mongo.url}
    need = {k: not url or is_embedded_url(url, var, k) for k, url in urls.items()}
    need["redis"] = need["redis"] and not settings.redis.shards
    if not any(need.values()):
        return settings, None
    group = start_embedded(var, need["redis"], need["mongo"], fsync=fsync_policy(settings))
    overrides = {}
    for lease, name, key in (
        (group.redis, "Valkey", "redis"),
        (group.mongo, "SecantusDB", "mongo"),
    ):
        if lease is None:
            continue
        how = "started" if lease.started else f"shared with pid {lease.others()}"
        if urls[key]:
            how += f"; {key}.url names it"
        else:
            overrides[key] = {"url": lease.url}
        log.info(
            "embedded %s at %s (pid %d, keeper %d; %s)",
            name,
            lease.url,
            lease.pid,
            lease.keeper,
            how,
        )
    group.watch()
    return settings.with_overrides(**overrides), group


def _listen(settings: Settings) -> list[socket.socket]:
    """The listening sockets, bound before anything starts; ConfigError if it cannot."""
    host, port = settings.server.host, settings.server.port
    try:
        return bind_sockets(port, host, backlog=settings.server.backlog)
    except OSError as exc:
        raise ConfigError(
            f"server.port: cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from None


async def _watch_parent(parent: int, stop: asyncio.Event, interval: float = 1.0) -> None:
    """A worker whose supervisor died (even by SIGKILL) stops instead of living on."""
    while not stop.is_set():
        if os.getppid() != parent:
            log.warning("supervisor %d is gone; stopping", parent)
            stop.set()
            return
        await asyncio.sleep(interval)


async def _sync_metrics(node: Node) -> None:
    """Workers publish their figures to the shared metrics files on a timer."""
    while True:
        await asyncio.sleep(SYNC_INTERVAL)
        node.metrics.sync(node)


async def serve(
    settings: Settings,
    stop: asyncio.Event | None = None,
    sockets: list[socket.socket] | None = None,
    parent: int | None = None,
) -> None:
    """Serve until `stop` is set (or SIGTERM / SIGINT), then close every client with 3001.

    Listens on `sockets` when given (workers share the parent's), else binds itself;
    with `parent`, also stops when that process is no longer its parent.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watcher = None if parent is None else loop.create_task(_watch_parent(parent, stop))
    syncer = None
    server = build(settings)
    await server.start()
    gc_tuning.tune(settings.server)  # what start-up made is frozen out of the collector's walks
    if multiprocess_dir() is not None:
        syncer = loop.create_task(_sync_metrics(server.node))
    if sockets is None:
        sockets = bind_sockets(
            settings.server.port, settings.server.host, backlog=settings.server.backlog
        )
    server.add_sockets(sockets)  # the server's own application, with the listener's guards
    log.info(
        "serving on http://%s:%d (node %s)", settings.server.host, settings.server.port, server.name
    )
    try:
        await stop.wait()
    finally:
        for task in (watcher, syncer):
            if task is not None:
                task.cancel()
        await _shut_down(settings, server)


async def _shut_down(settings: Settings, server: Server) -> None:
    """Drain, then close within `server.shutdown_timeout`.

    /readyz answers 503 "draining" at once; for `server.drain_delay` the process
    still serves (so a load balancer notices first), then it stops accepting,
    sends every client 3001 (reconnect elsewhere), writes or spills the MongoDB
    queue and closes its connections. Whatever is not done in time is abandoned.
    """
    server.drain()
    timeout = settings.server.shutdown_timeout
    log.info("shutting down (drain %gs, at most %gs)", settings.server.drain_delay, timeout)
    deadline = asyncio.get_running_loop().time() + timeout
    if settings.server.drain_delay:
        await asyncio.sleep(settings.server.drain_delay)
    # Stops accepting, then: stats, node (clients get 3001), WebSockets left, HTTP, MongoDB.
    task = asyncio.ensure_future(server.close())
    remaining = deadline - asyncio.get_running_loop().time()
    done, _ = await asyncio.wait([task], timeout=max(0.0, remaining))
    if not done:
        log.warning("shutdown did not finish within %gs; exiting anyway", timeout)
        task.cancel()


def run_command(name: str, argv: list[str]) -> int:
    """Run the tool `name` from `COMMANDS` with the rest of the command line."""
    module = importlib.import_module(COMMANDS[name])
    return int(module.main(argv))


def _run(
    main: Coroutine[Any, Any, None], new_loop: Callable[[], asyncio.AbstractEventLoop]
) -> None:
    with asyncio.Runner(loop_factory=new_loop) as runner:
        runner.run(main)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in COMMANDS:
        return run_command(argv[0], argv[1:])
    if argv and argv[0] == "serve":  # `wsfan serve`; the bare form serves too
        argv = argv[1:]
    args = parse_args(argv)
    try:
        settings = _settings(args)
        new_loop = loop_factory(settings.server.event_loop)  # fails if uvloop is missing
        sockets = _listen(settings)
    except (ConfigError, ValueError) as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        settings, group = _with_embedded(settings)
    except (EmbeddedServerError, OSError) as exc:
        for sock in sockets:
            sock.close()
        print(f"cannot start: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    workers = worker_count(settings)
    # So that `run.py publish` from this checkout finds this server, whatever its port.
    instance = instances.register(
        Path(settings.embedded.dir), settings.server.host, sockets[0].getsockname()[1]
    )
    try:
        if workers == 1:
            _run(serve(settings, sockets=sockets), new_loop)
            return 0
        supervisor = os.getpid()
        metrics_dir = None
        if multiprocess_dir() is None:  # an operator's own directory is left alone
            metrics_dir = tempfile.mkdtemp(prefix="wsfan-metrics-")
            enable_multiprocess(metrics_dir)

        def worker(shared: list[socket.socket], index: int) -> int:
            _run(serve(settings, sockets=shared, parent=supervisor), new_loop)
            return 0

        try:
            return run_workers(workers, sockets, worker, on_exit=mark_worker_dead)
        finally:
            if metrics_dir is not None:
                shutil.rmtree(metrics_dir, ignore_errors=True)
    finally:
        if instance is not None:
            instance.remove()
        if group is not None:
            group.release()
