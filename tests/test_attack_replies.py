"""Never-reading clients asking for large answers, against a real `run.py` process.

Twenty raw connections each ask for `history` with limit 1000 over 60 KB
publications and never read (bench/attacks_replies.py is the same attack, run
on demand with its figures in bench/results/attacks_replies.md). The server's
resident memory must stay within the attackers' budgets plus slack, each
attacker must be closed with 3008 or get a reply cut short, and a normal
client's round trip must stay under 100 ms at p99 meanwhile.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from bench.attacks_replies import CHANNEL, api_publish, attack, server_env
from tests.conftest import TIMEOUT_SCALE
from tests.processes import running

ATTACKERS = 20
PUBLICATIONS = 200
SIZE = 60_000
BUDGET_MB = 1.0  # client.max_unsent_bytes, the default
SLACK_MB = 30.0  # allocator and read buffers: far below the 360+ MB it took unbounded


def test_never_reading_clients_asking_for_large_histories_hold_bounded_memory(
    tmp_path: Path, redis_url: str, mongo_url: str
):
    env = server_env(
        redis_url,
        mongo_url,
        PUBLICATIONS,
        WSFAN_REDIS__PREFIX=f"t-{uuid.uuid4().hex[:12]}:",
    )
    with running(tmp_path, env) as server:
        server.wait_ready()
        pad = "x" * SIZE
        for i in range(PUBLICATIONS):
            api_publish(server.port, CHANNEL, {"i": i, "pad": pad})
        outcome = asyncio.run(
            attack(
                server.proc.pid,
                server.port,
                attackers=ATTACKERS,
                limit=1000,
                available=PUBLICATIONS,
                duration=3.0,
                read_timeout=10 * TIMEOUT_SCALE,
            )
        )
    assert outcome.growth_mb < ATTACKERS * BUDGET_MB + SLACK_MB, outcome
    assert set(outcome.attackers) <= {"closed_3008", "cut"}, outcome
    assert sum(outcome.attackers.values()) == ATTACKERS
    assert outcome.rtt_ms["p99"] < 100 * TIMEOUT_SCALE, outcome
