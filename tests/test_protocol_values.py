"""The protocol's value types (server/protocol/values.py): client info and publications as maps."""

from __future__ import annotations

from wsfan.protocol import (
    ClientInfo,
    Encoding,
    Publication,
)

JSON = Encoding.JSON
MSGPACK = Encoding.MSGPACK


# ---------------------------------------------------------------------------
# Value types


def test_client_info_round_trips_through_a_map() -> None:
    info = ClientInfo("u1", "c1", {"name": "Ann"}, {"role": "mod"})
    assert info.to_dict() == {
        "user": "u1",
        "client": "c1",
        "conn_info": {"name": "Ann"},
        "chan_info": {"role": "mod"},
    }
    assert ClientInfo.from_dict(info.to_dict()) == info


def test_client_info_omits_absent_conn_and_chan_info() -> None:
    assert ClientInfo("u1", "c1").to_dict() == {"user": "u1", "client": "c1"}


def test_client_info_always_carries_user_even_when_anonymous() -> None:
    assert ClientInfo("", "c1").to_dict() == {"user": "", "client": "c1"}


def test_publication_round_trips_through_a_map() -> None:
    pub = Publication({"text": "hi"}, 16, ClientInfo("u1", "c1", {"n": 1}), {"k": "v"})
    assert pub.to_dict() == {
        "data": {"text": "hi"},
        "offset": 16,
        "info": {"user": "u1", "client": "c1", "conn_info": {"n": 1}},
        "tags": {"k": "v"},
    }
    assert Publication.from_dict(pub.to_dict()) == pub


def test_publication_without_history_info_or_tags_is_only_its_data() -> None:
    assert Publication({"text": "hi"}).to_dict() == {"data": {"text": "hi"}}
    assert Publication("x", 0, None, {}).to_dict() == {"data": "x"}


def test_publication_from_a_minimal_map_has_defaults() -> None:
    assert Publication.from_dict({"data": 1}) == Publication(1, 0, None, None)
