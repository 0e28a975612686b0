"""Delta compression end to end (server/delta.py): real servers, real clients over
real sockets in both encodings, patches applied with server/protocol/fossil.py
as the SDK applies them (tests/delta_reader.py), on the memory broker and Valkey."""

from __future__ import annotations

from typing import Any

import pytest
from wsfan.node import Node

from tests.api_client import ApiCaller
from tests.conftest import TIMEOUT_SCALE
from tests.delta_reader import DeltaReader

TIMEOUT = 10 * TIMEOUT_SCALE

OPEN = {"allow_anonymous": True, "allow_publish": True, "history_size": 20, "history_ttl": 60}
pytestmark = pytest.mark.settings(
    namespaces={
        # Every publication delta-enabled.
        "d": {**OPEN, "allowed_delta_types": ["fossil"], "delta_publish": True},
        # Delta allowed, but only publications with the `delta` flag are patched.
        "m": {**OPEN, "allowed_delta_types": ["fossil"]},
        # History and recovery, no delta.
        "h": OPEN,
    }
)


def document(version: int) -> dict[str, Any]:
    """About 2 KB of JSON; each version changes a few values (about 1%)."""
    items = [
        {"id": i, "name": f"item-{i}", "price": (i * 37 + 3) % 1000 / 10, "tags": ["a", "b"]}
        for i in range(36)
    ]
    doc: dict[str, Any] = {"items": items, "version": version}
    doc["items"][version % 36]["price"] = version / 100
    return doc


async def delta_reader(client: Any) -> DeltaReader:
    return DeltaReader(await client())


# Negotiation ----------------------------------------------------------------------


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_subscribing_with_fossil_where_allowed_answers_delta_true(client: Any) -> None:
    c = await client()
    result = await c.result("subscribe", {"channel": "d:doc", "delta": "fossil"})
    assert result["delta"] is True and result["positioned"] is True


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_a_subscription_without_delta_is_not_told_delta(client: Any) -> None:
    c = await client()
    assert "delta" not in await c.result("subscribe", {"channel": "d:doc"})


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_fossil_in_a_namespace_that_does_not_allow_it_answers_107(client: Any) -> None:
    c = await client()
    answer = await c.call("subscribe", {"channel": "h:doc", "delta": "fossil"})
    assert answer["error"]["code"] == 107 and "subscribe" not in answer
    assert "delta" in answer["error"]["message"]
    assert "delta" not in await c.result("subscribe", {"channel": "h:doc"})


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_an_unknown_delta_type_answers_107(client: Any) -> None:
    c = await client()
    answer = await c.call("subscribe", {"channel": "d:doc", "delta": "zstd"})
    assert answer["error"]["code"] == 107 and "zstd" in answer["error"]["message"]
    assert (await c.result("subscribe", {"channel": "d:doc", "delta": "fossil"}))["delta"]


@pytest.mark.parametrize("delta", [True, 7, ["fossil"], {"type": "fossil"}])
@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_a_delta_that_is_not_a_string_answers_107(client: Any, delta: Any) -> None:
    c = await client()
    answer = await c.call("subscribe", {"channel": "d:doc", "delta": delta})
    assert answer["error"]["code"] == 107
    assert (await c.result("subscribe", {"channel": "d:doc"})) is not None


# Round trips ----------------------------------------------------------------------


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_the_first_publication_is_full_and_the_next_ones_patches(
    client: Any, node: Node
) -> None:
    reader = await delta_reader(client)
    await reader.subscribe("d:doc")
    for version in range(5):
        await node.publish("d:doc", document(version))
    got = await reader.many("d:doc", 5)
    assert [r.value for r in got] == [document(v) for v in range(5)]
    assert [r.delta for r in got] == [False, True, True, True, True]
    assert all(r.wire * 5 < got[0].wire for r in got[1:])


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_non_ascii_content_survives_its_patches(client: Any, node: Node) -> None:
    reader = await delta_reader(client)
    await reader.subscribe("d:chat")
    texts = [
        "Привет, мир! съешь же ещё этих мягких французских булок " * 3,
        "Привет, мир! съешь же ещё этих мягких французских булок, да выпей чаю 😀 " * 3,
        "Привет, мир 🚀! съешь же ещё этих мягких булок, да выпей чаю 😀👋🏽 " * 3,
    ]
    for text in texts:
        await node.publish("d:chat", {"text": text, "who": "Алиса"})
    got = await reader.many("d:chat", 3)
    assert [r.value for r in got] == [{"text": t, "who": "Алиса"} for t in texts]
    assert got[1].delta and got[2].delta


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_a_patch_no_shorter_than_the_publication_goes_in_full(
    client: Any, node: Node
) -> None:
    reader = await delta_reader(client)
    await reader.subscribe("d:doc")
    await node.publish("d:doc", document(1))
    await node.publish("d:doc", {"log": [f"event {n * 7919 % 10007}" for n in range(40)]})
    first, second = await reader.many("d:doc", 2)
    assert not first.delta and not second.delta
    assert second.value == {"log": [f"event {n * 7919 % 10007}" for n in range(40)]}


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_a_late_subscriber_gets_in_full_what_earlier_ones_get_as_a_patch(
    client: Any, node: Node
) -> None:
    early = await delta_reader(client)
    await early.subscribe("d:doc")
    await node.publish("d:doc", document(1))
    await early.next("d:doc")
    late = await delta_reader(client)
    await late.subscribe("d:doc")
    await node.publish("d:doc", document(2))
    await node.publish("d:doc", document(3))
    assert [(r.value, r.delta) for r in await early.many("d:doc", 2)] == [
        (document(2), True),
        (document(3), True),
    ]
    assert [(r.value, r.delta) for r in await late.many("d:doc", 2)] == [
        (document(2), False),
        (document(3), True),
    ]


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_a_publication_without_history_breaks_the_chain(client: Any, node: Node) -> None:
    reader = await delta_reader(client)
    await reader.subscribe("d:doc")
    await node.publish("d:doc", document(1))
    await node.publish("d:doc", document(2), skip_history=True)  # no offset
    await node.publish("d:doc", document(3))
    got = await reader.many("d:doc", 3)
    assert [r.value for r in got] == [document(1), document(2), document(3)]
    assert [r.delta for r in got] == [False, False, False]
    assert got[1].offset == 0


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_a_subscriber_without_delta_gets_plain_publications_beside_delta_ones(
    client: Any, node: Node
) -> None:
    reader = await delta_reader(client)
    await reader.subscribe("d:doc")
    plain = await client()
    await plain.result("subscribe", {"channel": "d:doc"})
    for version in range(3):
        await node.publish("d:doc", document(version))
    assert [r.value for r in await reader.many("d:doc", 3)] == [document(v) for v in range(3)]
    pubs = await plain.publications("d:doc", 3)
    assert [p["data"] for p in pubs] == [document(v) for v in range(3)]
    assert not any("delta" in p for p in pubs)


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_a_client_publication_in_a_delta_publish_namespace_is_patched(
    client: Any,
) -> None:
    reader = await delta_reader(client)
    await reader.subscribe("d:doc")
    for version in range(3):
        await reader.client.result("publish", {"channel": "d:doc", "data": document(version)})
    got = await reader.many("d:doc", 3)
    assert [r.value for r in got] == [document(v) for v in range(3)]
    assert [r.delta for r in got] == [False, True, True]


# History and recovery ----------------------------------------------------------------


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_history_is_never_delta(client: Any, node: Node) -> None:
    reader = await delta_reader(client)
    await reader.subscribe("d:doc")
    for version in range(3):
        await node.publish("d:doc", document(version))
    await reader.many("d:doc", 3)
    history = await reader.client.result("history", {"channel": "d:doc", "limit": -1})
    assert [p["data"] for p in history["publications"]] == [document(v) for v in range(3)]
    assert not any("delta" in p for p in history["publications"])


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_recovered_publications_and_the_next_live_one_are_full(
    client: Any, node: Node
) -> None:
    reader = await delta_reader(client)
    position = await reader.subscribe("d:doc")
    await node.publish("d:doc", document(1))
    await reader.next("d:doc")
    await reader.client.result("unsubscribe", {"channel": "d:doc"})
    for version in (2, 3, 4):
        await node.publish("d:doc", document(version))
    result = await reader.subscribe(
        "d:doc", recover=True, offset=position["offset"] + 1, epoch=position["epoch"]
    )
    assert result["recovered"] is True and result["delta"] is True
    recovered = result["publications"]
    assert not any("delta" in p for p in recovered)
    assert [reader.take("d:doc", p).value for p in recovered] == [document(v) for v in (2, 3, 4)]
    await node.publish("d:doc", document(5))
    await node.publish("d:doc", document(6))
    after = await reader.many("d:doc", 2)
    assert [(r.value, r.delta) for r in after] == [(document(5), False), (document(6), True)]


# The publisher's flag ------------------------------------------------------------------


@pytest.fixture
def api(http_server: Any, http_client: Any, http_port: int) -> ApiCaller:
    return ApiCaller(http_client, f"http://127.0.0.1:{http_port}/api")


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_only_publications_with_the_api_delta_flag_are_patched(
    client: Any, api: ApiCaller
) -> None:
    reader = await delta_reader(client)
    await reader.subscribe("m:doc")
    await api.result("publish", {"channel": "m:doc", "data": document(1)})
    await api.result("publish", {"channel": "m:doc", "data": document(2)})
    await api.result("publish", {"channel": "m:doc", "data": document(3), "delta": True})
    got = await reader.many("m:doc", 3)
    assert [r.value for r in got] == [document(v) for v in (1, 2, 3)]
    assert [r.delta for r in got] == [False, False, True]


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_broadcast_with_the_delta_flag_patches_in_every_channel(
    client: Any, api: ApiCaller
) -> None:
    reader = await delta_reader(client)
    await reader.subscribe("m:a")
    await reader.subscribe("m:b")
    for version in (1, 2):
        params = {"channels": ["m:a", "m:b"], "data": document(version), "delta": True}
        await api.result("broadcast", params)
    for channel in ("m:a", "m:b"):
        got = await reader.many(channel, 2)
        assert [(r.value, r.delta) for r in got] == [(document(1), False), (document(2), True)]


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_the_delta_flag_works_in_a_msgpack_api_body(client: Any, api: ApiCaller) -> None:
    reader = await delta_reader(client)
    await reader.subscribe("m:doc")
    for version in (1, 2):
        params = {"channel": "m:doc", "data": document(version), "delta": True}
        response, answer = await api.msgpack("publish", params)
        assert response.code == 200 and "error" not in answer
    got = await reader.many("m:doc", 2)
    assert [(r.value, r.delta) for r in got] == [(document(1), False), (document(2), True)]


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_an_api_delta_flag_that_is_not_a_boolean_answers_107(api: ApiCaller) -> None:
    answer = await api.call("publish", {"channel": "m:doc", "data": {}, "delta": "yes"})
    assert answer["error"]["code"] == 107


# The budget ---------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_a_patched_publication_costs_the_connection_its_patch_bytes(
    client: Any, node: Node
) -> None:
    reader = await delta_reader(client)
    await reader.subscribe("d:doc")
    await node.publish("d:doc", document(1))
    first = await reader.next("d:doc")
    session = node.hub.session(reader.client.client_id)
    assert session is not None
    before = session.metrics.bytes_out
    await node.publish("d:doc", document(2))
    patch = await reader.next("d:doc")
    written = session.metrics.bytes_out - before
    assert patch.delta and patch.wire < written < first.wire


# Across instances ------------------------------------------------------------------------


@pytest.mark.brokers("redis", "sharded")
@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_publications_from_either_instance_reach_delta_subscribers_of_both_as_patches(
    a: Any, b: Any
) -> None:
    readers = [DeltaReader(await a.client()), DeltaReader(await b.client())]
    for reader in readers:
        await reader.subscribe("m:doc")
    for version in range(4):
        publisher = (a, b)[version % 2]
        params = {"channel": "m:doc", "data": document(version), "delta": True}
        await publisher.api.result("publish", params)
    for reader in readers:
        got = await reader.many("m:doc", 4)
        assert [r.value for r in got] == [document(v) for v in range(4)]
        assert [r.delta for r in got] == [False, True, True, True]
