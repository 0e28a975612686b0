"""The load tester against the real server: its counts agree with what the server
knows, an injected gap is found, recovery under churn is checked, problems are
reported by kind, and the command line writes its files.

The server runs in the test's event loop (the `ws_url` fixture); the load
tester's clients run in worker processes, so that loop stays free to serve them.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from wsfan.api.keys import DEVELOPMENT_KEY
from wsfan.broker.base import HistoryQuery
from wsfan.config import Settings
from wsfan.embedded import free_port
from wsfan.loadtest import LoadTestError, Options, run_async
from wsfan.node import Node

from tests.conftest import TIMEOUT_SCALE

TEST_TIMEOUT = 60 * TIMEOUT_SCALE
ROOT = Path(__file__).resolve().parents[1]

# A broadcast channel, as in the benchmarks: N subscribers joining would otherwise
# cost N*N join pushes and turn a short test into a long one.
QUIET_CHANNELS = {"join_leave": False, "presence": False}


def options(ws_url: str, **values: Any) -> Options:
    """Small, quick, quiet defaults on a channel prefix of this test's own."""
    base = {
        "urls": (ws_url,),
        "clients": 100,
        "rates": (20.0,),
        "duration": 1.0,
        "drain": 3.0 * TIMEOUT_SCALE,
        "connect_timeout": 10.0 * TIMEOUT_SCALE,
        "channel_prefix": f"lt{uuid.uuid4().hex[:8]}",
        "progress": False,
    }
    return Options(**(base | values))


async def top_offset(node: Node, channel: str) -> int:
    return (await node.reads.history(channel, HistoryQuery())).position.offset


class Sampler:
    """The server's own view while the test runs: the most clients and subscriptions seen."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.clients = 0
        self.subscriptions = 0
        self._task = asyncio.get_running_loop().create_task(self._sample())

    async def _sample(self) -> None:
        while True:
            self.clients = max(self.clients, self.node.hub.num_clients)
            self.subscriptions = max(self.subscriptions, self.node.hub.num_subscriptions)
            await asyncio.sleep(0.02)

    def stop(self) -> None:
        self._task.cancel()


@pytest.mark.brokers("memory")
@pytest.mark.settings(channels=QUIET_CHANNELS)
@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_counts_match_what_the_server_reports(ws_url: str, node: Node):
    opts = options(
        ws_url, clients=240, layout="channels", channels=4, rates=(20.0, 40.0), workers=2
    )
    sampler = Sampler(node)
    result = await run_async(opts)
    sampler.stop()

    assert result["clients"]["subscribed"] == 240 == sampler.subscriptions
    assert sampler.clients == 240 + opts.publisher_connections  # and the publishers
    offsets = [await top_offset(node, opts.channel_name(i)) for i in range(4)]
    assert result["publications"]["acked"] == sum(offsets) == 60
    # 60 publications round-robin over 4 channels of 60 subscribers each
    assert result["deliveries"]["expected"] == sum(o * 60 for o in offsets) == 3600
    assert result["deliveries"]["received"] == 3600
    assert result["deliveries"]["loss"] == 0
    assert [s["deliveries"] for s in result["steps"]] == [20 * 60, 40 * 60]
    assert result["deliveries"]["gaps"] == result["deliveries"]["duplicates"] == 0
    assert result["latency_ms"]["p50"] is not None
    assert result["errors"] == {} and result["close_codes"] == {}


@pytest.mark.brokers("memory")
@pytest.mark.settings(channels=QUIET_CHANNELS)
@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
@pytest.mark.parametrize("encoding", ["json", "msgpack"])
async def test_zipf_layout_delivers_each_publication_to_its_channels_subscribers(
    ws_url: str, node: Node, encoding: str
):
    opts = options(
        ws_url,
        clients=50,
        layout="zipf",
        channels=20,
        channels_per_client=3,
        rates=(40.0,),
        duration=1.5,
        encoding=encoding,
        workers=2,
    )
    sampler = Sampler(node)
    result = await run_async(opts)
    sampler.stop()

    assert result["clients"]["subscribed"] == 50
    assert sampler.subscriptions == 50 * 3  # three channels on each connection
    assert sampler.clients == 50 + opts.publisher_connections
    subscribers = [0] * 20
    for client in range(50):
        for channel in opts.channels_of(client):
            subscribers[channel] += 1
    offsets = [await top_offset(node, opts.channel_name(i)) for i in range(20)]
    assert result["publications"]["acked"] == sum(offsets) == 60
    assert offsets[0] == max(offsets) > 0  # rank 1 the most published to
    expected = sum(o * n for o, n in zip(offsets, subscribers, strict=True))
    assert result["deliveries"]["expected"] == expected
    assert result["deliveries"]["received"] == expected
    assert result["deliveries"]["loss"] == 0
    assert result["deliveries"]["gaps"] == result["deliveries"]["duplicates"] == 0
    assert result["deliveries"]["foreign"] == 0
    assert result["errors"] == {} and result["close_codes"] == {}


@pytest.mark.brokers("memory")
@pytest.mark.settings(channels=QUIET_CHANNELS)
@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_server_cpu_is_reported_per_step_over_consecutive_windows(ws_url: str):
    # The server runs in this process, so this process is the server PID.
    opts = options(ws_url, clients=100, rates=(20.0, 40.0), server_pids=(os.getpid(),))
    result = await run_async(opts)

    first, second = result["steps"]
    assert 0.9 <= first["window_seconds"] <= 1.5  # from its start to the next step's
    for s in (first, second):
        assert s["server_cpu_seconds"] > 0
        per = s["server_cpu_seconds"] / s["deliveries"] * 1e6
        assert s["server_cpu_us_per_delivery"] == pytest.approx(per, abs=0.01)
        assert 0 <= s["generator_busy"] <= 1.05
    # the windows lie within the publishing and draining phase, without overlap
    total = first["server_cpu_seconds"] + second["server_cpu_seconds"]
    assert total <= result["server"]["cpu_seconds_run"] + 0.05
    assert len(result["cpu_samples"]) >= 8  # four a second


@pytest.mark.brokers("memory")
@pytest.mark.settings(channels=QUIET_CHANNELS)
@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_memory_per_connection_counts_only_the_memory_pids(ws_url: str):
    idle = await asyncio.create_subprocess_exec("sleep", "60")  # a PID beside the server
    try:
        pids = (os.getpid(), idle.pid)
        opts = options(ws_url, clients=100, rates=(0.0,), duration=0.2, server_pids=pids)
        result = await run_async(opts, memory_pids=(os.getpid(),))
    finally:
        idle.kill()
        await idle.wait()

    server = result["server"]
    assert server["memory_pids"] == [os.getpid()]
    assert set(server["rss_bytes_by_pid"]) == {str(os.getpid())}
    assert server["rss_bytes_before"] > 0
    delta = server["rss_bytes_subscribed"] - server["rss_bytes_before"]
    assert server["kb_per_connection"] == pytest.approx(delta / 100 / 1024, abs=0.01)


@pytest.mark.brokers("redis")
@pytest.mark.settings(channels=QUIET_CHANNELS)
@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_an_offset_skipped_by_the_server_counts_as_one_gap_per_client(
    ws_url: str, node: Node, settings: Settings
):
    # The gap is real: halfway through, the channel's offset counter in Redis is
    # bumped behind the server's back, so the next publication carries offset k + 2.
    # The server notices the jump, unsubscribes each client with 2500, and the
    # client resubscribes recovering from k: the history it gets back skips k + 1.
    opts = options(ws_url, clients=150, rates=(20.0,), duration=2.0)
    channel = opts.channel_name(0)
    meta = f"{settings.redis.prefix}.meta.{{{channel}}}"
    test = asyncio.get_running_loop().create_task(run_async(opts))
    redis = Redis.from_url(settings.redis.url)
    try:
        for _ in range(int(200 * TIMEOUT_SCALE)):
            if await top_offset(node, channel) >= 10:
                break
            await asyncio.sleep(0.05)
        await redis.hincrby(meta, "s", 1)
        result = await test
    finally:
        await redis.aclose()

    assert result["deliveries"]["gaps"] == 150
    assert result["unsubscribe_codes"] == {"2500": 150}
    assert result["churn"]["resubscribes"] == 150
    assert result["deliveries"]["loss"] == 0  # the skipped offset was never a publication


@pytest.mark.brokers("memory")
@pytest.mark.settings(channels=QUIET_CHANNELS)
@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_churned_clients_recover_every_publication_over_msgpack(ws_url: str, node: Node):
    opts = options(ws_url, clients=120, rates=(40.0,), duration=2.0, churn=30.0, encoding="msgpack")
    result = await run_async(opts)

    churn, deliveries = result["churn"], result["deliveries"]
    assert churn["reconnects"] >= 20
    assert churn["recovered"] == churn["reconnects"] and churn["not_recovered"] == 0
    assert deliveries["received"] == deliveries["expected"] == 80 * 120
    assert deliveries["gaps"] == deliveries["duplicates"] == 0
    assert result["clients"]["at_end"] == 120


@pytest.mark.brokers("memory")
@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_subscribe_errors_are_counted_by_code(ws_url: str):
    # A namespace the server does not know: every subscribe answers 102.
    result = await run_async(options(ws_url, clients=50, rates=(0.0,), channel_prefix="nope:x"))
    assert result["clients"]["subscribed"] == 0
    assert result["errors"] == {"subscribe error 102": 50}


@pytest.mark.brokers("memory")
@pytest.mark.settings(client={"allow_anonymous": False})
@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_close_codes_are_counted_by_code(ws_url: str):
    # A server that knows no secret of ours closes a connection whose token it
    # cannot verify with 3500 (invalid token): the minted token went out, the
    # close code came back.
    opts = options(
        ws_url, clients=30, rates=(0.0,), token_secret="a-secret-of-at-least-32-bytes-for-hs256"
    )
    result = await run_async(opts)
    assert result["close_codes"] == {"3500": 30}
    assert result["clients"]["subscribed"] == 0


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_a_server_that_is_not_there_is_counted_as_refused_connections():
    url = f"ws://127.0.0.1:{free_port()}/connection/websocket"
    result = await run_async(options(url, clients=20, rates=(0.0,), duration=0.2))
    assert result["errors"] == {"ConnectionRefusedError": 20}


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_a_publisher_that_cannot_connect_ends_the_test_with_its_reason():
    url = f"ws://127.0.0.1:{free_port()}/connection/websocket"
    with pytest.raises(LoadTestError, match="publisher failed: ConnectionRefusedError"):
        await run_async(options(url, clients=5))


# The server's own HTTP API, with the development key the test settings carry.
API_KEY = DEVELOPMENT_KEY


@pytest.mark.brokers("memory")
@pytest.mark.settings(channels=QUIET_CHANNELS)
@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_http_publisher_posts_to_the_api_with_the_key(ws_url: str, node: Node):
    opts = options(ws_url, clients=50, rates=(30.0,), publisher="http", api_key=API_KEY)
    result = await run_async(opts)
    assert result["publications"]["acked"] == await top_offset(node, opts.channel_name(0)) == 30
    assert result["deliveries"]["received"] == result["deliveries"]["expected"] == 30 * 50


@pytest.mark.brokers("memory")
@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_http_publisher_with_a_wrong_key_counts_401s(ws_url: str):
    opts = options(ws_url, clients=10, rates=(10.0,), publisher="http", api_key="wrong")
    result = await run_async(opts)
    assert result["publications"]["acked"] == 0
    assert result["errors"] == {"publisher: http 401": 10}


@pytest.mark.brokers("memory")
@pytest.mark.settings(channels=QUIET_CHANNELS)
@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_command_line_prints_a_table_and_writes_json_and_html(ws_url: str, tmp_path: Path):
    out, report = tmp_path / "result.json", tmp_path / "report.html"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "run.py"),
        "loadtest",
        *("--url", ws_url, "--clients", "60", "--rate", "10,20", "--duration", "1"),
        *("--out", str(out), "--report", str(report), "--quiet"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode()
    assert "deliveries 1,800 of 1,800 expected" in stdout.decode()

    result = json.loads(out.read_text())
    assert result["deliveries"]["received"] == 1800
    assert len(result["timeline"]) >= 2
    page = report.read_text()
    assert page.count("<svg") == 5
    # self-contained: nothing is fetched from anywhere
    assert "src=" not in page and "href=" not in page and "http://" not in page
