"""The fault suite's verdict (tests/fault_check.py): what it counts from what the
publishers were told and what a subscriber saw, without any server."""

from __future__ import annotations

from tests.fault_check import Acked, FaultReport, Received, spans, subscriber_result

EPOCH = "e1"


def acked(*offsets: int) -> list[Acked]:
    return [Acked(f"p-{n}", n, EPOCH, 1) for n in offsets]


def report(**fields: object) -> FaultReport:
    base: dict[str, object] = dict(
        scenario="x", acknowledged=3, epoch=EPOCH, acked_epochs={EPOCH: 3},
        missing_from_history=[], mismatched=[], other_epoch=0, unreadable=[], late=[],
        not_in_log=0, reused=0, subscribers=[],
    )  # fmt: skip
    base.update(fields)
    return FaultReport(**base)  # type: ignore[arg-type]


def test_spans_turn_offsets_into_inclusive_runs():
    assert spans([7, 1, 3, 2]) == [(1, 3), (7, 7)]
    assert spans([]) == []


def test_a_subscriber_that_got_everything_once_is_ok():
    seen = Received("s0", 1, [(n, f"p-{n}", EPOCH) for n in (1, 2, 3)], [(False, False, EPOCH)])
    result = subscriber_result(seen, acked(1, 2, 3))
    assert result.ok
    assert (result.missed, result.duplicates, result.recovered_false) == ([], 0, 0)


def test_a_subscriber_result_counts_missed_duplicates_and_failed_recoveries():
    pubs = [(1, "p-1", EPOCH), (1, "p-1", EPOCH), (3, "p-3", EPOCH)]
    subscribed = [(False, False, EPOCH), (True, False, EPOCH), (True, True, EPOCH)]
    result = subscriber_result(Received("s0", 1, pubs, subscribed), acked(1, 2, 3))
    assert (result.missed, result.duplicates, result.recovered_false) == ([2], 1, 1)
    assert not result.ok


def test_a_subscriber_result_names_an_epoch_change_instead_of_passing():
    pubs = [(1, "p-1", EPOCH), (1, "p-9", "e2")]
    subscribed = [(False, False, EPOCH), (True, True, "e2")]
    result = subscriber_result(Received("s0", 1, pubs, subscribed), acked(1))
    assert result.epochs == [EPOCH, "e2"]
    assert result.reused == 0  # one offset, but in two epochs
    assert not result.ok
    assert "EPOCH CHANGED e1 -> e2" in result.describe()


def test_a_position_that_came_with_two_publications_counts_as_reused():
    pubs = [(1, "p-1", EPOCH), (1, "p-9", EPOCH)]
    result = subscriber_result(Received("s0", 1, pubs, [(False, False, EPOCH)]), acked(1))
    assert result.reused == 1


def test_a_report_fails_on_offsets_history_will_not_page_over_even_if_none_was_acknowledged():
    assert report().ok
    holed = report(unreadable=[(4, 5, "error 112 unrecoverable position")])
    assert not holed.ok
    assert "history would not page over offsets 4-5: error 112" in holed.describe()


def test_a_report_counts_lost_as_missing_mismatched_and_out_of_epoch():
    lost = report(missing_from_history=[1, 2], mismatched=[3], other_epoch=4)
    assert lost.lost == 7
    assert "missing (offsets 1-2)" in lost.describe()
    assert "EPOCH CHANGED: 4 acknowledged" in lost.describe()
    assert lost.to_dict()["missing_from_history"] == [(1, 2)]


def test_a_report_fails_on_publications_history_gave_back_only_later():
    seam = report(late=[7, 8])
    assert seam.lost == 0
    assert not seam.ok
    assert "2 acknowledged publications came back only" in seam.describe()
