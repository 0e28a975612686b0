"""Hostile WebSocket clients against a real `run.py` process: the server's memory
stays bounded, the attacker is dropped or slowed down, and a normal client's
round trip stays under 100 ms at p99 while the attack runs (issue 14, items 1-2).

Each test starts its own server (memory broker, no embedded servers, one
worker), so its RSS, read from /proc, belongs to that attack alone. Before the
fixes (bench/results/attacks_ws.md) a ping flood grew it by ~27 MB a second and
a flood of tiny frames held the event loop for seconds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import attack
from tests.conftest import TIMEOUT_SCALE
from tests.processes import Server, clean_env, running
from tests.raw_ws import mask_frame

SECONDS = 3.0
MAX_UNSENT = 256 << 10
RSS_SLACK = 4 << 20  # the interpreter's own churn while it serves the normal client
P99 = 0.1 * TIMEOUT_SCALE


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    env = clean_env(
        WSFAN_EMBEDDED__ENABLED="false",
        WSFAN_BROKER__TYPE="memory",
        WSFAN_LOG__LEVEL="warning",
        WSFAN_CLIENT__COMMAND_RATE="0",  # the normal client sends 200 commands a second
        WSFAN_CLIENT__MAX_UNSENT_BYTES=str(MAX_UNSENT),
        WSFAN_CLIENT__STALE_TIMEOUT="1.0",
    )
    with running(tmp_path, env, ("--workers", "1")) as s:
        s.wait_ready()
        yield s


def under_attack(server: Server, flood: attack.Flood) -> tuple[attack.RssWatch, list[float]]:
    """Run `flood` for SECONDS while a normal client measures its round trips."""
    with attack.RssWatch(server.proc.pid) as memory:
        flood.start()
        try:
            rtts = attack.round_trips(server.port, SECONDS)
        finally:
            flood.join(SECONDS + 5 * TIMEOUT_SCALE)
            flood.close()
    return memory, rtts


def test_a_never_reading_ping_flood_is_bounded_and_dropped(server: Server):
    flood = attack.Flood(server.port, attack.ping_flood_chunk(), SECONDS)  # 125-byte pings
    memory, rtts = under_attack(server, flood)
    assert memory.growth < MAX_UNSENT + RSS_SLACK, memory.growth
    assert attack.p99(rtts) < P99, sorted(rtts)[-5:]
    # No connect: closed (3502) after stale_timeout, then aborted as it keeps sending.
    assert flood.outcome in ("reset", "closed")


def test_a_fragment_flood_is_closed_and_costs_nothing(server: Server):
    prefix, chunk = attack.fragment_flood()  # empty non-final continuation frames
    flood = attack.Flood(server.port, chunk, SECONDS, prefix=prefix)
    memory, rtts = under_attack(server, flood)
    assert memory.growth < RSS_SLACK, memory.growth
    assert attack.p99(rtts) < P99, sorted(rtts)[-5:]
    assert flood.outcome in ("reset", "closed")  # 1009 at max_fragments + 1


def test_a_connected_flood_of_tiny_frames_is_slowed_not_buffered(server: Server):
    connect = mask_frame(json.dumps({"id": 1, "connect": {}}).encode())
    flood = attack.Flood(server.port, attack.tiny_frame_chunk(), SECONDS, prefix=connect)
    memory, rtts = under_attack(server, flood)
    assert memory.growth < MAX_UNSENT + RSS_SLACK, memory.growth
    assert attack.p99(rtts) < P99, sorted(rtts)[-5:]
