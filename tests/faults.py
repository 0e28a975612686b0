"""Fault scenarios against real processes: a deployment, load, a fault, a verdict.

A `Deployment` is one or two `run.py` instances (one worker each) on a Valkey and a
SecantusDB of the test's own, which a scenario may stop, kill, pause or restart on
the same port. `Load` drives it while the fault happens: HTTP API publishers going
as fast as one keep-alive connection each allows, recording every acknowledged
publication (the reply carried an offset), and official SDK subscribers
(centrifuge-python, recoverable and positioned) recording every publication and
every `subscribed` event. `check` (tests/fault_check.py) then reads the channel's
history back from its first offset and compares.

`run_scenario(name, tmp_path)` does all of it for one of `SCENARIOS` and returns a
`FaultReport`; the tests assert `report.assert_no_loss()`, bench/faults.py counts.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from centrifuge import (
    Client,
    PublicationContext,
    SubscribedContext,
    SubscriptionEventHandler,
    UnsubscribedContext,
)
from redis.crc import key_slot
from wsfan.broker.redis_keys import pubsub_channel
from wsfan.embedded import EmbeddedSecantus, EmbeddedValkey

from tests.conftest import TIMEOUT_SCALE
from tests.fault_check import API_KEY, CHANNEL, Acked, FaultReport, Received, check
from tests.processes import Server, clean_env, running
from tests.valkey_cluster import ValkeyCluster

__all__ = [
    "API_KEY",
    "CHANNEL",
    "SCENARIOS",
    "Deployment",
    "Load",
    "LoadShape",
    "Publisher",
    "Subscriber",
    "Valkey",
    "end_stale_sdk_readers",
    "run_scenario",
]

HISTORY_SIZE = 50  # small: the Redis window moves past publications at once, the log matters
CONFIG = f"""
[api]
keys = ["{API_KEY}"]

[stats]
interval = 0.0

[auth]
hmac_secret = "faults-suite-secret-of-thirty-two-bytes-or-more"

[log]
level = "warning"  # not one access line per publish: the server's CPU goes to the load

[redis]
# The pub/sub connection retries within half a second: a delivery that resumes
# only after `Load.settle`'s quiet spell would read as lost.
reconnect_delay_max = 0.5

[client]
# Above any gap the scenarios make (a few thousand publications while a subscriber
# waits for its instance): a recovered:false is then a failure, never the limit.
recovery_max_limit = 10000

[namespaces.log]
history_size = {HISTORY_SIZE}
history_ttl = 300.0
persist = true
allow_publish = true
allow_anonymous = true
presence = false
join_leave = false
"""
REQUEST_TIMEOUT = 5 * TIMEOUT_SCALE  # one publish; more than redis.command_timeout
RETRY_PAUSE = 0.02  # after a failed publish: no busy loop against a closed port
STEP_TIMEOUT = 15 * TIMEOUT_SCALE  # load reaching a mark, delivery settling
PUBLISH_SECONDS = 60 * TIMEOUT_SCALE  # a publisher's bound, if nothing stops it sooner
EXIT_WAIT = 20 * TIMEOUT_SCALE  # after SIGTERM; past server.shutdown_timeout counts as failed


class Valkey(EmbeddedValkey):
    """A persistent (AOF) Valkey with a chosen `appendfsync` policy."""

    def __init__(self, data_dir: Path, appendfsync: str = "always") -> None:
        super().__init__(data_dir, persist=True)
        self.appendfsync = appendfsync

    def _command(self) -> list[str]:
        return [*super()._command(), "--appendfsync", self.appendfsync]


class Deployment:
    """`instances` run.py processes (one worker each, `env` added to theirs) on a
    test-owned Valkey and SecantusDB, each restartable on its port. `start` brings
    it up, `stop` ends every process it started. Blocking: call from a thread."""

    def __init__(
        self,
        tmp_path: Path,
        instances: int = 1,
        appendfsync: str = "always",
        cluster: bool = False,
        **env: str,
    ) -> None:
        """With `cluster`, a Valkey cluster (tests/valkey_cluster.py) stands in for
        the Valkey, and the instances run the cluster broker."""
        self.tmp_path = tmp_path
        self.valkey = Valkey(tmp_path / "valkey", appendfsync)
        self.cluster = ValkeyCluster(tmp_path / "cluster") if cluster else None
        self.mongo = EmbeddedSecantus(tmp_path / "secantusdb", persist=True)
        self.servers: list[Server | None] = [None] * instances
        self.ports: list[int] = []
        self.env = clean_env(WSFAN_SERVER__WORKERS="1", **env)  # URLs added by `start`
        self.exits: list[tuple[int, int | None, float]] = []  # SIGTERMs: (instance, code, s)
        self._stack = ExitStack()
        self._starts = 0

    def start(self) -> None:
        # Killed at the end, not stopped: nothing reads them after, and SecantusDB
        # takes ~2 s on SIGTERM.
        redis_url = self._start_redis()
        self.mongo.start()
        self._stack.callback(self.mongo.kill)
        config = self.tmp_path / "faults.toml"
        config.write_text(CONFIG)
        self.env.update(
            REDIS_URL=redis_url,
            MONGO_URL=self.mongo.url,
            WSFAN_EMBEDDED__DIR=str(self.tmp_path / "var"),
            WSFAN_PERSIST__SPILL_DIR=str(self.tmp_path / "spill"),
        )
        for index in range(len(self.servers)):
            self.servers[index] = self._run(index, port=None)
        self.ports = [server.port for server in self.live()]
        for server in self.live():
            server.wait_ready()

    def _start_redis(self) -> str:
        if self.cluster is not None:
            self.cluster.start()
            self._stack.callback(self.cluster.stop)
            self.env["WSFAN_REDIS__CLUSTER"] = "true"
            return self.cluster.url
        self.valkey.start()
        self._stack.callback(self.valkey.kill)
        return self.valkey.url

    def _run(self, index: int, port: int | None) -> Server:
        self._starts += 1
        args = ("--config", str(self.tmp_path / "faults.toml"))
        name = f"n{index}-{self._starts}"
        return self._stack.enter_context(running(self.tmp_path, self.env, args, name, port))

    def live(self) -> list[Server]:
        return [s for s in self.servers if s is not None and s.proc.poll() is None]

    def terminate(self, index: int) -> None:
        """SIGTERM instance `index`; its exit code and how long it took go to `exits`
        (code None: still running after EXIT_WAIT, then killed)."""
        server = self.servers[index]
        assert server is not None
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        try:
            code: int | None = server.proc.wait(EXIT_WAIT)
        except subprocess.TimeoutExpired:
            server.kill()
            code = None
        self.exits.append((index, code, round(time.monotonic() - started, 2)))

    def kill(self, index: int) -> None:
        server = self.servers[index]
        assert server is not None
        server.kill()

    def restart(self, index: int) -> None:
        """A new process for `index` on its old port, once it answers /readyz."""
        server = self._run(index, self.ports[index])
        self.servers[index] = server
        server.wait_ready()

    def stderr(self) -> str:
        """Every instance's log, each under its name."""
        logs = sorted(self.tmp_path.glob("n*.stderr"))
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')}" for p in logs)

    def stop(self) -> None:
        self._stack.close()


class Publisher:
    """A thread publishing `{"id": "<name>-<n>"}` through the server API over one
    keep-alive connection, as fast as the answers come, until stopped, `count` are
    acknowledged or PUBLISH_SECONDS have passed. Each attempt has a fresh id (a
    retry could double one that was applied without an answer); after a failure it
    moves on to the next port."""

    def __init__(self, name: str, ports: list[int], count: int) -> None:
        self.name = name
        self.ports = ports
        self.count = count
        self.acked: list[Acked] = []
        self.failures: Counter[str] = Counter()
        self.stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"publisher-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self._thread.join(REQUEST_TIMEOUT + 5)

    def _run(self) -> None:
        headers = {"X-API-Key": API_KEY, "Content-Type": "application/json"}
        turn, n = 0, 0
        conn: http.client.HTTPConnection | None = None
        deadline = time.monotonic() + PUBLISH_SECONDS
        try:
            while (
                not self.stopping.is_set()
                and len(self.acked) < self.count
                and time.monotonic() < deadline
            ):
                n += 1
                ident = f"{self.name}-{n}"
                body = json.dumps({"channel": CHANNEL, "data": {"id": ident}})
                port = self.ports[turn % len(self.ports)]
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection("127.0.0.1", port, REQUEST_TIMEOUT)
                    conn.request("POST", "/api/publish", body, headers)
                    response = conn.getresponse()
                    raw = response.read()
                except (OSError, http.client.HTTPException) as exc:
                    if conn is not None:
                        conn.close()
                        conn = None
                    self._failed(type(exc).__name__, turn)
                    turn += 1
                    continue
                answer = json.loads(raw) if response.status == 200 else {}
                result = answer.get("result")
                if result and "offset" in result:
                    self.acked.append(Acked(ident, result["offset"], result["epoch"], port))
                else:
                    error = answer.get("error") or {}
                    why = f"error {error.get('code')}" if error else f"HTTP {response.status}"
                    self._failed(why, turn)
                    turn += 1
        finally:
            if conn is not None:
                conn.close()

    def _failed(self, why: str, turn: int) -> None:
        self.failures[why] += 1
        self.stopping.wait(RETRY_PAUSE)


class _Events(SubscriptionEventHandler):
    """Records into `into`; a publication carries the epoch of the subscription it
    came in (the SDK reports `subscribed` before the publications it recovered)."""

    def __init__(self, into: Received) -> None:
        self.into = into
        self.epoch = ""

    async def on_publication(self, ctx: PublicationContext) -> None:
        ident = ctx.pub.data.get("id", "?")
        self.into.publications.append((ctx.pub.offset, ident, self.epoch))

    async def on_subscribed(self, ctx: SubscribedContext) -> None:
        position = ctx.stream_position
        self.epoch = position.epoch if position is not None else ""
        self.into.subscribed.append((ctx.was_recovering, ctx.recovered, self.epoch))

    async def on_unsubscribed(self, ctx: UnsubscribedContext) -> None:
        self.into.unsubscribed.append((ctx.code, ctx.reason))


class Subscriber:
    """An SDK client with one recoverable, positioned subscription to CHANNEL; it
    reconnects by itself (within 0.3 s) when its server goes away."""

    def __init__(self, name: str, port: int) -> None:
        self.received = Received(name, port)
        url = f"ws://127.0.0.1:{port}/connection/websocket"
        self.client = Client(
            url, timeout=REQUEST_TIMEOUT, proxy=None, min_reconnect_delay=0.05,
            max_reconnect_delay=0.3,
        )  # fmt: skip
        self.sub = self.client.new_subscription(
            CHANNEL, events=_Events(self.received), positioned=True, recoverable=True
        )

    async def start(self) -> None:
        await self.client.connect()
        await self.sub.subscribe()
        await self.sub.ready(REQUEST_TIMEOUT)

    async def close(self) -> None:
        await self.client.disconnect()


async def end_stale_sdk_readers() -> None:
    """centrifuge-python 0.7 keeps a reader task (and its socket) per connection its
    server dropped, waiting forever; end them once the clients are closed."""
    stale = [
        task
        for task in asyncio.all_tasks()
        if getattr(task.get_coro(), "__qualname__", "").endswith("Client._process_messages")
    ]
    for task in stale:
        task.cancel()
    await asyncio.gather(*stale, return_exceptions=True)


@dataclass(frozen=True)
class LoadShape:
    """How much load, and when the fault comes: once `before` publications are
    acknowledged; publishing goes on until `after` more are acknowledged once the
    deployment is whole again (each publisher stops at `per_publisher`)."""

    publishers: int = 4  # in flight at once: what a shutdown has to finish
    per_publisher: int = 1500
    subscribers_per_instance: int = 2
    before: int = 400
    after: int = 300


@dataclass
class Load:
    """Publishers spread over the instances' ports (each starts on its own), subscribers
    on each instance."""

    shape: LoadShape
    ports: list[int]
    publishers: list[Publisher] = field(default_factory=list)
    subscribers: list[Subscriber] = field(default_factory=list)

    async def start(self) -> None:
        for i in range(self.shape.subscribers_per_instance * len(self.ports)):
            sub = Subscriber(f"s{i}", self.ports[i % len(self.ports)])
            self.subscribers.append(sub)
            await sub.start()
        for i in range(self.shape.publishers):
            ports = self.ports[i % len(self.ports) :] + self.ports[: i % len(self.ports)]
            self.publishers.append(Publisher(f"p{i}", ports, self.shape.per_publisher))
        for publisher in self.publishers:
            publisher.start()

    def acked(self) -> int:
        return sum(len(p.acked) for p in self.publishers)

    def done(self) -> bool:
        return all(len(p.acked) >= p.count for p in self.publishers)

    async def until_acked(self, total: int) -> None:
        """Until `total` acknowledged (or every publisher reached its count), bounded."""
        await _until(lambda: self.acked() >= total or self.done(), f"{total} acknowledged")

    async def stop_publishers(self) -> None:
        await asyncio.gather(*(asyncio.to_thread(p.stop) for p in self.publishers))

    async def settle(self, quiet: float = 1.5) -> None:
        """Until every subscriber holds every acknowledged id, or nothing new has
        arrived for `quiet` seconds (what is missing then stays missing)."""
        wanted = {a.ident for p in self.publishers for a in p.acked}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STEP_TIMEOUT
        seen, last_change = -1, loop.time()
        while loop.time() < deadline:
            got = [{p[1] for p in s.received.publications} for s in self.subscribers]
            if all(wanted <= ids for ids in got):
                return
            total = sum(len(s.received.publications) for s in self.subscribers)
            if total != seen:
                seen, last_change = total, loop.time()
            elif loop.time() - last_change > quiet * TIMEOUT_SCALE:
                return
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        await self.stop_publishers()
        for sub in self.subscribers:
            await sub.close()
        await end_stale_sdk_readers()


def _warnings(logs: str, most: int = 8) -> list[tuple[str, int]]:
    """The servers' most frequent warning and error lines (timestamps cut), counted."""
    lines = Counter(
        line.split(" ", 2)[-1][:200]
        for line in logs.splitlines()
        if " WARNING " in line or " ERROR " in line or " CRITICAL " in line
    )
    return lines.most_common(most)


class _Phases:
    """Seconds each phase of a scenario took, for the report."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.monotonic()

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.laps[name] = round(now - self._last, 2)
        self._last = now


async def _until(condition: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STEP_TIMEOUT
    while not condition():
        if loop.time() >= deadline:
            raise AssertionError(f"not reached within {STEP_TIMEOUT:g} s: {what}")
        await asyncio.sleep(0.01)


# Faults -----------------------------------------------------------------------
# Each runs in a thread (the calls block) while the load goes on, and returns
# once the deployment is whole again.

STALL = 2.5  # seconds Valkey stays stopped: more than redis.command_timeout below
COMMAND_TIMEOUT = 1.0
OUTAGE = 1.0  # seconds a killed or stopped backing server stays down
TAIL = 0.3  # seconds of Valkey's AOF a crash loses (everysec: up to 1 s, or 2 when slow)


def steady(d: Deployment) -> None:
    """No fault: the control, showing what the load alone gives."""


def sigterm(d: Deployment) -> None:
    """SIGTERM the instance under full publish load, then a new one on its port."""
    d.terminate(0)
    d.restart(0)


def rolling_restart(d: Deployment) -> None:
    """SIGTERM one instance, restart it, then the other; load goes on through both."""
    for index in range(len(d.servers)):
        d.terminate(index)
        d.restart(index)
        time.sleep(0.5)  # load on the whole pair before the next one goes


def valkey_stall(d: Deployment) -> None:
    """SIGSTOP Valkey for longer than redis.command_timeout, then SIGCONT."""
    pid = d.valkey.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(STALL)
    finally:
        os.kill(pid, signal.SIGCONT)


def valkey_kill(d: Deployment) -> None:
    """SIGKILL Valkey (AOF on), and start it again on its port after an outage."""
    d.valkey.kill()
    time.sleep(OUTAGE)
    d.valkey.start()


def mongo_restart(d: Deployment) -> None:
    """Stop SecantusDB (its data kept), and start it again on its port after an outage."""
    d.mongo.stop()
    time.sleep(OUTAGE)
    d.mongo.start()


def valkey_tail_lost(d: Deployment) -> None:
    """SIGKILL Valkey and cut its AOF back to what it held TAIL seconds earlier, as
    a crash of the machine can with appendfsync everysec, then start it again: the
    channel's list and offset counter roll back."""
    aof = _last_incr_aof(d.valkey.data_dir / "appendonlydir")
    size = aof.stat().st_size
    time.sleep(TAIL)
    d.valkey.kill()
    with aof.open("r+b") as f:
        f.truncate(size)  # a command cut in two is dropped on load (aof-load-truncated)
    d.valkey.start()


def _last_incr_aof(folder: Path) -> Path:
    """The AOF file Valkey appends to (the manifest's last incremental one)."""
    manifest = next(folder.glob("*.manifest")).read_text().split("\n")
    names = [line.split()[1] for line in manifest if line.endswith("type i")]
    return folder / names[-1]


def sigkill(d: Deployment) -> None:
    """SIGKILL the instance under load, then a new one on its port."""
    d.kill(0)
    d.restart(0)


def cluster_primary_kill(d: Deployment) -> None:
    """On a cluster: SIGKILL the primary owning the channel's slot; returns once one
    of its replicas is promoted (the load goes on meanwhile)."""
    assert d.cluster is not None
    primary = d.cluster.owner(key_slot(pubsub_channel("wsfan", CHANNEL)))
    d.cluster.wait_promoted(d.cluster.kill_primary(primary))


@dataclass(frozen=True)
class Scenario:
    fault: Callable[[Deployment], None]
    instances: int = 1
    env: dict[str, str] = field(default_factory=dict)
    appendfsync: str = "always"
    cluster: bool = False


SCENARIOS: dict[str, Scenario] = {
    "steady": Scenario(steady),
    "sigterm": Scenario(sigterm),
    "rolling_restart": Scenario(rolling_restart, instances=2),
    "valkey_stall": Scenario(
        valkey_stall, env={"WSFAN_REDIS__COMMAND_TIMEOUT": str(COMMAND_TIMEOUT)}
    ),
    "valkey_kill": Scenario(valkey_kill),
    "mongo_restart": Scenario(mongo_restart),
    "sigkill": Scenario(sigkill),
    "valkey_tail_lost": Scenario(valkey_tail_lost, appendfsync="everysec"),
    "cluster_primary_kill": Scenario(cluster_primary_kill, instances=2, cluster=True),
}


async def run_scenario(name: str, tmp_path: Path, shape: LoadShape | None = None) -> FaultReport:
    """Start a deployment, load it, apply scenario `name` under load, let the load
    run on, then check what the publishers were promised against history and what
    each subscriber got. The deployment is stopped whatever happens."""
    scenario = SCENARIOS[name]
    shape = shape or LoadShape()
    deployment = Deployment(
        tmp_path, scenario.instances, scenario.appendfsync, scenario.cluster, **scenario.env
    )
    load: Load | None = None
    clock = _Phases()
    try:
        await asyncio.to_thread(deployment.start)
        load = Load(shape, deployment.ports)
        await load.start()
        clock.lap("start")
        await load.until_acked(shape.before)
        clock.lap("before")
        await asyncio.to_thread(scenario.fault, deployment)
        clock.lap("fault")
        await load.until_acked(load.acked() + shape.after)
        await load.stop_publishers()
        clock.lap("after")
        await load.settle()
        clock.lap("settle")
        report = await asyncio.to_thread(
            check,
            name,
            deployment.ports,
            [a for p in load.publishers for a in p.acked],
            [s.received for s in load.subscribers],
            deployment.mongo.url,
        )
        clock.lap("check")
        report.failures = dict(sum((p.failures for p in load.publishers), Counter()))
        report.exits = list(deployment.exits)
        report.warnings = _warnings(deployment.stderr())
        report.seconds = clock.laps
        report.logs = str(tmp_path)
        return report
    except BaseException:
        print(deployment.stderr())  # shown by pytest with the failure
        raise
    finally:
        if load is not None:
            await load.close()
        await asyncio.to_thread(deployment.stop)
