"""Centrifugo's HTTP proxy hooks (server/app/proxy.py), called directly against a real
Tornado backend: the requests Centrifugo sends, its answers mapped to results,
errors and disconnects, forwarded and static headers, b64data for msgpack clients.
Failures (down, slow, garbage): test_app_proxy_failures.py."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from tornado.ioloop import IOLoop
from wsfan.app.hooks import (
    ConnectResult,
    HookPoint,
    PublishContext,
    RefreshResult,
    RPCContext,
    SubRefreshResult,
    SubscribeContext,
    SubscribeResult,
)
from wsfan.app.proxy import ProxyHooks
from wsfan.config import load_settings
from wsfan.errors import Disconnect, DisconnectCode, ErrorCode, ReplyError

from tests.proxy_backend import POINTS, ProxyBackend
from tests.proxy_calls import (
    ALICE,
    ALICE_MSGPACK,
    BASE,
    MakeHooks,
    ask,
    hooks_maker,
    serve_backend,
)


@pytest.fixture
def backend(io_loop: IOLoop) -> Iterator[ProxyBackend]:
    yield from serve_backend(io_loop)


@pytest.fixture
def make_hooks(io_loop: IOLoop, backend: ProxyBackend) -> Iterator[MakeHooks]:
    yield from hooks_maker(io_loop, backend)


def test_provides_exactly_the_points_whose_endpoint_is_set() -> None:
    keys = {"connect_endpoint": "http://b/connect", "rpc_endpoint": "http://b/rpc"}
    hooks = ProxyHooks(load_settings(env={}).with_overrides(proxy=keys).proxy)
    assert {p for p in HookPoint if hooks.provides(p)} == {HookPoint.CONNECTING, HookPoint.RPC}
    assert hooks.name == "proxy"


def test_an_endpoint_that_is_no_http_url_is_refused_by_name() -> None:
    settings = load_settings(env={}).with_overrides(proxy={"rpc_endpoint": "grpc://b:1"})
    with pytest.raises(ValueError, match=r"proxy\.rpc_endpoint 'grpc://b:1'"):
        ProxyHooks(settings.proxy)


# Each point: the request sent, the result mapped -----------------------------------


@pytest.mark.gen_test
async def test_connect_sends_the_clients_name_version_and_data(
    backend: ProxyBackend, make_hooks: MakeHooks
) -> None:
    backend.allow("connect", user="alice")
    await ask(make_hooks(), "connect")
    assert backend.last("connect").body == {
        **BASE,
        "name": "py",
        "version": "1.0",
        "data": {"a": 1},
    }


@pytest.mark.gen_test
async def test_connect_result_gives_user_info_data_channels_and_expiry(
    backend: ProxyBackend, make_hooks: MakeHooks
) -> None:
    result = {"user": "alice", "info": {"n": 1}, "data": [1], "channels": ["news"], "expire_at": 9}
    backend.allow("connect", **result)
    assert await ask(make_hooks(), "connect") == ConnectResult(
        user="alice", info={"n": 1}, data=[1], channels=("news",), expire_at=9
    )


@pytest.mark.gen_test
async def test_connect_result_may_be_anonymous_and_never_expire(
    backend: ProxyBackend, make_hooks: MakeHooks
) -> None:
    backend.allow("connect", expire_at=0)
    assert await ask(make_hooks(), "connect") == ConnectResult(user="")


@pytest.mark.gen_test
async def test_connect_answer_without_result_refuses_the_connection(
    backend: ProxyBackend, make_hooks: MakeHooks
) -> None:
    backend.answer("connect", {})
    with pytest.raises(Disconnect) as refused:
        await ask(make_hooks(), "connect")
    assert refused.value.code == DisconnectCode.BAD_REQUEST


@pytest.mark.gen_test
async def test_refresh_sends_the_user_and_extends_with_new_info(
    backend: ProxyBackend, make_hooks: MakeHooks
) -> None:
    backend.allow("refresh", expire_at=1900000000, info={"n": 2})
    assert await ask(make_hooks(), "refresh") == RefreshResult(expire_at=1900000000, info={"n": 2})
    assert backend.last("refresh").body == {**BASE, "user": "alice"}


@pytest.mark.parametrize("answer", [{"result": {"expired": True}}, {}], ids=["expired", "none"])
@pytest.mark.gen_test
async def test_refresh_expired_or_without_result_ends_the_connection(
    backend: ProxyBackend, make_hooks: MakeHooks, answer: dict[str, Any]
) -> None:
    backend.answer("refresh", answer)
    assert await ask(make_hooks(), "refresh") == RefreshResult(expired=True)


@pytest.mark.gen_test
async def test_subscribe_sends_user_channel_token_and_data(
    backend: ProxyBackend, make_hooks: MakeHooks
) -> None:
    await make_hooks().subscribing(SubscribeContext(ALICE, "chat:1", {"a": 1}, token="tok"))
    body = {**BASE, "user": "alice", "channel": "chat:1", "token": "tok", "data": {"a": 1}}
    assert backend.last("subscribe").body == body


@pytest.mark.gen_test
async def test_subscribe_result_gives_info_data_and_expiry(
    backend: ProxyBackend, make_hooks: MakeHooks
) -> None:
    backend.allow("subscribe", info={"role": "op"}, data={"welcome": 1}, expire_at=7)
    result = await ask(make_hooks(), "subscribe")
    assert result == SubscribeResult(info={"role": "op"}, data={"welcome": 1}, expire_at=7)


@pytest.mark.gen_test
async def test_subscribe_answer_without_result_allows(
    backend: ProxyBackend, make_hooks: MakeHooks
) -> None:
    backend.answer("subscribe", {})
    assert await ask(make_hooks(), "subscribe") == SubscribeResult()


@pytest.mark.gen_test
async def test_sub_refresh_sends_user_and_channel_and_extends(
    backend: ProxyBackend, make_hooks: MakeHooks
) -> None:
    backend.allow("sub_refresh", expire_at=1900000000)
    assert await ask(make_hooks(), "sub_refresh") == SubRefreshResult(expire_at=1900000000)
    assert backend.last("sub_refresh").body == {**BASE, "user": "alice", "channel": "chat:1"}


@pytest.mark.gen_test
async def test_sub_refresh_expired_ends_the_subscription(
    backend: ProxyBackend, make_hooks: MakeHooks
) -> None:
    backend.allow("sub_refresh", expired=True)
    assert await ask(make_hooks(), "sub_refresh") == SubRefreshResult(expired=True)


@pytest.mark.gen_test
async def test_publish_sends_user_channel_and_data_and_allows_unchanged(
    backend: ProxyBackend, make_hooks: MakeHooks
) -> None:
    result = await ask(make_hooks(), "publish")
    assert not result.replaces_data and not result.skip_history
    body = {**BASE, "user": "alice", "channel": "chat:1", "data": {"text": "hi"}}
    assert backend.last("publish").body == body


@pytest.mark.gen_test
async def test_publish_result_replaces_the_data(
    backend: ProxyBackend, make_hooks: MakeHooks
) -> None:
    backend.allow("publish", data={"text": "hi", "by": "alice"})
    result = await ask(make_hooks(), "publish")
    assert result.replaces_data and result.data == {"text": "hi", "by": "alice"}


@pytest.mark.gen_test
async def test_publish_result_may_skip_history(
    backend: ProxyBackend, make_hooks: MakeHooks
) -> None:
    backend.allow("publish", skip_history=True)
    result = await ask(make_hooks(), "publish")
    assert result.skip_history and not result.replaces_data


@pytest.mark.gen_test
async def test_rpc_sends_method_and_data_and_answers_the_result(
    backend: ProxyBackend, make_hooks: MakeHooks
) -> None:
    backend.allow("rpc", data={"echo": {"a": 1}})
    assert (await ask(make_hooks(), "rpc")).data == {"echo": {"a": 1}}
    body = {**BASE, "user": "alice", "method": "echo", "data": {"a": 1}}
    assert backend.last("rpc").body == body


# Refusals: the backend's code unchanged --------------------------------------------


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.gen_test
async def test_every_point_raises_the_backends_error_with_its_code_unchanged(
    backend: ProxyBackend, make_hooks: MakeHooks, point: str
) -> None:
    backend.deny(point, 103, "not yours")
    with pytest.raises(ReplyError) as denied:
        await ask(make_hooks(), point)
    assert (denied.value.code, denied.value.message) == (ErrorCode.PERMISSION_DENIED, "not yours")
    assert not denied.value.temporary


@pytest.mark.gen_test
async def test_an_application_error_code_and_temporary_flag_pass_unchanged(
    backend: ProxyBackend, make_hooks: MakeHooks
) -> None:
    backend.deny("rpc", 1000, "try later", temporary=True)
    with pytest.raises(ReplyError) as denied:
        await ask(make_hooks(), "rpc")
    assert denied.value.to_dict() == {"code": 1000, "message": "try later", "temporary": True}


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.gen_test
async def test_every_point_raises_the_backends_disconnect(
    backend: ProxyBackend, make_hooks: MakeHooks, point: str
) -> None:
    backend.disconnect(point, 4501, "banned")
    with pytest.raises(Disconnect) as closed:
        await ask(make_hooks(), point)
    assert (closed.value.code, closed.value.reason) == (4501, "banned")


# Headers --------------------------------------------------------------------------


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.gen_test
async def test_the_named_handshake_headers_are_forwarded_on_every_point(
    backend: ProxyBackend, make_hooks: MakeHooks, point: str
) -> None:
    await ask(make_hooks(http_headers=["cookie", "Authorization"]), point)
    headers = backend.last(point).headers
    assert headers["Cookie"] == "session=abc"
    assert headers["Authorization"] == "Bearer t"
    assert "X-Other" not in headers
    assert headers["Content-Type"] == "application/json"


@pytest.mark.gen_test
async def test_static_headers_go_with_every_request_and_forwarded_ones_win(
    backend: ProxyBackend, make_hooks: MakeHooks
) -> None:
    static = {"X-Api-Key": "k1", "Authorization": "static"}
    hooks = make_hooks(http_headers=["Authorization"], static_http_headers=static)
    await ask(hooks, "subscribe")
    await ask(hooks, "subscribe", replace(ALICE, headers={}))
    first, second = backend.requests("subscribe")
    assert (first.headers["X-Api-Key"], first.headers["Authorization"]) == ("k1", "Bearer t")
    assert (second.headers["X-Api-Key"], second.headers["Authorization"]) == ("k1", "static")


# Binary data for msgpack clients ---------------------------------------------------


@pytest.mark.gen_test
async def test_a_msgpack_clients_binary_data_travels_as_b64data_both_ways(
    backend: ProxyBackend, make_hooks: MakeHooks
) -> None:
    backend.allow("publish", b64data=base64.b64encode(b"\x00\xffnew").decode())
    result = await make_hooks().publishing(PublishContext(ALICE_MSGPACK, "chat:1", b"\x00\x01"))
    assert result.data == b"\x00\xffnew"
    sent = backend.last("publish").body
    assert (sent["protocol"], sent["encoding"], sent["b64data"]) == ("msgpack", "binary", "AAE=")
    assert "data" not in sent


@pytest.mark.gen_test
async def test_a_msgpack_clients_other_values_travel_as_json_data(
    backend: ProxyBackend, make_hooks: MakeHooks
) -> None:
    backend.allow("rpc", data={"ok": True})
    result = await make_hooks().rpc(RPCContext(ALICE_MSGPACK, "m", {"blob": b"\x01", "n": 1}))
    assert result.data == {"ok": True}
    assert backend.last("rpc").body["data"] == {"blob": "AQ==", "n": 1}


@pytest.mark.gen_test
async def test_b64_info_and_data_give_bytes_to_a_msgpack_client(
    backend: ProxyBackend, make_hooks: MakeHooks
) -> None:
    backend.allow("subscribe", b64info="AQ==", b64data="Ag==", info={"ignored": 1})
    result = await make_hooks().subscribing(SubscribeContext(ALICE_MSGPACK, "chat:1"))
    assert (result.info, result.data) == (b"\x01", b"\x02")


@pytest.mark.gen_test
async def test_b64data_for_a_json_client_is_json_text(
    backend: ProxyBackend, make_hooks: MakeHooks
) -> None:
    backend.allow("rpc", b64data=base64.b64encode(b'{"a": [1]}').decode())
    assert (await ask(make_hooks(), "rpc")).data == {"a": [1]}
