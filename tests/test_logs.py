"""Log lines: text by default, one JSON object a line with `log.format = "json"`."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from server.config import ConfigError, load_settings
from server.logs import JsonFormatter
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
