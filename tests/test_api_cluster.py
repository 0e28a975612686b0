"""The server API across nodes: two in-process nodes sharing Redis (one, or client-side
shards), each with its own HTTP server; a call to one acts on the connections of both."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from wsfan.cluster import ANNOUNCE
from wsfan.compose import build_node
from wsfan.config import Settings
from wsfan.node import Node
from wsfan.protocol import Encoding, encode

from tests.conftest import ACROSS_REDIS, TIMEOUT_SCALE, broker_settings
from tests.two_nodes import Instance, eventually

INTERVAL = 0.2

pytestmark = pytest.mark.brokers(*ACROSS_REDIS)


@pytest.fixture
def settings(request: pytest.FixtureRequest, broker_type: str) -> Settings:
    """One Redis, or client-side sharding over two; the conftest's, with short intervals."""
    base = broker_settings(request, broker_type).with_overrides(
        api={"node_info_interval": INTERVAL, "survey_timeout": 2.0},
    )
    marker = request.node.get_closest_marker("settings")
    return base.with_overrides(**marker.kwargs) if marker else base


async def node_names(instance: Instance) -> list[str]:
    return [n["uid"] for n in (await instance.api.result("info"))["nodes"]]


async def announce_fake(node: Node, uid: str) -> None:
    """A node that announces itself and then never answers anything."""
    info = {"name": "silent", "version": "0", "uptime": 0, "num_clients": 0}
    await node.broker.publish_control(encode([ANNOUNCE, uid, info], Encoding.MSGPACK))


@pytest.mark.gen_test
async def test_info_lists_every_node_with_its_own_counts(a: Instance, b: Instance) -> None:
    await b.client("news")
    uids = sorted([a.node.cluster.uid, b.node.cluster.uid])

    async def both_known() -> bool:
        nodes = (await a.api.result("info"))["nodes"]
        by_uid = {n["uid"]: n for n in nodes}
        mine = by_uid.get(b.node.cluster.uid, {})
        # an announcement may fall between b's connect and its subscribe
        return sorted(by_uid) == uids and (mine["num_clients"], mine["num_subs"]) == (1, 1)

    await eventually(both_known)
    nodes = {n["uid"]: n for n in (await a.api.result("info"))["nodes"]}
    assert nodes[a.node.cluster.uid]["num_clients"] == 0
    assert nodes[b.node.cluster.uid]["num_subs"] == 1
    assert nodes[b.node.cluster.uid]["name"] == b.node.name


@pytest.mark.gen_test
async def test_a_new_node_knows_the_cluster_without_waiting_for_an_interval(
    a: Instance, settings: Settings
) -> None:
    slow = settings.with_overrides(api={"node_info_interval": 60.0})
    late = build_node(slow)
    await late.start()
    try:
        known = {a.node.cluster.uid, late.cluster.uid}
        deadline = time.monotonic() + 2 * TIMEOUT_SCALE
        while {n["uid"] for n in late.cluster.nodes()} != known:
            assert time.monotonic() < deadline, "the newcomer did not hear the others"
            await asyncio.sleep(0.01)
    finally:
        await late.close()


@pytest.mark.gen_test
async def test_channels_counts_subscribers_on_every_node(a: Instance, b: Instance) -> None:
    await a.client("chat:one", "news")
    await b.client("chat:one")
    await b.client("chat:two")
    await eventually(lambda: _known(a, 2))
    result = await a.api.result("channels", {})
    assert result["channels"] == {
        "chat:one": {"num_clients": 2},
        "chat:two": {"num_clients": 1},
        "news": {"num_clients": 1},
    }
    filtered = await b.api.result("channels", {"pattern": "chat:t*"})
    assert filtered["channels"] == {"chat:two": {"num_clients": 1}}


async def _known(instance: Instance, count: int) -> bool:
    return len(await node_names(instance)) == count


@pytest.mark.gen_test
async def test_publish_on_one_node_reaches_clients_of_the_other(a: Instance, b: Instance) -> None:
    c = await b.client("news")
    await a.api.result("publish", {"channel": "news", "data": "hi"})
    assert (await c.push("pub", "news"))["pub"]["data"] == "hi"


@pytest.mark.gen_test
async def test_disconnect_on_one_node_closes_a_client_of_the_other(
    a: Instance, b: Instance
) -> None:
    c = await b.client()
    await a.api.result("disconnect", {"user": "", "client": c.client_id})
    assert (await c.closed())[0] == 3503


@pytest.mark.gen_test
async def test_subscribe_and_unsubscribe_on_one_node_act_on_a_client_of_the_other(
    a: Instance, b: Instance
) -> None:
    c = await b.client()
    target = {"user": "", "client": c.client_id, "channel": "news"}
    await a.api.result("subscribe", target)
    await c.push("subscribe", "news")
    await a.api.result("publish", {"channel": "news", "data": 1})
    assert (await c.push("pub", "news"))["pub"]["data"] == 1
    await a.api.result("unsubscribe", target)
    assert (await c.push("unsubscribe", "news"))["unsubscribe"]["code"] == 2000


@pytest.mark.gen_test
async def test_refresh_on_one_node_expires_a_client_of_the_other(a: Instance, b: Instance) -> None:
    c = await b.client()
    await a.api.result("refresh", {"user": "", "client": c.client_id, "expired": True})
    assert (await c.closed())[0] == 3005


@pytest.mark.gen_test
async def test_an_idempotency_key_holds_across_nodes(a: Instance, b: Instance) -> None:
    c = await a.client("news")
    params = {"channel": "news", "data": "once", "idempotency_key": "k"}
    first = await a.api.result("publish", params)
    assert await b.api.result("publish", params) == first
    await b.api.result("publish", {"channel": "news", "data": "marker"})
    assert [p["data"] for p in await c.publications("news", 2)] == ["once", "marker"]


@pytest.mark.gen_test
async def test_a_stopped_node_leaves_info_at_once(a: Instance, settings: Settings) -> None:
    other = build_node(settings.with_overrides(api={"node_info_interval": 60.0}))
    await other.start()
    await eventually(lambda: _known(a, 2))
    await other.close()
    await eventually(lambda: _known(a, 1), timeout=1.0)


@pytest.mark.gen_test
async def test_a_silent_node_is_forgotten_after_three_intervals(a: Instance) -> None:
    await announce_fake(a.node, "silent-node")
    await eventually(lambda: _known(a, 2))
    heard = time.monotonic()
    await eventually(lambda: _known(a, 1), timeout=10 * INTERVAL)
    assert time.monotonic() - heard >= 3 * INTERVAL * 0.9


@pytest.mark.settings(api={"survey_timeout": 0.5})
@pytest.mark.gen_test
async def test_a_node_that_does_not_answer_delays_channels_by_the_timeout_only(
    a: Instance, b: Instance
) -> None:
    await b.client("news")
    await eventually(lambda: _known(a, 2))
    await announce_fake(a.node, "mute-node")
    await eventually(lambda: _known(a, 3))
    started = time.monotonic()
    result: Any = await a.api.result("channels", {})
    took = time.monotonic() - started
    assert result["channels"] == {"news": {"num_clients": 1}}
    assert 0.5 <= took < 0.5 + 2 * TIMEOUT_SCALE


@pytest.mark.gen_test
async def test_channels_answers_as_soon_as_every_known_node_answered(
    a: Instance, b: Instance
) -> None:
    await eventually(lambda: _known(a, 2))
    started = time.monotonic()
    await a.api.result("channels", {})
    assert time.monotonic() - started < 1.0  # the survey timeout is 2 s


@pytest.mark.gen_test
async def test_garbage_on_the_control_stream_is_dropped(a: Instance, b: Instance) -> None:
    for garbage in (b"\xc1", b"\x93\x01", encode([99, "x", {}], Encoding.MSGPACK)):
        await a.node.broker.publish_control(garbage)
    c = await b.client()
    await a.api.result("disconnect", {"user": "", "client": c.client_id})
    assert (await c.closed())[0] == 3503
