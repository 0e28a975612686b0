"""The subscriber role of a worker process: connect a share of the clients, hold
them, churn some, and report what they received."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .client import MultiSubscriber, Pool, Receiver, Stats, Subscriber
from .metrics import Recorder
from .options import Options
from .streams import EMULATION_CONNECTIONS, StreamPool, StreamSubscriber
from .wire import Codec, mint_token
from .worker import STATUS_INTERVAL, WorkerIO

__all__ = ["run_subscribers", "stats_body"]


def _token_factory(options: Options) -> Any:
    if not options.token_secret:
        return lambda index: ""
    return lambda index: mint_token(options.token_secret, f"loadtest-{index}", options.token_ttl)


def status_body(stats: Stats, now_ns: int) -> dict[str, Any]:
    return {
        "connected": stats.connected,
        "subscribed": stats.subscribed,
        "deliveries": stats.deliveries,
        "gaps": stats.gaps,
        "duplicates": stats.duplicates,
        "errors": sum(stats.errors.values()),
        "latency": Recorder.to_wire(stats.latency.take_closed(now_ns)),
    }


def stats_body(stats: Stats) -> dict[str, Any]:
    """Everything a subscriber worker measured, for its final report."""
    return {
        "deliveries": stats.deliveries,
        "recovered_publications": stats.recovered_publications,
        "gaps": stats.gaps,
        "duplicates": stats.duplicates,
        "epoch_changes": stats.epoch_changes,
        "foreign": stats.foreign,
        "negative_latency": stats.negative_latency,
        "reconnects": stats.reconnects,
        "resubscribes": stats.resubscribes,
        "unsubscribes": stats.unsubscribes,
        "recovered": stats.recovered,
        "not_recovered": stats.not_recovered,
        "connect": stats.connect.to_dict(),
        "subscribe": stats.subscribe.to_dict(),
        "latency": Recorder.to_wire(stats.latency.take_all()),
        "last_delivery": stats.latency.last_seconds(),
        "errors": stats.errors,
        "close_codes": stats.close_codes,
        "subscribed": stats.subscribed,
    }


async def _report(io: WorkerIO, stats: Stats) -> None:
    while True:
        await asyncio.sleep(STATUS_INTERVAL)
        io.emit("status", **status_body(stats, time.time_ns()))


async def _connect_all(pool: Pool, options: Options, workers: int, io: WorkerIO) -> None:
    """Open every client at this worker's share of the ramp, `connect_concurrency` at a time."""
    loop = asyncio.get_running_loop()
    rate = options.ramp / workers if options.ramp else 0.0
    gate = asyncio.Semaphore(options.connect_concurrency)
    tasks = []

    async def one(client: Receiver) -> None:
        try:
            await pool.open(client)
        finally:
            gate.release()

    start = loop.time()
    for k, client in enumerate(pool.clients):
        if io.stopped.is_set():
            break
        if rate:
            delay = start + k / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        await gate.acquire()
        tasks.append(loop.create_task(one(client)))
    if tasks:
        await asyncio.wait(tasks)


async def _churn(pool: Pool, rate: float, downtime: float) -> None:
    """Close and reopen (with recovery) `rate` random clients per second, until cancelled."""
    if rate <= 0 or not pool.clients:
        return
    loop = asyncio.get_running_loop()
    start, done = loop.time(), 0
    while True:
        due = int((loop.time() - start) * rate)
        while done < due:
            pool.churn_one(downtime)
            done += 1
        await asyncio.sleep(min(1.0 / rate, 0.1))


async def run_subscribers(
    options: Options, io: WorkerIO, clients: range, workers: int, t0: int
) -> None:
    """Hold `clients` (global indices) of `workers`; `t0` (ns) is second 0 of the timeline."""
    codec = Codec(options.encoding)
    names = [options.channel_name(i) for i in range(options.channel_count)]
    urls, timeout, token = list(options.urls), options.connect_timeout, _token_factory(options)
    pool: Pool
    if options.transport == "websocket":
        pool = Pool(urls, codec, names, timeout, token)
        if options.layout == "zipf":
            pool.clients = [MultiSubscriber(pool, i, options.channels_of(i)) for i in clients]
        else:
            pool.clients = [Subscriber(pool, i, options.channel_of(i)) for i in clients]
    else:
        connections = min(EMULATION_CONNECTIONS, options.connect_concurrency)
        pool = StreamPool(options.transport, urls, codec, names, timeout, token, connections)
        pool.clients = [StreamSubscriber(pool, i, options.channel_of(i)) for i in clients]
    pool.stats.latency = Recorder(t0)
    reporter = asyncio.get_running_loop().create_task(_report(io, pool.stats))
    churner = None
    try:
        began = time.time_ns()
        await _connect_all(pool, options, workers, io)
        ended = time.time_ns()
        per_channel: dict[str, int] = {}
        for client in pool.clients:
            if client.subscribed:
                for channel in client.channels:
                    key = str(channel)
                    per_channel[key] = per_channel.get(key, 0) + 1
        io.emit(
            "ready",
            subscribed=pool.stats.subscribed,
            per_channel=per_channel,
            connect=pool.stats.connect.to_dict(),
            subscribe=pool.stats.subscribe.to_dict(),
            began=began,
            ended=ended,
        )
        go = await io.wait_go()
        if go is not None:
            churner = asyncio.get_running_loop().create_task(
                _churn(pool, options.churn / workers, options.churn_downtime)
            )
            await io.calm.wait()
            churner.cancel()
            await io.stopped.wait()
    finally:
        reporter.cancel()
        if churner is not None:
            churner.cancel()
        pool.stopping = True
        io.emit("final", **stats_body(pool.stats))
        await pool.close()
