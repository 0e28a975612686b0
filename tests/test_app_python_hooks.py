"""The application object as hooks: which points it answers, and `[app] handlers`."""

from __future__ import annotations

import pytest
from wsfan.app import (
    ConnectContext,
    ConnectResult,
    HookPoint,
    RPCContext,
    RPCResult,
    SubscribeContext,
    SubscribeResult,
)
from wsfan.app.python_hooks import PythonHooks, load_app
from wsfan.compose import build_node
from wsfan.config import ConfigError, load_settings

from tests.app_hooks import CookieApp


class RPCOnly:
    async def rpc(self, ctx: RPCContext) -> RPCResult:
        return RPCResult(ctx.data)


class Everything:
    sources = {"prices:*": None}

    async def connecting(self, ctx: ConnectContext) -> ConnectResult:
        return ConnectResult("u")

    async def subscribing(self, ctx: SubscribeContext) -> SubscribeResult:
        return SubscribeResult()

    async def connected(self, client: object) -> None:
        pass

    async def disconnected(self, client: object, code: int, reason: str) -> None:
        pass

    async def channel_occupied(self, channel: str) -> None:
        pass


def test_provides_exactly_the_points_whose_methods_the_object_has():
    hooks = PythonHooks(RPCOnly())
    assert [p for p in HookPoint if hooks.provides(p)] == [HookPoint.RPC]


def test_an_object_without_hooks_provides_no_point():
    assert not any(PythonHooks(object()).provides(p) for p in HookPoint)


def test_exposes_the_notifications_the_object_has():
    assert set(PythonHooks(Everything()).notifications) == {"connected", "disconnected"}


def test_exposes_occupancy_handlers_and_sources_for_the_occupancy_layer():
    hooks = PythonHooks(Everything())
    assert hooks.channel_occupied is not None and hooks.channel_vacated is None
    assert dict(hooks.sources) == {"prices:*": None}


@pytest.mark.parametrize("sources", [["prices:*"], "prices:*"], ids=["list", "string"])
def test_sources_that_are_not_a_mapping_are_a_config_error(sources: object):
    class App:
        pass

    App.sources = sources  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match=r"app\.handlers"):
        PythonHooks(App())


def test_a_synchronous_hook_method_is_a_config_error_naming_it():
    class Sync:
        def rpc(self, ctx: RPCContext) -> RPCResult:
            return RPCResult()

    with pytest.raises(ConfigError, match=r"app\.handlers: rpc of Sync must be an async method"):
        PythonHooks(Sync())


@pytest.mark.gen_test
async def test_calls_the_objects_method_with_the_context():
    result = await PythonHooks(RPCOnly()).rpc(RPCContext(None, "echo", {"a": 1}))  # type: ignore[arg-type]
    assert result == RPCResult({"a": 1})


def test_load_app_finds_the_object_a_spec_names():
    assert load_app("tests.app_hooks:NOT_AN_APP") == 42


def test_load_app_instantiates_a_class_it_names():
    assert isinstance(load_app("tests.app_hooks:CookieApp"), CookieApp)


def test_a_class_that_cannot_be_instantiated_is_a_config_error():
    with pytest.raises(ConfigError, match=r"app\.handlers: cannot instantiate 'NeedsArguments'"):
        load_app("tests.app_hooks:NeedsArguments")


def test_a_node_takes_its_hooks_from_app_handlers():
    settings = load_settings(env={}).with_overrides(
        broker={"type": "memory"}, app={"handlers": "tests.app_hooks:CookieApp"}
    )
    node = build_node(settings)
    assert node.app.python is not None and isinstance(node.app.python.app, CookieApp)
    assert node.app.wants_handshake


def test_load_app_follows_dotted_attributes_after_the_colon():
    assert load_app("tests.app_hooks:CookieApp.connecting") is CookieApp.connecting


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("tests.app_hooks", "expected 'package.module:object'"),
        (":CookieApp", "expected 'package.module:object'"),
        ("tests.app_hooks:", "expected 'package.module:object'"),
        ("tests.no_such_module:App", "cannot import 'tests.no_such_module'"),
        ("tests.app_hooks:Missing", "has no 'Missing'"),
    ],
    ids=["no-colon", "no-module", "no-object", "missing-module", "missing-object"],
)
def test_a_bad_spec_is_a_config_error_naming_the_key(spec: str, message: str):
    with pytest.raises(ConfigError, match=r"app\.handlers") as raised:
        load_app(spec)
    assert message in str(raised.value)
