"""`loadtest --server-pid` given a supervisor: followed to its workers and the embedded
Valkey it uses (server/loadtest/targets.py), and the result and report say so."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from wsfan.loadtest.targets import EMBEDDED, SERVER, follow

from tests.conftest import TIMEOUT_SCALE
from tests.processes import (
    RUN,
    Server,
    clean_env,
    embedded_pids,
    kill_embedded,
    running,
)

LOADTEST_TIMEOUT = 60 * TIMEOUT_SCALE


def worker_pids(supervisor: int) -> list[int]:
    """The supervisor's children, from /proc (its forked workers)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if int(text.rsplit(")", 1)[1].split()[1]) == supervisor:
            children.append(int(stat.parent.name))
    return sorted(children)


@pytest.fixture(scope="module")
def supervisor(
    tmp_path_factory: pytest.TempPathFactory, mongo_url: str
) -> Iterator[tuple[Server, Path]]:
    """run.py --workers 2 with an embedded Valkey of its own (MongoDB given)."""
    tmp_path = tmp_path_factory.mktemp("supervisor")
    var = tmp_path / "var"
    env = clean_env(MONGO_URL=mongo_url, WSFAN_EMBEDDED__DIR=str(var), WSFAN_LOG__LEVEL="warning")
    with running(tmp_path, env, ("--workers", "2")) as server:
        try:
            server.wait_ready()
            yield server, var
        finally:
            server.stop()
            kill_embedded(var)


def test_a_supervisor_pid_is_followed_to_its_workers_and_its_embedded_valkey(
    supervisor: tuple[Server, Path],
) -> None:
    server, var = supervisor
    pid = server.proc.pid
    workers = worker_pids(pid)
    assert len(workers) == 2
    valkey = embedded_pids(var)["valkey"]
    measured = {m.pid: (m.role, m.name, m.via) for m in follow([pid])}
    assert measured == {
        pid: (SERVER, "supervisor", pid),
        workers[0]: (SERVER, "worker", pid),
        workers[1]: (SERVER, "worker", pid),
        valkey: (EMBEDDED, "embedded valkey", pid),
    }


def test_a_pid_given_twice_or_found_twice_is_measured_once(
    supervisor: tuple[Server, Path],
) -> None:
    server, var = supervisor
    valkey = embedded_pids(var)["valkey"]
    pids = [m.pid for m in follow([server.proc.pid, valkey, server.proc.pid])]
    assert len(pids) == len(set(pids)) == 4


def test_loadtest_reports_what_it_measured_of_a_supervisor(
    supervisor: tuple[Server, Path], tmp_path: Path
) -> None:
    server, _ = supervisor
    pid = server.proc.pid
    out, report = tmp_path / "r.json", tmp_path / "r.html"
    args = ["loadtest", "--url", f"ws://127.0.0.1:{server.port}/connection/websocket"]
    args += ["--clients", "20", "--rate", "50", "--duration", "1", "--drain", "2", "-q"]
    args += ["--server-pid", str(pid), "--out", str(out), "--report", str(report)]
    done = subprocess.run(
        [*RUN, *args],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=LOADTEST_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())["server"]
    names = sorted(p["name"] for p in result["processes"])
    assert names == ["embedded valkey", "supervisor", "worker", "worker"]
    assert result["pids"] == [pid]
    # The workers serve (the supervisor only waits): their CPU is what was missing.
    assert result["cpu_seconds_run_by_role"]["server"] > 0
    assert result["cpu_seconds_run_by_role"]["embedded"] > 0
    assert result["cpu_us_per_delivery"] > 0
    # per delivery: the server's own processes, the embedded Valkey's apart
    run_by_role = result["cpu_seconds_run_by_role"]
    assert result["cpu_seconds_run"] == pytest.approx(run_by_role["server"], abs=0.002)
    assert result["embedded_cpu_us_per_delivery"] > 0
    # memory: the server proper, not the Valkey beside it
    assert sorted(result["memory_pids"]) == sorted(
        p["pid"] for p in result["processes"] if p["role"] == SERVER
    )
    assert result["rss_bytes_subscribed"] > 0
    assert re.search(rf"server processes measured: {pid} supervisor, \d+ worker", done.stdout)
    page = report.read_text()
    assert f"{pid} supervisor" in page and "embedded valkey" in page
    assert ">embedded</text>" in page  # its own line in the CPU chart
