"""Hostile clients on the HTTP side, against a real run.py process.

While each attack runs, a normal client's round trips (a new connection's
`GET /healthz`, a command on a WebSocket opened before) stay under 100 ms at
p99, the server's memory and log stay bounded, and nothing ends in a traceback.
bench/attacks_http.py runs the same attacks at a larger scale and measures them.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import msgpack
import pytest

from bench.attacks_http import (
    Attackers,
    Probes,
    Watch,
    WsProbe,
    api_post,
    http_round_trip,
    log_lines,
    open_files,
    p99,
    server_env,
    start_server,
)
from tests.conftest import TIMEOUT_SCALE
from tests.processes import Server

ATTACK = 3.0  # seconds each attack runs
ROUND_TRIP = 0.1 * TIMEOUT_SCALE  # a normal client's p99 while it does
RSS_GROWTH = 20 * 2**20
REPEAT = 1.0  # log.repeat_interval of these servers


@contextmanager
def served(tmp_path: Path, ulimit: int | None = None, **settings: str) -> Iterator[Server]:
    """run.py (one worker, memory broker) with `settings`, under `ulimit -n` of `ulimit`."""
    stderr = tmp_path / "run.stderr"
    env = server_env(LOG__REPEAT_INTERVAL=str(REPEAT), **settings)
    proc, port = start_server(env, stderr, open_files_limit=ulimit)
    server = Server(proc, port, stderr)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def assert_normal_client_unhurt(probes: Probes) -> None:
    assert len(probes.http) >= 10, probes.http
    assert p99(probes.http) < ROUND_TRIP, Probes.summary(probes.http)
    assert p99(probes.ws) < ROUND_TRIP, Probes.summary(probes.ws)


# Slowloris ---------------------------------------------------------------------


def test_heads_that_never_end_are_closed_at_head_timeout(tmp_path: Path) -> None:
    with served(tmp_path, SERVER__HEAD_TIMEOUT="1") as server:
        ws = WsProbe(server.port)
        probes = Probes()
        with (
            Watch(server.proc.pid, server.log) as watch,
            Attackers(server.port, 100, period=0.2) as attack,
        ):
            assert attack.wait_open(100, 5 * TIMEOUT_SCALE)
            probes.run(server.port, ws, ATTACK)
        ws.close()
    assert attack.lifetimes, "the server dropped none of them"
    assert min(attack.lifetimes) >= 0.8 and max(attack.lifetimes) <= 1 + 0.5 * TIMEOUT_SCALE
    assert_normal_client_unhurt(probes)
    assert watch.rss_growth < RSS_GROWTH and watch.tracebacks == 0


def test_more_slow_heads_than_max_pending_cannot_keep_normal_clients_out(tmp_path: Path) -> None:
    with served(tmp_path, SERVER__HEAD_TIMEOUT="5", SERVER__MAX_PENDING_CONNECTIONS="64") as server:
        ws = WsProbe(server.port)
        probes = Probes()
        before = open_files(server.proc.pid)
        with (
            Watch(server.proc.pid, server.log) as watch,
            Attackers(server.port, 200, period=0.2) as attack,
        ):
            assert attack.wait_open(60, 5 * TIMEOUT_SCALE)
            probes.run(server.port, ws, ATTACK)
        ws.close()
    # At most 64 pending, plus the normal client's connection and one being accepted.
    assert watch.max_open_files <= before + 64 + 2, (before, watch.max_open_files)
    assert_normal_client_unhurt(probes)
    assert watch.rss_growth < RSS_GROWTH and watch.tracebacks == 0
    # One line per repeat interval (and the first at once) about closing the longest-waiting.
    assert watch.log_lines <= 2 + ATTACK / REPEAT, server.stderr()[-2000:]


# Out of file descriptors ---------------------------------------------------------


def test_out_of_descriptors_pending_connections_make_room_and_nothing_spins(
    tmp_path: Path,
) -> None:
    with served(tmp_path, ulimit=128, SERVER__HEAD_TIMEOUT="5") as server:
        ws = WsProbe(server.port)
        probes = Probes()
        silent = Attackers(server.port, 200, head=b"")  # they connect and say nothing
        with Watch(server.proc.pid, server.log) as watch, silent as attack:
            assert attack.wait_open(100, 5 * TIMEOUT_SCALE)
            probes.run(server.port, ws, ATTACK)
        ws.close()
    assert watch.max_open_files >= 120  # the limit was reached
    assert_normal_client_unhurt(probes)
    assert watch.cpu_share < 0.6, watch.cpu_share
    assert watch.tracebacks == 0
    assert watch.log_lines <= 2 + 2 * ATTACK / REPEAT, server.stderr()[-2000:]


def test_out_of_descriptors_with_none_to_free_accepting_pauses_quietly_then_resumes(
    tmp_path: Path,
) -> None:
    with served(tmp_path, ulimit=64, SERVER__HEAD_TIMEOUT="30") as server:
        sockets: list[WsProbe] = []
        while len(sockets) < 100:  # WebSockets until no descriptor is left
            try:
                sockets.append(WsProbe(server.port, timeout=0.5))
            except OSError:
                break
        assert 20 < len(sockets) < 64
        with Watch(server.proc.pid, server.log) as watch:
            waiting = [http_round_trip(server.port, timeout=0.5) for _ in range(6)]
            time.sleep(1.0)  # observed: what the server does meanwhile
        assert waiting == [None] * 6  # nothing to free: new connections wait in the backlog
        assert watch.cpu_share < 0.2, watch.cpu_share
        assert watch.tracebacks == 0 and watch.log_lines <= 2 + watch.seconds / REPEAT
        for ws in sockets[:10]:
            ws.close()
        deadline = time.monotonic() + 5 * TIMEOUT_SCALE
        while http_round_trip(server.port) is None:
            assert time.monotonic() < deadline, "not served again"
        # Once no accept failed for a whole repeat interval, it says so, once.
        deadline = time.monotonic() + (REPEAT + 5) * TIMEOUT_SCALE
        while "accepting connections again" not in server.stderr():
            assert time.monotonic() < deadline, server.stderr()[-2000:]
            http_round_trip(server.port)
            time.sleep(0.1)
        for ws in sockets[10:]:
            ws.close()
        assert "Traceback" not in server.stderr()


# Deep nesting on the API -------------------------------------------------------------

DEEP = 100_000


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with served(tmp_path_factory.mktemp("api")) as server:
        yield server


def test_a_json_body_nested_100k_deep_answers_400_with_a_message(api_server: Server) -> None:
    status, body = api_post(api_server.port, "publish", b"[" * DEEP + b"]" * DEEP)
    assert status == 400
    assert json.loads(body)["error"]["message"] == "body is not valid JSON: nested too deeply"


def test_a_msgpack_body_nested_100k_deep_answers_400_with_a_message(api_server: Server) -> None:
    body = b"\x82\xa7channel\xa1a\xa4data" + b"\x91" * DEEP + b"\xc0"
    status, answer = api_post(api_server.port, "publish", body, msgpack=True)
    assert status == 400
    assert msgpack.unpackb(answer)["error"]["message"] == (
        "body is not valid msgpack: nested too deeply"
    )


def test_a_pattern_of_1000_nested_braces_is_a_client_error(api_server: Server) -> None:
    pattern = json.dumps({"pattern": "{" * 1000 + "}" * 1000}).encode()
    status, body = api_post(api_server.port, "channels", pattern)
    error = json.loads(body)["error"]
    assert status == 200 and error["code"] == 107 and "temporary" not in error


def test_hostile_api_bodies_leave_no_traceback(api_server: Server) -> None:
    for body in (b"[" * DEEP, b"{" * DEEP, b'{"a":' * DEEP):
        assert api_post(api_server.port, "publish", body)[0] == 400
    assert log_lines(api_server.log)[1] == 0, api_server.stderr()[-2000:]


def test_a_flood_of_deeply_nested_bodies_leaves_memory_and_normal_clients_alone(
    tmp_path: Path,
) -> None:
    bodies = [b"[" * DEEP + b"]" * DEEP, b'{"a":' * DEEP]
    answers: list[int] = []
    with served(tmp_path) as server:
        ws = WsProbe(server.port)
        probes = Probes()
        stop = threading.Event()

        def flood() -> None:
            deadline = time.monotonic() + ATTACK + 5 * TIMEOUT_SCALE  # bounded on its own
            while not stop.is_set() and time.monotonic() < deadline:
                answers.append(api_post(server.port, "publish", bodies[len(answers) % 2])[0])

        attacker = threading.Thread(target=flood, daemon=True)
        with Watch(server.proc.pid, server.log) as watch:
            attacker.start()
            try:
                probes.run(server.port, ws, ATTACK)
            finally:
                stop.set()
                attacker.join(10 * TIMEOUT_SCALE)
        ws.close()
    assert len(answers) >= 10 and set(answers) == {400}
    assert_normal_client_unhurt(probes)
    assert watch.rss_growth < RSS_GROWTH and watch.tracebacks == 0
