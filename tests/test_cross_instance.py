"""What clients see across two instances, on every Redis deployment (one Redis, and
client-side sharding over two): ordering under concurrent publishers on every
instance, recovery on another instance, presence and join/leave."""

from __future__ import annotations

import asyncio

import pytest

from tests.client import ProtoClient
from tests.conftest import ACROSS_REDIS, TIMEOUT_SCALE
from tests.two_nodes import Instance, eventually

pytestmark = pytest.mark.brokers(*ACROSS_REDIS)

ROOMS = [f"chat:room{n}" for n in range(4)]  # spread over the shards
PER_INSTANCE = 30


async def publish(instance: Instance, channel: str, data: object) -> int:
    result = await instance.api.result("publish", {"channel": channel, "data": data})
    return int(result["offset"])


@pytest.mark.gen_test(timeout=20 * TIMEOUT_SCALE)
async def test_concurrent_publishers_on_every_instance_reach_everyone_in_offset_order(
    a: Instance, b: Instance
) -> None:
    watchers = [await a.client(*ROOMS), await b.client(*ROOMS)]
    await asyncio.gather(
        *(
            publish(instance, room, {"from": name, "n": n})
            for room in ROOMS
            for name, instance in (("a", a), ("b", b))
            for n in range(PER_INSTANCE)
        )
    )
    for watcher in watchers:
        for room in ROOMS:
            pubs = await watcher.publications(room, 2 * PER_INSTANCE)
            assert [p["offset"] for p in pubs] == list(range(1, 2 * PER_INSTANCE + 1))
            for name in "ab":
                mine = [p["data"]["n"] for p in pubs if p["data"]["from"] == name]
                assert sorted(mine) == list(range(PER_INSTANCE))


@pytest.mark.gen_test(timeout=20 * TIMEOUT_SCALE)
async def test_a_client_recovers_on_another_instance_what_it_missed(
    a: Instance, b: Instance
) -> None:
    for room in ROOMS:
        first = await a.client()
        subscribed = await first.result("subscribe", {"channel": room, "recover": True})
        await publish(a, room, "seen")
        seen = await first.push("pub", room)
        first.close()
        missed = [await publish(b, room, f"missed {n}") for n in range(3)]
        second = await b.client()
        result = await second.result(
            "subscribe",
            {
                "channel": room,
                "recover": True,
                "offset": seen["pub"]["offset"],
                "epoch": subscribed["epoch"],
            },
        )
        assert result["recovered"] is True
        assert [p["offset"] for p in result["publications"]] == missed


@pytest.mark.gen_test(timeout=20 * TIMEOUT_SCALE)
async def test_presence_lists_clients_of_every_instance(a: Instance, b: Instance) -> None:
    here, there = await a.client(*ROOMS), await b.client(*ROOMS)
    expected = {here.client_id, there.client_id}
    for room in ROOMS:
        for asker in (a, b):

            async def both_present(asker: Instance = asker, room: str = room) -> bool:
                result = await asker.api.result("presence", {"channel": room})
                return set(result["presence"]) == expected

            await eventually(both_present)


async def of_client(watcher: ProtoClient, kind: str, room: str, client: str) -> bool:
    """Reads `kind` pushes of `room` (the watcher's own join among them) until `client`'s."""
    while (await watcher.push(kind, room))[kind]["info"]["client"] != client:
        pass
    return True


@pytest.mark.gen_test(timeout=20 * TIMEOUT_SCALE)
async def test_a_join_and_leave_on_one_instance_reach_subscribers_of_the_other(
    a: Instance, b: Instance
) -> None:
    for room in ROOMS:
        watcher = await a.client(room)
        visitor = await b.client(room)
        assert await of_client(watcher, "join", room, visitor.client_id)
        visitor.close()
        assert await of_client(watcher, "leave", room, visitor.client_id)
