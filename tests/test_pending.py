"""Connections not upgraded yet (server/web/pending.py): counted, and the one
waiting longest for a request head is the one dropped to make room."""

from __future__ import annotations

from wsfan.web.pending import PendingConnections


class Closed:
    """Close callbacks that note which key they closed (and remove it, as real ones do)."""

    def __init__(self, pending: PendingConnections) -> None:
        self.pending = pending
        self.keys: list[str] = []

    def __call__(self, key: str):
        def close() -> None:
            self.keys.append(key)
            self.pending.remove(key)

        return close


def test_added_connections_count_until_removed() -> None:
    pending = PendingConnections(3)
    pending.add("a", lambda: None)
    pending.add("b", lambda: None)
    pending.remove("a")
    pending.remove("a")  # idempotent
    assert (pending.count, pending.waiting) == (1, 1)


def test_the_longest_waiting_connection_is_dropped_first() -> None:
    pending = PendingConnections(3)
    closed = Closed(pending)
    for key in "abc":
        pending.add(key, closed(key))
    assert pending.drop_longest_waiting()
    assert closed.keys == ["a"] and pending.count == 2 and pending.dropped == 1


def test_a_busy_connection_is_never_dropped() -> None:
    pending = PendingConnections(2)
    closed = Closed(pending)
    pending.add("a", closed("a"))
    pending.add("b", closed("b"))
    pending.busy("a")
    pending.busy("b")
    assert not pending.drop_longest_waiting()
    assert closed.keys == [] and pending.count == 2


def test_waiting_again_goes_to_the_back_of_the_line() -> None:
    pending = PendingConnections(3)
    closed = Closed(pending)
    pending.add("a", closed("a"))
    pending.add("b", closed("b"))
    pending.busy("a")
    pending.wait("a", closed("a"))  # its next keep-alive request
    pending.drop_longest_waiting()
    assert closed.keys == ["b"]


def test_waiting_while_already_waiting_keeps_the_place_and_takes_the_new_close() -> None:
    pending = PendingConnections(3)
    closed = Closed(pending)
    pending.add("a", lambda: None)  # closed as a bare socket at first
    pending.add("b", closed("b"))
    pending.wait("a", closed("a"))  # handed to Tornado: closed as its stream now
    pending.drop_longest_waiting()
    assert closed.keys == ["a"]


def test_a_removed_connection_does_not_come_back_by_waiting() -> None:
    pending = PendingConnections(3)
    pending.add("a", lambda: None)
    pending.remove("a")
    pending.wait("a", lambda: None)
    assert (pending.count, pending.waiting) == (0, 0)
