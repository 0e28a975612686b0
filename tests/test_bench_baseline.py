"""The raw picows baseline (bench/baseline_picows.py) speaks enough of the client
protocol for the load tester: every publication reaches every subscriber, in order."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from wsfan.embedded import free_port
from wsfan.loadtest import Options, run_async

from tests.conftest import TIMEOUT_SCALE

ROOT = Path(__file__).resolve().parents[1]
TEST_TIMEOUT = 60 * TIMEOUT_SCALE


@pytest.fixture
def baseline_url() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "baseline_picows.py"), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20 * TIMEOUT_SCALE
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the baseline did not answer /healthz"
                time.sleep(0.1)
        yield f"ws://127.0.0.1:{port}/connection/websocket"
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stderr:
            proc.stderr.close()


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_the_load_tester_counts_every_delivery_of_the_baseline(baseline_url: str):
    opts = Options(
        urls=(baseline_url,),
        clients=100,
        rates=(20.0, 40.0),
        duration=1.0,
        drain=2.0 * TIMEOUT_SCALE,
        channel_prefix="base",
        progress=False,
    )
    result = await run_async(opts)

    assert result["clients"]["subscribed"] == 100
    assert result["publications"]["acked"] == 60
    d = result["deliveries"]
    assert d["received"] == d["expected"] == 60 * 100
    assert d["gaps"] == d["duplicates"] == d["foreign"] == 0
    assert result["errors"] == {} and result["close_codes"] == {}
