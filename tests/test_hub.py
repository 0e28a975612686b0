"""The hub (server/hub.py): local sessions, channel subscriptions and fan-out.

Subscribers here are small real objects implementing the hub's `Subscriber`
protocol that record what they are handed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from typing import Any

import msgpack
import pytest
import wsfan.delta
import wsfan.hub
from wsfan.frames import WEBSOCKET
from wsfan.hub import BIG_FLUSH, Hub, Subscriber
from wsfan.protocol import ClientInfo, Encoding, Publication, fossil
from wsfan.transport import Frame, variant


class RecordingSubscriber:
    """A connection as the hub sees it; keeps every frame it is handed."""

    def __init__(self, client_id: str, user: str = "", encoding: Encoding = Encoding.JSON):
        self.client_id = client_id
        self.user = user
        self.encoding = encoding
        self.variant = variant(encoding, WEBSOCKET)
        self.publications: list[tuple[str, Publication, bytes]] = []
        self.pushes: list[tuple[str, bytes]] = []
        self.handed: list[Frame] = []
        self.flushes = 0

    def deliver_publication(self, channel: str, pub: Publication, frame: Frame) -> None:
        self.publications.append((channel, pub, frame.payload))
        self.handed.append(frame)

    def deliver(self, channel: str, frame: Frame) -> None:
        self.pushes.append((channel, frame.payload))
        self.handed.append(frame)

    def deliver_batch(self, channel: str, messages: Sequence[bytes], frame: Frame) -> None:
        self.pushes.extend((channel, m) for m in messages)
        self.handed.append(frame)

    def flush(self) -> None:
        self.flushes += 1

    @property
    def frames(self) -> list[bytes]:
        return [d for _, _, d in self.publications] + [d for _, d in self.pushes]


class SelfUnsubscribingSubscriber(RecordingSubscriber):
    """Leaves the channel while being delivered to, as a session ended for slowness does."""

    def __init__(self, hub: Hub, client_id: str, encoding: Encoding = Encoding.JSON):
        super().__init__(client_id, encoding=encoding)
        self.hub = hub

    def deliver_publication(self, channel: str, pub: Publication, frame: Frame) -> None:
        super().deliver_publication(channel, pub, frame)
        self.hub.unsubscribe(channel, self)

    def deliver(self, channel: str, frame: Frame) -> None:
        super().deliver(channel, frame)
        self.hub.unsubscribe(channel, self)


def decode(data: bytes, encoding: Encoding) -> Any:
    if encoding is Encoding.JSON:
        return json.loads(data)
    return msgpack.unpackb(data)


@pytest.fixture
def hub() -> Hub:
    return Hub()


PUB = Publication({"text": "hi"}, 16, ClientInfo("u1", "c1"))
PUB_PUSH = {
    "push": {
        "channel": "chat:1",
        "pub": {"data": {"text": "hi"}, "offset": 16, "info": {"user": "u1", "client": "c1"}},
    }
}

# ---------------------------------------------------------------------------
# Subscriptions


def test_first_subscriber_of_a_channel_is_reported_first(hub: Hub) -> None:
    assert hub.subscribe("a", RecordingSubscriber("c1")) is True


def test_second_subscriber_of_a_channel_is_not_first(hub: Hub) -> None:
    hub.subscribe("a", RecordingSubscriber("c1"))
    assert hub.subscribe("a", RecordingSubscriber("c2")) is False


def test_first_subscriber_is_counted_per_channel(hub: Hub) -> None:
    session = RecordingSubscriber("c1")
    assert hub.subscribe("a", session) is True
    assert hub.subscribe("b", session) is True


def test_subscribing_the_same_session_twice_is_not_a_first(hub: Hub) -> None:
    session = RecordingSubscriber("c1")
    hub.subscribe("a", session)
    assert hub.subscribe("a", session) is False
    assert hub.num_subscriptions == 1


def test_unsubscribing_while_others_remain_is_not_the_last(hub: Hub) -> None:
    one, two = RecordingSubscriber("c1"), RecordingSubscriber("c2")
    hub.subscribe("a", one)
    hub.subscribe("a", two)
    assert hub.unsubscribe("a", one) is False
    assert hub.has_subscribers("a")


def test_unsubscribing_the_last_subscriber_is_reported_last(hub: Hub) -> None:
    one, two = RecordingSubscriber("c1"), RecordingSubscriber("c2")
    hub.subscribe("a", one)
    hub.subscribe("a", two)
    hub.unsubscribe("a", one)
    assert hub.unsubscribe("a", two) is True
    assert not hub.has_subscribers("a")


def test_unsubscribing_a_session_that_is_not_subscribed_is_not_the_last(hub: Hub) -> None:
    hub.subscribe("a", RecordingSubscriber("c1"))
    assert hub.unsubscribe("a", RecordingSubscriber("c2")) is False
    assert hub.unsubscribe("nope", RecordingSubscriber("c2")) is False
    assert hub.has_subscribers("a")


def test_channel_can_have_a_first_subscriber_again_after_its_last_left(hub: Hub) -> None:
    session = RecordingSubscriber("c1")
    hub.subscribe("a", session)
    hub.unsubscribe("a", session)
    assert hub.subscribe("a", session) is True


# ---------------------------------------------------------------------------
# Fan-out


def test_publication_reaches_every_subscriber_of_the_channel_only(hub: Hub) -> None:
    one, two, other = (
        RecordingSubscriber("c1"),
        RecordingSubscriber("c2"),
        RecordingSubscriber("c3"),
    )
    hub.subscribe("chat:1", one)
    hub.subscribe("chat:1", two)
    hub.subscribe("chat:2", other)
    assert hub.broadcast_publication("chat:1", PUB) == 2
    assert [(c, p) for c, p, _ in one.publications] == [("chat:1", PUB)]
    assert [(c, p) for c, p, _ in two.publications] == [("chat:1", PUB)]
    assert other.frames == []


def test_publication_to_a_channel_without_subscribers_reaches_nobody(hub: Hub) -> None:
    assert hub.broadcast_publication("chat:1", PUB) == 0


@pytest.mark.parametrize("encoding", list(Encoding), ids=lambda e: e.value)
def test_subscriber_gets_the_publication_push_in_its_encoding(hub: Hub, encoding: Encoding) -> None:
    session = RecordingSubscriber("c1", encoding=encoding)
    hub.subscribe("chat:1", session)
    hub.broadcast_publication("chat:1", PUB)
    [(_, _, data)] = session.publications
    assert decode(data, encoding) == PUB_PUSH


def test_json_and_msgpack_subscribers_of_one_channel_each_get_their_encoding(hub: Hub) -> None:
    as_json = RecordingSubscriber("c1", encoding=Encoding.JSON)
    as_msgpack = RecordingSubscriber("c2", encoding=Encoding.MSGPACK)
    hub.subscribe("chat:1", as_json)
    hub.subscribe("chat:1", as_msgpack)
    hub.broadcast_publication("chat:1", PUB)
    assert json.loads(as_json.frames[0]) == PUB_PUSH
    assert msgpack.unpackb(as_msgpack.frames[0]) == PUB_PUSH


def test_subscribers_of_one_encoding_share_the_same_frame_object(hub: Hub) -> None:
    sessions = [RecordingSubscriber(f"j{i}", encoding=Encoding.JSON) for i in range(3)]
    sessions += [RecordingSubscriber(f"m{i}", encoding=Encoding.MSGPACK) for i in range(3)]
    for session in sessions:
        hub.subscribe("chat:1", session)
    hub.broadcast_publication("chat:1", PUB)
    json_frames = [s.handed[0] for s in sessions[:3]]
    msgpack_frames = [s.handed[0] for s in sessions[3:]]
    assert all(f is json_frames[0] for f in json_frames)
    assert all(f is msgpack_frames[0] for f in msgpack_frames)
    assert json_frames[0].wire[0] == 0x81 and msgpack_frames[0].wire[0] == 0x82  # text, binary


@pytest.fixture
def encode_calls(monkeypatch: pytest.MonkeyPatch) -> list[Encoding]:
    """The encodings the hub encodes a message in, one entry per call."""
    calls: list[Encoding] = []
    real_encode = wsfan.hub.encode

    def counting_encode(message: Any, encoding: Encoding) -> bytes:
        calls.append(encoding)
        return real_encode(message, encoding)

    monkeypatch.setattr(wsfan.hub, "encode", counting_encode)
    return calls


def test_broadcast_encodes_once_per_encoding_not_per_subscriber(
    hub: Hub, encode_calls: list[Encoding]
) -> None:
    for i in range(10):
        encoding = Encoding.JSON if i % 2 else Encoding.MSGPACK
        hub.subscribe("chat:1", RecordingSubscriber(f"c{i}", encoding=encoding))
    hub.broadcast_publication("chat:1", PUB)
    assert sorted(encode_calls) == sorted([Encoding.JSON, Encoding.MSGPACK])


def test_broadcast_with_one_encoding_present_encodes_only_that_one(
    hub: Hub, encode_calls: list[Encoding]
) -> None:
    for i in range(5):
        hub.subscribe("chat:1", RecordingSubscriber(f"c{i}", encoding=Encoding.MSGPACK))
    hub.broadcast_publication("chat:1", PUB)
    assert encode_calls == [Encoding.MSGPACK]


def flushed(action: Callable[[], None]) -> None:
    """Run `action` on an event loop, then let the hub's flush pass run."""

    async def scenario() -> None:
        action()
        await asyncio.sleep(0)

    asyncio.run(scenario())


def test_join_broadcast_encodes_once_per_encoding(hub: Hub, encode_calls: list[Encoding]) -> None:
    for i in range(4):
        hub.subscribe("chat:1", RecordingSubscriber(f"c{i}", encoding=Encoding.JSON))
    flushed(lambda: hub.broadcast_join("chat:1", ClientInfo("u", "c")))
    assert encode_calls == [Encoding.JSON]


def test_join_push_reaches_subscribers_through_deliver(hub: Hub) -> None:
    session = RecordingSubscriber("c1")
    hub.subscribe("chat:1", session)
    flushed(lambda: hub.broadcast_join("chat:1", ClientInfo("u2", "c2", {"n": 1})))
    assert session.publications == []
    [(channel, data)] = session.pushes
    assert channel == "chat:1"
    assert json.loads(data) == {
        "push": {
            "channel": "chat:1",
            "join": {"info": {"user": "u2", "client": "c2", "conn_info": {"n": 1}}},
        }
    }


def test_leave_push_reaches_subscribers_through_deliver(hub: Hub) -> None:
    session = RecordingSubscriber("c1", encoding=Encoding.MSGPACK)
    hub.subscribe("chat:1", session)
    flushed(lambda: hub.broadcast_leave("chat:1", ClientInfo("u2", "c2")))
    [(_, data)] = session.pushes
    assert msgpack.unpackb(data) == {
        "push": {"channel": "chat:1", "leave": {"info": {"user": "u2", "client": "c2"}}}
    }


def test_a_join_waits_for_the_flush_pass(hub: Hub) -> None:
    session = RecordingSubscriber("c1")
    hub.subscribe("chat:1", session)
    seen: list[int] = []

    def join_and_look() -> None:
        hub.broadcast_join("chat:1", ClientInfo("u2", "c2"))
        seen.append(len(session.pushes))

    flushed(join_and_look)
    assert seen == [0]
    assert len(session.pushes) == 1


def burst(hub: Hub, size: int) -> None:
    for i in range(size):
        hub.broadcast_join("chat:1", ClientInfo(f"u{i}", f"c{i}"))
        hub.broadcast_leave("chat:1", ClientInfo(f"u{i}", f"c{i}"))


def test_a_burst_of_joins_and_leaves_reaches_each_subscriber_in_one_frame_in_order(
    hub: Hub,
) -> None:
    sessions = [RecordingSubscriber(f"s{i}") for i in range(3)]
    for session in sessions:
        hub.subscribe("chat:1", session)
    flushed(lambda: burst(hub, 10))
    expected = [(kind, f"c{i}") for i in range(10) for kind in ("join", "leave")]
    for session in sessions:
        assert len(session.handed) == 1
        pushes = [json.loads(d)["push"] for _, d in session.pushes]
        kinds = [(next(k for k in p if k != "channel"), p) for p in pushes]
        assert [(k, p[k]["info"]["client"]) for k, p in kinds] == expected


def test_subscribers_of_one_variant_share_the_burst_frame(hub: Hub) -> None:
    sessions = [RecordingSubscriber(f"j{i}") for i in range(3)]
    sessions += [RecordingSubscriber(f"m{i}", encoding=Encoding.MSGPACK) for i in range(3)]
    for session in sessions:
        hub.subscribe("chat:1", session)
    flushed(lambda: burst(hub, 5))
    as_json = [s.handed[0] for s in sessions[:3]]
    as_msgpack = [s.handed[0] for s in sessions[3:]]
    assert all(f is as_json[0] for f in as_json) and all(f is as_msgpack[0] for f in as_msgpack)
    assert as_json[0] is not as_msgpack[0]
    assert [msgpack.unpackb(d) for _, d in sessions[3].pushes] == [
        json.loads(d) for _, d in sessions[0].pushes
    ]


def test_a_burst_encodes_each_push_once_per_encoding_not_per_subscriber(
    hub: Hub, encode_calls: list[Encoding]
) -> None:
    for i in range(20):
        hub.subscribe("chat:1", RecordingSubscriber(f"c{i}"))
    flushed(lambda: burst(hub, 5))
    assert encode_calls == [Encoding.JSON] * 10


def test_gathered_joins_go_out_before_a_later_publication_of_the_channel(hub: Hub) -> None:
    session = RecordingSubscriber("c1")
    hub.subscribe("chat:1", session)

    def join_then_publish() -> None:
        hub.broadcast_join("chat:1", ClientInfo("u2", "c2"))
        hub.broadcast_publication("chat:1", PUB)

    flushed(join_then_publish)
    kinds = [json.loads(f.payload)["push"] for f in session.handed]
    assert ["join" in kinds[0], "pub" in kinds[1]] == [True, True]


def test_a_join_in_a_channel_without_local_subscribers_is_dropped(hub: Hub) -> None:
    session = RecordingSubscriber("c1")
    hub.subscribe("other", session)
    flushed(lambda: hub.broadcast_join("chat:1", ClientInfo("u2", "c2")))
    assert session.pushes == []


def test_broadcast_of_any_push_kind_counts_its_recipients(hub: Hub) -> None:
    hub.subscribe("a", RecordingSubscriber("c1"))
    hub.subscribe("a", RecordingSubscriber("c2"))
    assert hub.broadcast("a", "message", {"data": 1}) == 2
    assert hub.broadcast("b", "message", {"data": 1}) == 0


def test_subscriber_unsubscribing_itself_during_delivery_does_not_stop_the_others(
    hub: Hub,
) -> None:
    first = RecordingSubscriber("c1")
    leaving = SelfUnsubscribingSubscriber(hub, "c2")
    last = RecordingSubscriber("c3")
    for session in (first, leaving, last):
        hub.subscribe("chat:1", session)
    assert hub.broadcast_publication("chat:1", PUB) == 3
    assert len(first.publications) == len(leaving.publications) == len(last.publications) == 1
    hub.broadcast_publication("chat:1", PUB)
    assert len(leaving.publications) == 1
    assert len(last.publications) == 2


def test_only_subscriber_unsubscribing_itself_during_delivery_empties_the_channel(
    hub: Hub,
) -> None:
    leaving = SelfUnsubscribingSubscriber(hub, "c1")
    hub.subscribe("chat:1", leaving)
    hub.broadcast("chat:1", "join", {"info": {"user": "u", "client": "c"}})
    assert len(leaving.pushes) == 1
    assert not hub.has_subscribers("chat:1")
    assert hub.broadcast_publication("chat:1", PUB) == 0


# ---------------------------------------------------------------------------
# Sessions


def test_session_is_found_by_client_id(hub: Hub) -> None:
    session = RecordingSubscriber("c1", user="u1")
    hub.add_session(session)
    assert hub.session("c1") is session
    assert hub.session("c2") is None


def test_sessions_are_found_by_user(hub: Hub) -> None:
    one, two = RecordingSubscriber("c1", user="u1"), RecordingSubscriber("c2", user="u1")
    other = RecordingSubscriber("c3", user="u2")
    for session in (one, two, other):
        hub.add_session(session)
    assert set(hub.user_sessions("u1")) == {one, two}
    assert hub.user_sessions("u2") == [other]
    assert hub.user_sessions("nobody") == []


def test_removed_session_is_no_longer_found(hub: Hub) -> None:
    session = RecordingSubscriber("c1", user="u1")
    hub.add_session(session)
    hub.remove_session(session)
    assert hub.session("c1") is None
    assert hub.user_sessions("u1") == []


def test_removing_one_session_keeps_the_users_others(hub: Hub) -> None:
    one, two = RecordingSubscriber("c1", user="u1"), RecordingSubscriber("c2", user="u1")
    hub.add_session(one)
    hub.add_session(two)
    hub.remove_session(one)
    assert hub.user_sessions("u1") == [two]


def test_removing_a_stale_session_keeps_the_one_registered_under_its_id(hub: Hub) -> None:
    stale, current = RecordingSubscriber("c1", user="u1"), RecordingSubscriber("c1", user="u1")
    hub.add_session(stale)
    hub.add_session(current)
    hub.remove_session(stale)
    assert hub.session("c1") is current


def test_removing_an_unknown_session_is_harmless(hub: Hub) -> None:
    hub.remove_session(RecordingSubscriber("c1", user="u1"))
    assert hub.num_clients == 0


def test_sessions_lists_every_session_and_tolerates_removal_while_iterating(hub: Hub) -> None:
    sessions = [RecordingSubscriber(f"c{i}", user=f"u{i}") for i in range(3)]
    for session in sessions:
        hub.add_session(session)
    seen: list[Subscriber] = []
    for listed in hub.sessions():
        seen.append(listed)
        hub.remove_session(listed)
    assert seen == sessions
    assert hub.num_clients == 0


# ---------------------------------------------------------------------------
# Stats


def test_stats_of_an_empty_hub_are_zero(hub: Hub) -> None:
    assert (hub.num_clients, hub.num_users, hub.num_channels, hub.num_subscriptions) == (0, 0, 0, 0)
    assert hub.channels() == []


def test_stats_count_clients_users_channels_and_subscriptions(hub: Hub) -> None:
    a1, a2 = RecordingSubscriber("c1", user="alice"), RecordingSubscriber("c2", user="alice")
    b1 = RecordingSubscriber("c3", user="bob")
    for session in (a1, a2, b1):
        hub.add_session(session)
    hub.subscribe("x", a1)
    hub.subscribe("x", b1)
    hub.subscribe("y", a2)
    assert hub.num_clients == 3
    assert hub.num_users == 2
    assert hub.num_channels == 2
    assert hub.num_subscriptions == 3
    assert sorted(hub.channels()) == ["x", "y"]


def test_stats_follow_unsubscribes_and_removals(hub: Hub) -> None:
    a1, b1 = RecordingSubscriber("c1", user="alice"), RecordingSubscriber("c2", user="bob")
    for session in (a1, b1):
        hub.add_session(session)
        hub.subscribe("x", session)
    hub.unsubscribe("x", a1)
    hub.remove_session(a1)
    assert (hub.num_clients, hub.num_users, hub.num_channels, hub.num_subscriptions) == (1, 1, 1, 1)


# ---------------------------------------------------------------------------
# Flushing


def test_sessions_wanting_a_flush_are_flushed_once_on_the_next_loop_pass(hub: Hub) -> None:
    sessions = [RecordingSubscriber(f"c{i}") for i in range(3)]

    async def scenario() -> list[list[int]]:
        for session in sessions:
            hub.want_flush(session)
        before = [s.flushes for s in sessions]
        await asyncio.sleep(0)
        return [before, [s.flushes for s in sessions]]

    assert asyncio.run(scenario()) == [[0, 0, 0], [1, 1, 1]]


def test_one_failing_flush_does_not_stop_the_others(hub: Hub) -> None:
    class Broken(RecordingSubscriber):
        def flush(self) -> None:
            raise RuntimeError("socket gone strange")

    after = RecordingSubscriber("c2")

    async def scenario() -> None:
        hub.want_flush(Broken("c1"))
        hub.want_flush(after)
        await asyncio.sleep(0)

    asyncio.run(scenario())
    assert after.flushes == 1


def test_a_flush_after_a_quiet_spell_runs_on_the_next_loop_pass() -> None:
    hub: Hub = Hub(write_interval=0.05)
    session = RecordingSubscriber("c1")

    async def scenario() -> int:
        hub.want_flush(session)
        await asyncio.sleep(0)
        return session.flushes

    assert asyncio.run(scenario()) == 1


def test_after_a_big_flush_the_next_waits_for_the_write_interval() -> None:
    hub: Hub = Hub(write_interval=0.05)
    crowd = [RecordingSubscriber(f"c{i}") for i in range(BIG_FLUSH)]
    late = RecordingSubscriber("late")

    async def scenario() -> list[int]:
        for session in crowd:
            hub.want_flush(session)
        await asyncio.sleep(0)
        hub.want_flush(late)
        await asyncio.sleep(0.01)
        early = late.flushes
        await asyncio.sleep(0.1)
        return [crowd[0].flushes, early, late.flushes]

    assert asyncio.run(scenario()) == [1, 0, 1]


def test_a_flush_of_fewer_connections_does_not_hold_the_next_back() -> None:
    hub: Hub = Hub(write_interval=0.05)
    few = [RecordingSubscriber(f"c{i}") for i in range(BIG_FLUSH - 1)]
    late = RecordingSubscriber("late")

    async def scenario() -> int:
        for session in few:
            hub.want_flush(session)
        await asyncio.sleep(0)
        hub.want_flush(late)
        await asyncio.sleep(0)
        return late.flushes

    assert asyncio.run(scenario()) == 1


class ChannelLog:
    """A channel listener: records what the hub tells it, in order."""

    def __init__(self) -> None:
        self.told: list[tuple[str, str]] = []

    def occupied_here(self, channel: str) -> None:
        self.told.append(("occupied", channel))

    def vacated_here(self, channel: str) -> None:
        self.told.append(("vacated", channel))


def test_the_channel_listener_hears_of_first_and_last_local_subscribers_only():
    hub: Hub[Any, RecordingSubscriber] = Hub()
    hub.channel_listener = listener = ChannelLog()
    a, b = RecordingSubscriber("a"), RecordingSubscriber("b")
    hub.subscribe("news", a)
    hub.subscribe("news", b)
    hub.unsubscribe("news", a)
    hub.unsubscribe("news", a)  # not subscribed any more: nothing to tell
    hub.unsubscribe("news", b)
    hub.subscribe("news", a)
    assert listener.told == [("occupied", "news"), ("vacated", "news"), ("occupied", "news")]


# ---------------------------------------------------------------------------
# Delta compression: subscribers in their delta variant (server/delta.py)


class DeltaSubscriber(RecordingSubscriber):
    """A subscription that negotiated delta: keeps both forms it is handed."""

    def __init__(self, client_id: str, encoding: Encoding = Encoding.JSON):
        super().__init__(client_id, encoding=encoding)
        self.deltas: list[tuple[Publication, Frame, Frame | None]] = []

    def deliver_delta(
        self, channel: str, pub: Publication, full: Frame, patch: Frame | None
    ) -> None:
        self.deltas.append((pub, full, patch))


def delta_pub(offset: int, version: int, *, epoch: str = "e", delta: bool = True) -> Publication:
    doc = {"items": [{"id": i, "name": f"item-{i}", "v": i * version % 7} for i in range(30)]}
    return Publication(doc, offset, epoch=epoch, delta=delta)


def join_delta(hub: Hub, channel: str, subscriber: RecordingSubscriber) -> None:
    hub.subscribe(channel, subscriber, subscriber.variant.with_delta)


@pytest.fixture
def patch_calls(monkeypatch: pytest.MonkeyPatch) -> list[Encoding]:
    """The encodings the hub makes a patch in, one entry per patch made."""
    calls: list[Encoding] = []
    real = wsfan.delta.make_patch

    def counting(previous: bytes, data: bytes, encoding: Encoding) -> bytes | None:
        calls.append(encoding)
        return real(previous, data, encoding)

    monkeypatch.setattr(wsfan.delta, "make_patch", counting)
    return calls


def test_the_patch_is_made_once_per_encoding_not_per_subscriber(
    hub: Hub, patch_calls: list[Encoding]
) -> None:
    for i in range(10):
        encoding = Encoding.JSON if i % 2 else Encoding.MSGPACK
        join_delta(hub, "doc", DeltaSubscriber(f"c{i}", encoding))
    hub.broadcast_publication("doc", delta_pub(1, 1))
    hub.broadcast_publication("doc", delta_pub(2, 2))
    assert sorted(patch_calls) == [Encoding.JSON, Encoding.MSGPACK]


def test_delta_subscribers_of_one_variant_share_the_full_and_the_patch_frames(hub: Hub) -> None:
    subs = [DeltaSubscriber(f"c{i}") for i in range(5)]
    for s in subs:
        join_delta(hub, "doc", s)
    hub.broadcast_publication("doc", delta_pub(1, 1))
    hub.broadcast_publication("doc", delta_pub(2, 2))
    _, full, patch = subs[0].deltas[1]
    assert patch is not None
    assert all(s.deltas[1][1] is full and s.deltas[1][2] is patch for s in subs)


def test_a_delta_publication_encodes_the_full_and_patch_forms_once_each(
    hub: Hub, encode_calls: list[Encoding]
) -> None:
    for i in range(4):
        join_delta(hub, "doc", DeltaSubscriber(f"d{i}"))
        hub.subscribe("doc", RecordingSubscriber(f"p{i}"))
    hub.broadcast_publication("doc", delta_pub(1, 1))
    encode_calls.clear()
    hub.broadcast_publication("doc", delta_pub(2, 2))
    assert encode_calls == [Encoding.JSON] * 3  # the plain form, the full form, the patch


def test_the_full_form_carries_the_data_as_a_json_string(hub: Hub) -> None:
    sub = DeltaSubscriber("c1")
    join_delta(hub, "doc", sub)
    pub = delta_pub(1, 1)
    hub.broadcast_publication("doc", pub)
    body = json.loads(sub.deltas[0][1].payload)["push"]["pub"]
    assert json.loads(body["data"]) == pub.data and "delta" not in body


def test_the_patch_form_says_delta_and_applies_to_the_previous_data(hub: Hub) -> None:
    sub = DeltaSubscriber("c1", Encoding.MSGPACK)
    join_delta(hub, "doc", sub)
    first, second = delta_pub(1, 1), delta_pub(2, 2)
    hub.broadcast_publication("doc", first)
    hub.broadcast_publication("doc", second)
    patch = sub.deltas[1][2]
    assert patch is not None
    body = msgpack.unpackb(patch.payload)["push"]["pub"]
    assert body["delta"] is True and body["offset"] == 2
    before = msgpack.packb(first.data)
    assert msgpack.unpackb(fossil.apply(before, body["data"])) == second.data


def test_plain_subscribers_of_a_delta_channel_get_the_plain_push(hub: Hub) -> None:
    plain = RecordingSubscriber("p")
    hub.subscribe("doc", plain)
    join_delta(hub, "doc", DeltaSubscriber("d"))
    pub = delta_pub(1, 1)
    hub.broadcast_publication("doc", pub)
    assert json.loads(plain.publications[0][2])["push"]["pub"]["data"] == pub.data


@pytest.mark.parametrize(
    "second",
    [
        delta_pub(3, 2),  # a gap: the hub did not deliver offset 2
        delta_pub(2, 2, epoch="other"),  # another stream
        delta_pub(2, 2, delta=False),  # not delta-enabled
    ],
    ids=["gap", "new epoch", "not delta-enabled"],
)
def test_no_patch_without_the_publication_right_before(hub: Hub, second: Publication) -> None:
    sub = DeltaSubscriber("c1")
    join_delta(hub, "doc", sub)
    hub.broadcast_publication("doc", delta_pub(1, 1))
    hub.broadcast_publication("doc", second)
    assert [patch for _, _, patch in sub.deltas] == [None, None]


def test_the_first_publication_a_hub_delivers_has_no_patch(hub: Hub) -> None:
    sub = DeltaSubscriber("c1")
    join_delta(hub, "doc", sub)
    hub.broadcast_publication("doc", delta_pub(5, 1))
    assert sub.deltas[0][2] is None


def test_a_publication_not_delta_enabled_is_still_the_base_of_the_next_patch(hub: Hub) -> None:
    sub = DeltaSubscriber("c1")
    join_delta(hub, "doc", sub)
    hub.broadcast_publication("doc", delta_pub(1, 1, delta=False))
    hub.broadcast_publication("doc", delta_pub(2, 2))
    assert sub.deltas[1][2] is not None


def test_the_last_publication_is_forgotten_with_the_last_delta_subscriber(hub: Hub) -> None:
    one, two = DeltaSubscriber("c1"), DeltaSubscriber("c2")
    join_delta(hub, "doc", one)
    hub.subscribe("doc", RecordingSubscriber("plain"))
    hub.broadcast_publication("doc", delta_pub(1, 1))
    hub.unsubscribe("doc", one)
    join_delta(hub, "doc", two)
    hub.broadcast_publication("doc", delta_pub(2, 2))
    assert two.deltas[0][2] is None  # nothing kept to patch against


def test_a_channel_without_delta_subscribers_keeps_no_publication(
    hub: Hub, patch_calls: list[Encoding]
) -> None:
    hub.subscribe("doc", RecordingSubscriber("plain"))
    hub.broadcast_publication("doc", delta_pub(1, 1))
    hub.broadcast_publication("doc", delta_pub(2, 2))
    assert patch_calls == [] and not hub._last
