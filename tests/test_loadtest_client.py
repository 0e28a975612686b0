"""A simulated client's view of the stream, fed frames directly: offsets checked,
pings answered, batched frames split, recovery and resubscription handled."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import msgpack
import pytest
from picows import WSMsgType
from picows.picows import _make_test_ws_frame
from wsfan.loadtest.client import MultiSubscriber, Pool, Subscriber
from wsfan.loadtest.wire import Codec, mint_token

SECRET = "a-secret-of-at-least-32-bytes-for-hs256"


class FakeTransport:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

        self.disconnected = False

    def send(self, msg_type: WSMsgType, data: bytes) -> None:
        self.sent.append(data)

    def disconnect(self) -> None:
        self.disconnected = True

    def send_close(self, code: object) -> None:
        self.sent.append(b"<close>")


def make(encoding: str = "json") -> tuple[Subscriber, FakeTransport]:
    pool = Pool(["ws://127.0.0.1:1/"], Codec(encoding), ["news"], 1.0, lambda i: "")
    client = Subscriber(pool, 0, 0)
    transport = FakeTransport()
    client.transport = transport  # type: ignore[assignment]
    return client, transport


def feed(client: Subscriber, transport: FakeTransport, *messages: Any) -> None:
    codec = client.pool.codec
    msg_type = WSMsgType.BINARY if codec.binary else WSMsgType.TEXT
    client.on_ws_frame(
        transport, _make_test_ws_frame(msg_type, codec.encode(list(messages)), True, False)
    )  # type: ignore[arg-type]


def pub(offset: int, step: int = 0) -> dict[str, Any]:
    data = {"ts": time.time_ns(), "s": step, "n": offset, "p": ""}
    return {"push": {"channel": "news", "pub": {"data": data, "offset": offset}}}


def subscribed(client: Subscriber, transport: FakeTransport, offset: int, **extra: Any) -> None:
    result = {"recoverable": True, "epoch": "e1", "offset": offset} | extra
    feed(client, transport, {"id": 2, "subscribe": result})


def test_consecutive_offsets_are_deliveries_without_gaps():
    client, t = make()
    subscribed(client, t, 4)
    feed(client, t, pub(5), pub(6), pub(7))
    stats = client.pool.stats
    assert (stats.deliveries, stats.gaps, stats.duplicates) == (3, 0, 0)


def test_a_jump_counts_every_missing_offset_as_a_gap():
    client, t = make()
    subscribed(client, t, 0)
    feed(client, t, pub(1))
    feed(client, t, pub(4))
    assert client.pool.stats.gaps == 2 and client.pool.stats.deliveries == 2


def test_a_repeated_offset_is_a_duplicate_not_a_delivery():
    client, t = make()
    subscribed(client, t, 0)
    feed(client, t, pub(1), pub(2), pub(2), pub(1))
    assert client.pool.stats.duplicates == 2 and client.pool.stats.deliveries == 2


def test_a_server_ping_is_answered_with_an_empty_message():
    client, t = make()
    feed(client, t, {})
    assert t.sent == [b"{}"]


def test_msgpack_ping_answer_is_an_empty_map():
    client, t = make("msgpack")
    feed(client, t, {})
    assert [msgpack.unpackb(m) for m in t.sent] == [{}]


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_several_messages_in_one_frame_are_all_handled(encoding: str):
    client, t = make(encoding)
    feed(
        client,
        t,
        {"id": 2, "subscribe": {"recoverable": True, "epoch": "e", "offset": 0}},
        pub(1),
        {},
        pub(2),
    )
    assert client.pool.stats.deliveries == 2 and client.subscribed and len(t.sent) == 1


def test_recovered_publications_close_the_gap_of_a_reconnect():
    client, t = make()
    subscribed(client, t, 0)
    feed(client, t, pub(1))
    client.recovering = True
    subscribed(
        client,
        t,
        3,
        recovered=True,
        was_recovering=True,
        publications=[pub(2)["push"]["pub"], pub(3)["push"]["pub"]],
    )
    stats = client.pool.stats
    assert (stats.deliveries, stats.gaps, stats.recovered, stats.reconnects) == (3, 0, 1, 1)


def test_an_unrecovered_reconnect_counts_what_it_missed_as_gaps():
    client, t = make()
    subscribed(client, t, 0)
    feed(client, t, pub(1))
    client.recovering = True
    subscribed(client, t, 5, recovered=False, was_recovering=True)
    assert client.pool.stats.gaps == 4 and client.pool.stats.not_recovered == 1


def test_unsubscribe_2500_resubscribes_recovering_from_the_last_offset():
    client, t = make()
    subscribed(client, t, 0)
    feed(client, t, pub(1), pub(2))
    feed(client, t, {"push": {"channel": "news", "unsubscribe": {"code": 2500}}})
    assert json.loads(t.sent[-1]) == {
        "id": 2,
        "subscribe": {"channel": "news", "recover": True, "offset": 2, "epoch": "e1"},
    }
    assert client.pool.stats.unsubscribes == {"2500": 1} and not client.subscribed


def test_unsubscribe_2000_stays_unsubscribed():
    client, t = make()
    subscribed(client, t, 0)
    feed(client, t, {"push": {"channel": "news", "unsubscribe": {"code": 2000}}})
    assert t.sent == [] and client.pool.stats.subscribed == 0


def test_a_publication_without_our_timestamp_is_counted_apart():
    client, t = make()
    subscribed(client, t, 0)
    feed(client, t, {"push": {"channel": "news", "pub": {"data": "hello", "offset": 1}}})
    assert client.pool.stats.foreign == 1 and client.pool.stats.deliveries == 0


def test_an_error_reply_to_subscribe_is_counted_by_code():
    client, t = make()
    feed(client, t, {"id": 2, "error": {"code": 103, "message": "permission denied"}})
    assert client.pool.stats.errors == {"subscribe error 103": 1} and t.disconnected


def test_hello_asks_for_recovery_with_the_position():
    messages = Codec("json").decode(Codec("json").hello("news", "tok", (7, "ep")))
    assert messages == [
        {"id": 1, "connect": {"name": "loadtest", "token": "tok"}},
        {"id": 2, "subscribe": {"channel": "news", "recover": True, "offset": 7, "epoch": "ep"}},
    ]


def test_minted_tokens_are_hs256_with_subject_and_expiry():
    claims = jwt.decode(mint_token(SECRET, "user-1", 60), SECRET, algorithms=["HS256"])
    assert claims["sub"] == "user-1" and claims["exp"] > time.time()


def test_frames_of_a_connection_the_client_left_are_ignored():
    client, t = make()
    subscribed(client, t, 0)
    client.close()
    client.transport = FakeTransport()  # type: ignore[assignment]  # reconnected
    feed(client, t, pub(1))
    assert client.pool.stats.deliveries == 0


@pytest.mark.gen_test
async def test_churn_never_takes_a_client_that_is_already_away():
    client, t = make()
    client.pool.clients = [client]
    subscribed(client, t, 0)
    first = client.pool.churn_one(downtime=60)
    second = client.pool.churn_one(downtime=60)
    await client.pool.close(timeout=0)
    assert (first, second) == (True, False)


def test_publications_in_another_key_order_count_the_same_through_the_decoder():
    # The fast path reads only this tool's own layout; anything else is decoded.
    client, t = make()
    subscribed(client, t, 0)
    reordered = [
        {"push": {"pub": {"offset": n, "data": pub(n)["push"]["pub"]["data"]}, "channel": "news"}}
        for n in (1, 2, 4)
    ]
    feed(client, t, *reordered)
    stats = client.pool.stats
    assert (stats.deliveries, stats.gaps, stats.foreign) == (3, 1, 0)


def test_a_frame_mixing_a_ping_and_publications_answers_the_ping_and_counts_them():
    client, t = make()
    subscribed(client, t, 0)
    feed(client, t, pub(1), {}, pub(2))
    assert client.pool.stats.deliveries == 2 and t.sent[-1] == b"{}"


def make_multi(encoding: str = "json") -> tuple[MultiSubscriber, FakeTransport]:
    names = ["a", "b", "c"]
    pool = Pool(["ws://127.0.0.1:1/"], Codec(encoding), names, 1.0, lambda i: "")
    client = MultiSubscriber(pool, 0, (2, 0))
    transport = FakeTransport()
    client.transport = transport  # type: ignore[assignment]
    return client, transport


def pub_on(channel: str, offset: int) -> dict[str, Any]:
    data = {"ts": time.time_ns(), "s": 0, "n": offset, "p": ""}
    return {"push": {"channel": channel, "pub": {"data": data, "offset": offset}}}


def multi_subscribed(client: MultiSubscriber, t: FakeTransport, *offsets: int) -> None:
    for k, offset in enumerate(offsets):
        result = {"recoverable": True, "epoch": "e1", "offset": offset}
        feed(client, t, {"id": 2 + k, "subscribe": result})


def test_a_multi_channel_client_subscribes_to_all_in_its_first_frame():
    client, t = make_multi()
    client.on_ws_connected(t)  # type: ignore[arg-type]
    assert Codec("json").decode(t.sent[0]) == [
        {"id": 1, "connect": {"name": "loadtest"}},
        {"id": 2, "subscribe": {"channel": "c"}},
        {"id": 3, "subscribe": {"channel": "a"}},
    ]
    assert client.channels == (2, 0)
    feed(client, t, {"id": 2, "subscribe": {"recoverable": True, "epoch": "e", "offset": 0}})
    assert not client.subscribed and client.pool.stats.subscribed == 0  # one of two
    feed(client, t, {"id": 3, "subscribe": {"recoverable": True, "epoch": "e", "offset": 4}})
    assert client.subscribed and client.pool.stats.subscribed == 1


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_a_multi_channel_client_checks_offsets_per_channel(encoding: str):
    client, t = make_multi(encoding)
    multi_subscribed(client, t, 0, 10)
    feed(client, t, pub_on("c", 1), pub_on("a", 11), pub_on("c", 2), pub_on("a", 12))
    feed(client, t, pub_on("a", 14), pub_on("c", 2))  # a gap, a repeat
    feed(client, t, pub_on("b", 1))  # not one of its channels
    stats = client.pool.stats
    assert (stats.deliveries, stats.gaps, stats.duplicates, stats.foreign) == (5, 1, 1, 1)


def test_a_multi_channel_client_resubscribes_only_the_channel_unsubscribed():
    client, t = make_multi()
    multi_subscribed(client, t, 0, 0)
    feed(client, t, pub_on("a", 1), {"push": {"channel": "a", "unsubscribe": {"code": 2500}}})
    assert json.loads(t.sent[-1]) == {
        "id": 3,
        "subscribe": {"channel": "a", "recover": True, "offset": 1, "epoch": "e1"},
    }
    assert not client.subscribed and client.pool.stats.subscribed == 0
    recovered = [pub_on("a", 2)["push"]["pub"]]
    result = {"recoverable": True, "epoch": "e1", "offset": 2, "recovered": True}
    feed(client, t, {"id": 3, "subscribe": result | {"publications": recovered}})
    stats = client.pool.stats
    assert client.subscribed and stats.subscribed == 1
    assert (stats.resubscribes, stats.recovered, stats.deliveries, stats.gaps) == (1, 1, 2, 0)


def test_a_reconnected_multi_channel_client_recovers_every_channel():
    client, t = make_multi()
    multi_subscribed(client, t, 0, 5)
    feed(client, t, pub_on("c", 1))
    client.gone(t)
    assert not any(track.subscribed for track in client.tracks)
    client.on_ws_connected(t)  # type: ignore[arg-type]
    subscribes = Codec("json").decode(t.sent[-1])[1:]
    assert [s["subscribe"] for s in subscribes] == [
        {"channel": "c", "recover": True, "offset": 1, "epoch": "e1"},
        {"channel": "a", "recover": True, "offset": 5, "epoch": "e1"},
    ]
