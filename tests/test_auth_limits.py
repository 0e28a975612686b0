"""Abuse limits, each at its edge: command rate (111, then 3013), connections per
address and per user (3504), requests per address (AddressRates, /emulation's 429)."""

from __future__ import annotations

import asyncio

import pytest
from wsfan.auth.cli import mint
from wsfan.auth.limits import AddressRates, CommandLimiter, ConnectionCounter, Verdict
from wsfan.node import Node
from wsfan.protocol import Encoding

from tests.conftest import TIMEOUT_SCALE

# config/default.toml has presence and join/leave off outside namespaces; the tests
# below use them (or a presence call) on channels such as "news", so they say so.
WITH_PRESENCE = {"presence": True, "join_leave": True}

# A refill so slow that no token comes back during a test, however slow the machine.
NO_REFILL = 0.001


# The limiter itself (exact edges, explicit clock) -----------------------------------------


def test_limiter_allows_a_burst_then_rejects():
    limiter = CommandLimiter(rate=1.0, burst=3, max_rejected=10, window=10.0, now=0.0)
    assert [limiter.check(0.0) for _ in range(4)] == [Verdict.ALLOW] * 3 + [Verdict.REJECT]


def test_limiter_refills_at_its_rate():
    limiter = CommandLimiter(rate=2.0, burst=1, max_rejected=10, window=10.0, now=0.0)
    assert limiter.check(0.0) is Verdict.ALLOW
    assert limiter.check(0.4) is Verdict.REJECT  # 0.8 of a token
    assert limiter.check(0.5) is Verdict.ALLOW  # 0.8 + 0.2


def test_limiter_refill_never_exceeds_the_burst():
    limiter = CommandLimiter(rate=100.0, burst=2, max_rejected=10, window=10.0, now=0.0)
    verdicts = [limiter.check(1000.0) for _ in range(3)]
    assert verdicts == [Verdict.ALLOW, Verdict.ALLOW, Verdict.REJECT]


def test_limiter_disconnects_after_max_rejected_within_the_window():
    limiter = CommandLimiter(rate=NO_REFILL, burst=1, max_rejected=2, window=5.0, now=0.0)
    limiter.check(0.0)
    assert [limiter.check(t) for t in (1.0, 2.0, 3.0)] == [
        Verdict.REJECT,
        Verdict.REJECT,
        Verdict.DISCONNECT,
    ]


def test_limiter_forgets_rejections_older_than_the_window():
    limiter = CommandLimiter(rate=NO_REFILL, burst=1, max_rejected=2, window=5.0, now=0.0)
    limiter.check(0.0)
    assert [limiter.check(t) for t in (1.0, 2.0, 6.5)] == [Verdict.REJECT] * 3


def test_limiter_with_rate_zero_allows_everything():
    limiter = CommandLimiter(rate=0.0, burst=1, max_rejected=1, window=1.0, now=0.0)
    assert {limiter.check(0.0) for _ in range(1000)} == {Verdict.ALLOW}


def test_counter_caps_each_key_and_frees_a_place_on_release():
    counter = ConnectionCounter(2)
    assert [counter.acquire("a"), counter.acquire("a"), counter.acquire("a")] == [True, True, False]
    assert counter.acquire("b")
    counter.release("a")
    assert counter.acquire("a")
    assert counter.count("a") == 2


def test_counter_with_limit_zero_does_not_cap():
    counter = ConnectionCounter(0)
    assert all(counter.acquire("a") for _ in range(1000))


def test_address_rates_allow_a_burst_then_refuse():
    rates = AddressRates(rate=1.0, burst=3)
    assert [rates.allow("a", 0.0) for _ in range(4)] == [True, True, True, False]


def test_address_rates_refill_at_their_rate():
    rates = AddressRates(rate=2.0, burst=1)
    assert rates.allow("a", 0.0)
    assert not rates.allow("a", 0.4)  # 0.8 of a request
    assert rates.allow("a", 0.5)  # 0.8 + 0.2


def test_address_rates_keep_each_address_apart():
    rates = AddressRates(rate=NO_REFILL, burst=1)
    assert rates.allow("a", 0.0)
    assert not rates.allow("a", 0.0)
    assert rates.allow("b", 0.0)


def test_address_rates_forget_an_address_once_its_bucket_is_full_again():
    rates = AddressRates(rate=10.0, burst=2)  # a bucket refills one request in 0.1 s
    rates.allow("a", 0.0)
    rates.allow("b", 0.05)
    assert len(rates) == 2
    rates.allow("c", 0.12)  # a is full again, b not yet
    assert len(rates) == 2
    rates.allow("d", 10.0)
    assert len(rates) == 1


def test_address_rates_hold_at_most_max_addresses_forgetting_the_oldest():
    rates = AddressRates(rate=NO_REFILL, burst=1, max_addresses=2)
    for address in ("a", "b", "c"):
        assert rates.allow(address, 0.0)
    assert len(rates) == 2
    assert rates.allow("a", 0.0)  # forgotten: a full bucket again
    assert not rates.allow("c", 0.0)  # remembered


def test_address_rates_with_rate_zero_allow_everything():
    rates = AddressRates(rate=0.0, burst=1)
    assert all(rates.allow("a", 0.0) for _ in range(1000))
    assert len(rates) == 0


# Command rate on the wire -------------------------------------------------------------------


@pytest.mark.settings(
    channels=WITH_PRESENCE, client={"command_rate": NO_REFILL, "command_burst": 5}
)
@pytest.mark.gen_test
async def test_commands_up_to_the_burst_are_answered_and_one_more_gets_111(client):
    c = await client()  # connect is the first of the five
    for _ in range(4):
        await c.result("presence_stats", {"channel": "news"})
    error = (await c.call("presence_stats", {"channel": "news"}))["error"]
    assert error == {"code": 111, "message": "too many requests", "temporary": True}


@pytest.mark.settings(
    channels=WITH_PRESENCE, client={"command_rate": NO_REFILL, "command_burst": 2}
)
@pytest.mark.gen_test
async def test_pongs_do_not_count_against_the_rate(open_client):
    c = await open_client(Encoding.JSON)
    await c.connect()
    for _ in range(10):
        await c.send({})
    await c.result("presence_stats", {"channel": "news"})


@pytest.mark.settings(channels=WITH_PRESENCE, client={"command_rate": 20.0, "command_burst": 1})
@pytest.mark.gen_test
async def test_rate_limited_connection_is_answered_again_once_the_bucket_refills(open_client):
    c = await open_client(Encoding.JSON)
    await c.connect()
    assert (await c.call("presence_stats", {"channel": "news"}))["error"]["code"] == 111
    await asyncio.sleep(0.1)  # two tokens' worth at 20 per second
    await c.result("presence_stats", {"channel": "news"})


@pytest.mark.settings(
    client={
        "command_rate": NO_REFILL,
        "command_burst": 1,
        "max_rejected_commands": 3,
        "rejected_commands_window": 60.0,
    }
)
@pytest.mark.gen_test
async def test_persistently_rate_limited_connection_closes_with_3013(open_client):
    c = await open_client(Encoding.JSON)
    await c.connect()
    for _ in range(3):  # at the edge: still answered
        assert (await c.call("presence_stats", {"channel": "news"}))["error"]["code"] == 111
    await c.send({"id": 99, "presence_stats": {"channel": "news"}})
    disconnect = await c.push("disconnect")
    assert disconnect["disconnect"] == {
        "code": 3013,
        "reason": "too many requests",
        "reconnect": True,
    }
    assert (await c.closed())[0] == 3013


@pytest.mark.settings(channels=WITH_PRESENCE, client={"command_rate": 0.0})
@pytest.mark.gen_test
async def test_command_rate_zero_turns_the_limit_off(open_client):
    c = await open_client(Encoding.JSON)
    await c.connect()
    commands = [{"id": i, "presence_stats": {"channel": "news"}} for i in range(2, 502)]
    await c.send(*commands)
    replies = [await c.reply(i) for i in range(2, 502)]
    assert all("error" not in r for r in replies)


# Connection caps ------------------------------------------------------------------------


@pytest.mark.settings(client={"max_connections_per_ip": 2})
@pytest.mark.gen_test
async def test_connections_up_to_the_per_address_cap_are_served_and_one_more_closes_3504(
    open_client, node: Node
):
    first, second = await open_client(Encoding.JSON), await open_client(Encoding.JSON)
    await first.connect()
    await second.connect()
    third = await open_client(Encoding.JSON)
    assert await third.closed() == (3504, "connection limit")
    first.close()
    for _ in range(int(500 * TIMEOUT_SCALE)):  # until the server has seen the close
        if node.hub.num_clients == 1:
            break
        await asyncio.sleep(0.01)
    again = await open_client(Encoding.JSON)
    await again.connect()


@pytest.fixture
def token(node: Node):
    def make(user: str) -> str:
        return mint(node.settings.auth.hmac_secret, user)

    return make


@pytest.mark.settings(client={"max_connections_per_user": 2})
@pytest.mark.gen_test
async def test_connections_up_to_the_per_user_cap_connect_and_one_more_closes_3504(
    open_client, token, node
):
    for _ in range(2):
        await (await open_client(Encoding.JSON)).connect(token=token("alice"))
    extra = await open_client(Encoding.JSON)
    await extra.send({"id": 1, "connect": {"token": token("alice")}})
    assert await extra.closed() == (3504, "connection limit")
    await (await open_client(Encoding.JSON)).connect(token=token("bob"))
    assert len(node.hub.user_sessions("alice")) == 2


@pytest.mark.settings(client={"max_connections_per_user": 1})
@pytest.mark.gen_test
async def test_anonymous_connections_are_not_capped_per_user(open_client):
    for _ in range(3):
        await (await open_client(Encoding.JSON)).connect()
