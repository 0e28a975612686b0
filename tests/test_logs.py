"""Log lines: text by default, one JSON object a line with `log.format = "json"`."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections import Counter

import pytest
from wsfan.compose import build_node
from wsfan.config import ConfigError, load_settings
from wsfan.embedded import EmbeddedServer
from wsfan.logs import JsonFormatter, Repeated
from wsfan.stats_channel import NodeStats

from tests.conftest import TIMEOUT_SCALE
from tests.processes import clean_env, running


def record(message: str, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("wsfan.x", logging.WARNING, __file__, 1, message, (), None)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_a_json_line_names_time_level_logger_and_message():
    line = json.loads(JsonFormatter().format(record("broker down")))
    assert line["level"] == "warning" and line["logger"] == "wsfan.x"
    assert line["message"] == "broker down" and line["time"].endswith("+00:00")


def test_connection_context_appears_as_fields():
    line = json.loads(JsonFormatter().format(record("slow", client="c1", user="alice")))
    assert (line["client"], line["user"]) == ("c1", "alice")


def test_an_exception_is_one_field_on_the_same_line():
    try:
        raise ConnectionError("refused")
    except ConnectionError:
        rec = record("failed")
        rec.exc_info = sys.exc_info()
    text = JsonFormatter().format(rec)
    assert "\n" not in text and json.loads(text)["error"] == "ConnectionError: refused"


def test_an_unknown_log_format_is_refused():
    with pytest.raises(ConfigError, match=r"log\.format"):
        load_settings(env={"WSFAN_LOG__FORMAT": "xml"})


def test_run_py_writes_json_lines_when_asked(redis_url, tmp_path):
    env = clean_env(
        REDIS_URL=redis_url,
        WSFAN_LOG__FORMAT="json",
        WSFAN_EMBEDDED__ENABLED="false",
        WSFAN_BROKER__TYPE="memory",
    )
    with running(tmp_path, env, ("--workers", "1")) as server:
        server.wait_ready()
        server.stop()
        lines = [ln for ln in server.stderr().splitlines() if ln.strip()]
    parsed = [json.loads(ln) for ln in lines]
    assert any("serving on" in p["message"] for p in parsed)


# Repeated failures -------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_recovery_right_after_a_failure_waits_for_a_quiet_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    failures = Repeated(logging.getLogger("wsfan.x"), interval=10.0, clock=clock)
    caplog.set_level(logging.INFO)
    for _ in range(5):  # a failure that comes and goes every second
        failures("down")
        clock.now += 1
        failures.recovered("up", quiet=10.0)
    assert [r.getMessage() for r in caplog.records] == ["down"]
    clock.now += 10
    failures.recovered("up", quiet=10.0)
    assert caplog.records[-1].getMessage() == "up (after 5 failures)"


def test_while_redis_is_down_each_failure_is_logged_at_a_bounded_rate_then_its_recovery(
    embedded_redis: EmbeddedServer, caplog: pytest.LogCaptureFixture
) -> None:
    interval = 2.0 * TIMEOUT_SCALE
    settings = load_settings(env={}).with_overrides(
        broker={"type": "redis"},
        redis={"url": embedded_redis.url, "reconnect_delay_max": 0.1},
        stats={"interval": 0.1},  # a publish every 0.1 s, each failing while Redis is down
        api={"node_info_interval": 0.1},
        log={"repeat_interval": interval},
    )
    caplog.set_level(logging.INFO)

    async def outage() -> tuple[list[logging.LogRecord], list[str]]:
        node = build_node(settings)
        await node.start()
        stats = NodeStats(node)
        await stats.start()
        try:
            embedded_redis.stop()
            caplog.clear()
            await asyncio.sleep(1.5 * interval)  # the window whose lines are counted
            down = [r for r in caplog.records if r.levelno >= logging.WARNING]
            embedded_redis.start()
            wanted = ("broker calls succeed again", "node announcements sent again")
            deadline = asyncio.get_running_loop().time() + 10 * TIMEOUT_SCALE
            while asyncio.get_running_loop().time() < deadline:
                back = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
                if all(any(w in m for m in back) for w in wanted):
                    break
                await asyncio.sleep(0.05)
            return down, back
        finally:
            await stats.close()
            await node.close()

    down, back = asyncio.run(outage())
    by_logger = Counter(r.name for r in down)
    # Each failing thing: its first failure, then at most one line per interval.
    assert by_logger and all(n <= 2 for n in by_logger.values()), by_logger
    assert not [r for r in down if r.exc_info]
    assert any("broker calls succeed again (after" in m for m in back), back
    assert any("node announcements sent again (after" in m for m in back), back
