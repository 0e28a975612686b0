"""Centrifugo's HTTP proxy hooks (server/app/proxy.py) when the backend fails them:
down, slower than the point's timeout, another status than 200, or an answer
that is malformed. Each is a ProxyError, for the layer to answer error 100."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from tornado.ioloop import IOLoop
from wsfan.app.proxy import ProxyError
from wsfan.protocol import DEFAULT_MAX_DATA_DEPTH

from tests.conftest import TIMEOUT_SCALE
from tests.proxy_backend import POINTS, ProxyBackend, down_url
from tests.proxy_calls import MakeHooks, ask, hooks_maker, nested, serve_backend


@pytest.fixture
def backend(io_loop: IOLoop) -> Iterator[ProxyBackend]:
    yield from serve_backend(io_loop)


@pytest.fixture
def make_hooks(io_loop: IOLoop, backend: ProxyBackend) -> Iterator[MakeHooks]:
    yield from hooks_maker(io_loop, backend)


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.gen_test
async def test_a_backend_that_is_down_is_a_proxy_error(make_hooks: MakeHooks, point: str) -> None:
    hooks = make_hooks(**{f"{point}_endpoint": down_url(point)})
    with pytest.raises(ProxyError):
        await ask(hooks, point)


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.gen_test
async def test_a_backend_slower_than_the_points_timeout_is_a_proxy_error_at_it(
    backend: ProxyBackend, make_hooks: MakeHooks, point: str
) -> None:
    backend.slow(point)
    hooks = make_hooks(**{f"{point}_timeout": 0.2})  # the others keep the long default
    started = time.monotonic()
    with pytest.raises(ProxyError, match=r"no answer within 0\.2s"):
        await ask(hooks, point)
    assert time.monotonic() - started < 0.2 + 1.0 * TIMEOUT_SCALE


@pytest.mark.parametrize("status", [204, 301, 403, 500, 503])
@pytest.mark.gen_test
async def test_a_status_other_than_200_is_a_proxy_error(
    backend: ProxyBackend, make_hooks: MakeHooks, status: int
) -> None:
    backend.answer("subscribe", {"result": {}}, status=status)
    with pytest.raises(ProxyError):
        await ask(make_hooks(), "subscribe")


@pytest.mark.parametrize("point", ["publish", "rpc"])
@pytest.mark.gen_test
async def test_publish_and_rpc_are_never_retried(
    backend: ProxyBackend, make_hooks: MakeHooks, point: str
) -> None:
    backend.answer(point, {"result": {}}, status=502)
    with pytest.raises(ProxyError):
        await ask(make_hooks(), point)
    assert len(backend.requests(point)) == 1


@pytest.mark.parametrize("b64", [False, True], ids=["data", "b64data"])
@pytest.mark.gen_test
async def test_answered_data_may_nest_as_deep_as_clients_data_and_no_deeper(
    backend: ProxyBackend, make_hooks: MakeHooks, b64: bool
) -> None:
    hooks = make_hooks(max_data_depth=3)
    for depth, allowed in ((3, True), (4, False)):
        encoded = base64.b64encode(json.dumps(nested(depth)).encode()).decode()
        backend.allow("rpc", **({"b64data": encoded} if b64 else {"data": nested(depth)}))
        if allowed:
            assert (await ask(hooks, "rpc")).data == nested(depth)
        else:
            with pytest.raises(ProxyError, match="nested deeper than 3 levels"):
                await ask(hooks, "rpc")


GARBAGE: dict[str, tuple[str, Any]] = {
    "not json": ("connect", b"<html>oops</html>"),
    "not utf-8": ("connect", b'{"result": {"user": "\xff"}}'),
    "NaN": ("connect", b'{"result": {"expire_at": NaN}}'),
    "a list": ("connect", [1, 2]),
    "result not an object": ("connect", {"result": "yes"}),
    "user not a string": ("connect", {"result": {"user": 42}}),
    "channels not a list": ("connect", {"result": {"user": "a", "channels": "news"}}),
    "channels not strings": ("connect", {"result": {"user": "a", "channels": ["a", 1]}}),
    "subs not an object": ("connect", {"result": {"user": "a", "subs": ["news"]}}),
    "subs entry not an object": ("connect", {"result": {"user": "a", "subs": {"news": 1}}}),
    "subs info not base64": ("connect", {"result": {"user": "a", "subs": {"n": {"b64info": "a"}}}}),
    "expire_at a string": ("connect", {"result": {"user": "a", "expire_at": "soon"}}),
    "expire_at a bool": ("refresh", {"result": {"expire_at": True}}),
    "expire_at negative": ("refresh", {"result": {"expire_at": -5}}),
    "expired not a bool": ("refresh", {"result": {"expired": "no"}}),
    "b64data not base64": ("rpc", {"result": {"b64data": "***"}}),
    "b64data not a string": ("rpc", {"result": {"b64data": 12}}),
    "b64data not json for json": ("rpc", {"result": {"b64data": "AAE="}}),
    "b64info not base64": ("subscribe", {"result": {"b64info": "a"}}),
    "skip_history not a bool": ("publish", {"result": {"skip_history": 1}}),
    "error not an object": ("subscribe", {"error": "denied"}),
    "error code not an int": ("subscribe", {"error": {"code": "103"}}),
    "error code unknown": ("subscribe", {"error": {"code": 99}}),
    "error code too big": ("subscribe", {"error": {"code": 5000}}),
    "error message not a string": ("subscribe", {"error": {"code": 103, "message": 1}}),
    "error temporary not a bool": ("subscribe", {"error": {"code": 103, "temporary": 1}}),
    "disconnect code not one": ("connect", {"disconnect": {"code": 1000}}),
    "disconnect reason not a string": ("connect", {"disconnect": {"code": 4000, "reason": []}}),
    "nested past recursion": (
        "rpc",
        b'{"result": {"data": ' + b"[" * 100000 + b"]" * 100000 + b"}}",
    ),
    "data nested too deep": ("rpc", {"result": {"data": nested(DEFAULT_MAX_DATA_DEPTH + 1)}}),
    "b64data nested too deep": (
        "rpc",
        {"result": {"b64data": base64.b64encode(json.dumps(nested(65)).encode()).decode()}},
    ),
}


@pytest.mark.parametrize(("point", "answer"), list(GARBAGE.values()), ids=list(GARBAGE))
@pytest.mark.gen_test
async def test_a_malformed_answer_is_a_proxy_error(
    backend: ProxyBackend, make_hooks: MakeHooks, point: str, answer: Any
) -> None:
    backend.answer(point, answer)
    with pytest.raises(ProxyError, match=re.escape(backend.url(point))):
        await ask(make_hooks(), point)
