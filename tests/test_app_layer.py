"""AppLayer: which implementation answers each point, and what a misbehaving hook costs."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest
from wsfan.app import (
    Client,
    ConnectContext,
    ConnectResult,
    Disconnect,
    HookPoint,
    PublishContext,
    PublishResult,
    ReplyError,
    RPCContext,
    RPCResult,
    SubscribeContext,
    SubscribeResult,
)
from wsfan.app.layer import AppLayer, running_hook
from wsfan.app.python_hooks import PythonHooks
from wsfan.config import ChannelOptions, ConfigError, Settings, load_settings
from wsfan.errors import ErrorCode
from wsfan.metrics import Metrics

from tests.conftest import TIMEOUT_SCALE

CLIENT = Client("c1", "alice", "websocket", "json")
RPC = RPCContext(CLIENT, "m", None)
PROXIED = ChannelOptions(subscribe_proxy=True, publish_proxy=True, sub_refresh_proxy=True)
PLAIN = ChannelOptions()


class FakeProxy:
    """Another implementation of the hook interface, answering every point."""

    name = "proxy"

    def provides(self, point: HookPoint) -> bool:
        return True

    async def rpc(self, ctx: RPCContext) -> RPCResult:
        return RPCResult("from proxy")

    async def close(self) -> None:
        pass


def settings_with(**sections: Any) -> Settings:
    return load_settings(env={}).with_overrides(**sections)


def layer(
    application: object | None = None, proxy_hooks: object | None = None, **sections: Any
) -> AppLayer:
    """A layer over `application`'s hooks and `proxy_hooks`, with settings `sections`."""
    python = PythonHooks(application) if application is not None else None
    settings = settings_with(**sections)
    built = AppLayer(python, proxy_hooks, settings, Metrics())  # type: ignore[arg-type]
    tasks: set[asyncio.Task[Any]] = set()

    def spawn(coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return task

    built.attach(spawn)
    return built


def failures(layer: AppLayer, point: str, implementation: str = "python") -> float:
    sample = layer._metrics.hook_failures.labels(point, implementation)
    return float(sample._value.get())


def hook_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "wsfan.app.layer"]


# Which implementation answers ---------------------------------------------------------


class Subscribing:
    async def subscribing(self, ctx: SubscribeContext) -> SubscribeResult:
        return SubscribeResult()


def test_no_hooks_leave_every_point_to_the_token_and_namespace_rules():
    plain = layer()
    assert all(plain.hook_for(p, PROXIED) is None for p in HookPoint)
    assert not plain.wants_handshake


def test_a_python_hook_answers_its_point_on_every_channel():
    hooks = layer(Subscribing())
    assert hooks.hook_for(HookPoint.SUBSCRIBING, PLAIN) is hooks.python
    assert hooks.hook_for(HookPoint.SUBSCRIBING, PLAIN, token=True) is hooks.python
    assert hooks.hook_for(HookPoint.PUBLISHING, PLAIN) is None


def test_the_proxy_answers_subscribe_only_on_channels_with_subscribe_proxy():
    proxy = FakeProxy()
    hooks = layer(None, proxy, proxy={"subscribe_endpoint": "http://backend/sub"})
    assert hooks.hook_for(HookPoint.SUBSCRIBING, PROXIED) is proxy
    assert hooks.hook_for(HookPoint.SUBSCRIBING, PLAIN) is None


def test_the_proxy_is_not_asked_about_a_subscription_with_a_token():
    hooks = layer(None, FakeProxy(), proxy={"subscribe_endpoint": "http://backend/sub"})
    assert hooks.hook_for(HookPoint.SUBSCRIBING, PROXIED, token=True) is None


def test_the_connect_proxy_answers_only_connections_without_a_token():
    proxy = FakeProxy()
    hooks = layer(None, proxy, proxy={"connect_endpoint": "http://backend/connect"})
    assert hooks.hook_for(HookPoint.CONNECTING) is proxy
    assert hooks.hook_for(HookPoint.CONNECTING, token=True) is None
    assert hooks.wants_handshake


def test_a_proxy_without_an_endpoint_answers_nothing():
    hooks = layer(None, FakeProxy())
    assert all(hooks.hook_for(p, PROXIED) is None for p in HookPoint)


def test_a_python_hook_and_a_proxy_endpoint_for_one_point_are_a_config_error():
    with pytest.raises(ConfigError, match=r"subscribing \(proxy.subscribe_endpoint\)"):
        layer(Subscribing(), FakeProxy(), proxy={"subscribe_endpoint": "http://backend/sub"})


def test_a_python_hook_and_a_proxy_endpoint_for_different_points_go_together():
    proxy = FakeProxy()
    hooks = layer(Subscribing(), proxy, proxy={"rpc_endpoint": "http://backend/rpc"})
    assert hooks.hook_for(HookPoint.RPC) is proxy
    assert hooks.hook_for(HookPoint.SUBSCRIBING, PLAIN) is hooks.python


# Answers and failures ----------------------------------------------------------------


class Misbehaving:
    def __init__(self, outcome: Any) -> None:
        self.outcome = outcome

    async def rpc(self, ctx: RPCContext) -> Any:
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        if self.outcome == "hang":
            await asyncio.sleep(3600)
        return self.outcome


@pytest.mark.gen_test
async def test_a_hooks_result_is_returned():
    hooks = layer(Misbehaving(RPCResult({"ok": 1})))
    assert await hooks.rpc(hooks.python, RPC) == RPCResult({"ok": 1})  # type: ignore[arg-type]


@pytest.mark.gen_test
async def test_a_hooks_reply_error_reaches_the_client_unchanged():
    hooks = layer(Misbehaving(ReplyError(ErrorCode.PERMISSION_DENIED, "not yours")))
    with pytest.raises(ReplyError) as raised:
        await hooks.rpc(hooks.python, RPC)  # type: ignore[arg-type]
    assert raised.value.code is ErrorCode.PERMISSION_DENIED and raised.value.message == "not yours"
    assert failures(hooks, "rpc") == 0


@pytest.mark.gen_test
async def test_a_hooks_disconnect_passes_through():
    hooks = layer(Misbehaving(Disconnect(4501, "go away")))
    with pytest.raises(Disconnect) as raised:
        await hooks.rpc(hooks.python, RPC)  # type: ignore[arg-type]
    assert raised.value.code == 4501


@pytest.mark.parametrize(
    ("outcome", "logged"),
    [
        (
            RuntimeError("database down"),
            "python rpc hook failed: raised RuntimeError: database down",
        ),
        ("hang", "python rpc hook failed: timed out after 0.05s"),
        ({"data": 1}, "python rpc hook failed: returned dict, not RPCResult"),
        (None, "python rpc hook failed: returned NoneType, not RPCResult"),
        (RPCResult({1, 2}), "python rpc hook failed: returned data the client's encoding"),
    ],
    ids=["raises", "times-out", "wrong-type", "none", "unencodable-data"],
)
@pytest.mark.gen_test
async def test_a_failing_hook_gives_error_100_and_one_log_line(
    outcome: Any, logged: str, caplog: pytest.LogCaptureFixture
):
    hooks = layer(Misbehaving(outcome), app={"timeout": 0.05})
    with pytest.raises(ReplyError) as raised:
        await hooks.rpc(hooks.python, RPC)  # type: ignore[arg-type]
    assert raised.value.code is ErrorCode.INTERNAL and raised.value.temporary
    lines = hook_lines(caplog)
    assert len(lines) == 1 and lines[0].startswith(logged)
    assert failures(hooks, "rpc") == 1


@pytest.mark.gen_test
async def test_a_hook_failing_again_within_the_repeat_interval_logs_no_second_line(
    caplog: pytest.LogCaptureFixture,
):
    hooks = layer(Misbehaving(RuntimeError("down")), log={"repeat_interval": 60})
    for _ in range(3):
        with pytest.raises(ReplyError):
            await hooks.rpc(hooks.python, RPC)  # type: ignore[arg-type]
    assert len(hook_lines(caplog)) == 1
    assert failures(hooks, "rpc") == 3


@pytest.mark.gen_test
async def test_a_hook_answering_within_app_timeout_is_no_failure():
    class Slow:
        async def rpc(self, ctx: RPCContext) -> RPCResult:
            await asyncio.sleep(0.01)
            return RPCResult("late but in time")

    hooks = layer(Slow(), app={"timeout": 1.0 * TIMEOUT_SCALE})
    assert (await hooks.rpc(hooks.python, RPC)).data == "late but in time"  # type: ignore[arg-type]
    assert failures(hooks, "rpc") == 0


@pytest.mark.parametrize(
    ("result", "problem"),
    [
        (ConnectResult(42), "user 42 is not a string"),  # type: ignore[arg-type]
        (ConnectResult("u", channels="news"), "channels is not a sequence"),
        (ConnectResult("u", channels=[1]), "channels is not a sequence"),  # type: ignore[list-item]
        (ConnectResult("u", expire_at="soon"), "expire_at 'soon' is not unix seconds"),  # type: ignore[arg-type]
    ],
    ids=["user", "channels-string", "channels-not-names", "expire-at"],
)
@pytest.mark.gen_test
async def test_a_malformed_connect_result_is_a_failure(
    result: ConnectResult, problem: str, caplog: pytest.LogCaptureFixture
):
    class Connecting:
        async def connecting(self, ctx: ConnectContext) -> ConnectResult:
            return result

    hooks = layer(Connecting())
    context = ConnectContext(CLIENT, "", "", None, {}, {})
    with pytest.raises(ReplyError) as raised:
        await hooks.connecting(hooks.python, context)  # type: ignore[arg-type]
    assert raised.value.code is ErrorCode.INTERNAL
    assert problem in hook_lines(caplog)[0]


@pytest.mark.gen_test
async def test_a_publish_result_that_keeps_the_data_is_not_checked_for_data():
    class Publishing:
        async def publishing(self, ctx: PublishContext) -> PublishResult:
            return PublishResult(skip_history=True)

    hooks = layer(Publishing())
    result = await hooks.publishing(hooks.python, PublishContext(CLIENT, "news", {1, 2}))  # type: ignore[arg-type]
    assert not result.replaces_data and result.skip_history


@pytest.mark.gen_test
async def test_the_proxy_is_bounded_by_its_endpoints_timeout(caplog: pytest.LogCaptureFixture):
    class SlowProxy(FakeProxy):
        async def rpc(self, ctx: RPCContext) -> RPCResult:
            await asyncio.sleep(3600)
            return RPCResult()

    proxy = SlowProxy()
    hooks = layer(
        None,
        proxy,
        app={"timeout": 60},
        proxy={"rpc_endpoint": "http://backend/rpc", "rpc_timeout": 0.05},
    )
    with pytest.raises(ReplyError):
        await hooks.rpc(proxy, RPC)  # type: ignore[arg-type]
    assert hook_lines(caplog) == ["proxy rpc hook failed: timed out after 0.05s"]
    assert failures(hooks, "rpc", "proxy") == 1


# Notifications -----------------------------------------------------------------------


@pytest.mark.gen_test
async def test_a_notification_runs_in_the_background():
    called = asyncio.Event()

    class Notified:
        async def connected(self, client: Client) -> None:
            assert client is CLIENT
            called.set()

    hooks = layer(Notified())
    assert hooks.notifies("connected") and not hooks.notifies("disconnected")
    hooks.notify("connected", CLIENT)
    assert not called.is_set()  # not called in line
    await asyncio.wait_for(called.wait(), 5 * TIMEOUT_SCALE)


@pytest.mark.gen_test
async def test_a_failing_notification_is_logged_in_one_line(caplog: pytest.LogCaptureFixture):
    done = asyncio.Event()

    class Failing:
        async def subscribed(self, client: Client, channel: str) -> None:
            done.set()
            raise RuntimeError("oops")

    hooks = layer(Failing())
    hooks.notify("subscribed", CLIENT, "news")
    await asyncio.wait_for(done.wait(), 5 * TIMEOUT_SCALE)
    for _ in range(10):
        if hook_lines(caplog):
            break
        await asyncio.sleep(0)
    assert hook_lines(caplog) == [
        "python subscribed notification failed: raised RuntimeError('oops')"
    ]


# The watchdog's view ------------------------------------------------------------------


@pytest.mark.gen_test
async def test_running_hook_names_the_hook_on_the_stack():
    seen: list[str | None] = []

    class Looking:
        async def rpc(self, ctx: RPCContext) -> RPCResult:
            seen.append(running_hook(sys._getframe()))
            return RPCResult()

    hooks = layer(Looking())
    await hooks.rpc(hooks.python, RPC)  # type: ignore[arg-type]
    assert seen == ["python rpc hook"]


def test_running_hook_outside_any_hook_is_none():
    assert running_hook(sys._getframe()) is None
