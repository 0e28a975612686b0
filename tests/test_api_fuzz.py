"""Property-based fuzzing of the server API's input path, on the memory broker.

Promise checked: whatever a body holds, every method answers a result or an
error the caller caused (107, 106, 108, ...): never an exception, never the
temporary error 100 (with the memory broker nothing else can fail), and no log
line with a traceback.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wsfan.api.executor import METHODS, ApiExecutor
from wsfan.compose import build_node
from wsfan.config import load_settings
from wsfan.errors import ErrorCode, ReplyError

FUZZ = settings(
    max_examples=100,
    deadline=None,
    # caplog is cleared for each example by the test itself
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

FIELDS = (
    "channel",
    "channels",
    "data",
    "b64data",
    "user",
    "client",
    "session",
    "info",
    "b64info",
    "tags",
    "idempotency_key",
    "skip_history",
    "recover_since",
    "since",
    "limit",
    "reverse",
    "expired",
    "expire_at",
    "disconnect",
    "whitelist",
    "pattern",
    "commands",
    "parallel",
    "offset",
    "epoch",
    "code",
    "reason",
    *METHODS,
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["\ud800", "{" * 40 + "}" * 40, "*a" * 12 + "b", "news", "chat:x"])
    | st.binary(max_size=8)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6), inner, max_size=5)
    ),
    max_leaves=20,
)
# Values of the right type, ordinary or hostile, so that more than the type checks is tried.
TYPED: dict[str, list[Any]] = {
    "channel": ["news", "chat:room", "\ud800", "x" * 300],
    "channels": [["news", "chat:room"], ["news"] * 50],
    "pattern": ["chat:*", "{" * 40 + "}" * 40, "*a" * 12 + "b", "[z-a]", "x" * 2000],
    "idempotency_key": ["k", "\udfff"],
    "user": ["u", "", "\ud800"],
    "client": ["c1"],
    "data": [{"text": "hi"}],
    "commands": [[{"publish": {"channel": "news", "data": 1}}, {"info": {}}]],
    "recover_since": [{"offset": 1, "epoch": "e"}],
    "since": [{"offset": 1, "epoch": "e"}],
    "disconnect": [{"code": 4000, "reason": "bye"}],
    "tags": [{"k": "v"}],
    "expire_at": [2**63 - 1, 2**63, 2**70],
    "limit": [10, 2**64],
}
bodies = st.fixed_dictionaries(
    {}, optional={name: st.sampled_from(TYPED.get(name, [None])) | values for name in FIELDS}
)


async def call_all(params: Any) -> list[Any]:
    node = build_node(load_settings(env={}).with_overrides(broker={"type": "memory"}))
    await node.start()
    executor = ApiExecutor(node)
    answers: list[Any] = []
    try:
        for method in sorted(METHODS):
            try:
                if method == "batch":
                    answers.append(await executor.batch(params))
                else:
                    answers.append(await executor.call(method, params))
            except ReplyError as exc:
                answers.append(exc)
    finally:
        await node.close()
    return answers


def errors_in(answer: Any) -> list[int]:
    """Every error code in an answer, nested ones (batch, broadcast) included."""
    if isinstance(answer, ReplyError):
        return [int(answer.code)]
    if isinstance(answer, dict):
        found = [int(answer["code"])] if "code" in answer and "message" in answer else []
        return found + [c for v in answer.values() for c in errors_in(v)]
    if isinstance(answer, list):
        return [c for v in answer for c in errors_in(v)]
    return []


@FUZZ
@given(params=bodies)
def test_no_body_makes_any_method_fail_temporarily(
    params: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.clear()
    answers = asyncio.run(call_all(params))
    assert int(ErrorCode.INTERNAL) not in [c for a in answers for c in errors_in(a)], answers
    tracebacks = [r.getMessage() for r in caplog.records if r.exc_info]
    assert tracebacks == [], tracebacks
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
