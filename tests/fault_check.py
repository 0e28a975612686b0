"""The verdict after a fault: what publishers were promised against what history
and each subscriber hold.

`check` pages the channel's history through the server API from its first
offset (`since` {offset, epoch}, back through MongoDB past the Redis window) and
compares every acknowledged publication, by offset and by its data's id; then it
compares each subscriber's publications, by id. Where history cannot be paged
over an offset, it narrows the failing page down and steps over the unreadable
offsets one by one, so every readable publication is still counted; a few
seconds later it tries those offsets again, to tell what the log had only late
(the seam between the Redis window and the log) from what it lost.
"""

from __future__ import annotations

import http.client
import json
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import msgpack
from pymongo import MongoClient

from tests.conftest import TIMEOUT_SCALE

__all__ = [
    "Acked",
    "FaultReport",
    "Received",
    "SubscriberResult",
    "check",
    "spans",
    "subscriber_result",
]

API_KEY = "k"
CHANNEL = "log:faults"
PAGE = 200  # publications per history call: small, so narrowing a failing page stays cheap
TIMEOUT = 5 * TIMEOUT_SCALE
LOG_WAIT = 3.0  # before reading unreadable offsets again: the log's writer catching up
SHUTDOWN_TIMEOUT = 10.0  # server.shutdown_timeout: SIGTERM to exit, at most (the default)


@dataclass(frozen=True)
class Acked:
    """A publication the server API answered with a position."""

    ident: str
    offset: int
    epoch: str
    port: int


@dataclass
class Received:
    """What one SDK subscriber saw: (offset, id, epoch of its subscription) of each
    publication, (was_recovering, recovered, epoch) of each `subscribed` event,
    (code, reason) of each unsubscribe."""

    name: str
    port: int
    publications: list[tuple[int, str, str]] = field(default_factory=list)
    subscribed: list[tuple[bool, bool, str]] = field(default_factory=list)
    unsubscribed: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class SubscriberResult:
    name: str
    port: int
    received: int
    missed: list[int]  # offsets of acknowledged publications it never got
    duplicates: int  # publications it got more than once (extra copies)
    recovered_false: int  # resubscriptions that answered recovered: false
    epochs: list[str]  # distinct epochs its subscriptions reported, in order
    unsubscribed: list[tuple[int, str]]
    reused: int  # (epoch, offset) positions it got with two different publications

    @property
    def ok(self) -> bool:
        trouble = self.missed or self.duplicates or self.recovered_false or self.reused
        return not trouble and len(self.epochs) <= 1

    def describe(self) -> str:
        text = (
            f"{self.name} (port {self.port}): received {self.received}, "
            f"missed {len(self.missed)}{_at(self.missed)}, {self.duplicates} duplicates, "
            f"recovered:false {self.recovered_false}"
        )
        if self.reused:
            text += f"; {self.reused} POSITIONS REUSED for other publications"
        if len(self.epochs) > 1:
            text += f"; EPOCH CHANGED {' -> '.join(self.epochs)} (its counts span epochs)"
        if self.unsubscribed:
            text += f"; unsubscribed {self.unsubscribed}"
        return text


@dataclass
class FaultReport:
    scenario: str
    acknowledged: int
    epoch: str  # the channel's epoch when checked
    acked_epochs: dict[str, int]  # acknowledged publications per epoch
    missing_from_history: list[int]  # acknowledged offsets history cannot give back
    mismatched: list[int]  # acknowledged offsets where history holds other data
    other_epoch: int  # acknowledged in an epoch that is no longer the channel's
    unreadable: list[tuple[int, int, str]]  # offset spans history would not page over
    late: list[int]  # acknowledged offsets history gave only LOG_WAIT s later (the seam)
    not_in_log: int  # acknowledged (current epoch) without a row in MongoDB: diagnostic
    reused: int  # (epoch, offset) positions acknowledged to two different publications
    subscribers: list[SubscriberResult]
    failures: dict[str, int] = field(default_factory=dict)  # unacknowledged attempts
    seconds: dict[str, float] = field(default_factory=dict)  # per phase of the scenario
    exits: list[tuple[int, int | None, float]] = field(default_factory=list)  # see `exits_ok`
    warnings: list[tuple[str, int]] = field(default_factory=list)  # the servers' own, counted
    logs: str = ""  # where the servers' logs are

    @property
    def lost(self) -> int:
        """Acknowledged publications history does not give back as published."""
        return len(self.missing_from_history) + len(self.mismatched) + self.other_epoch

    @property
    def max_missed(self) -> int:
        return max((len(s.missed) for s in self.subscribers), default=0)

    @property
    def recovered_false(self) -> int:
        return sum(s.recovered_false for s in self.subscribers)

    @property
    def exits_ok(self) -> bool:
        """Every SIGTERM ended in exit 0 within server.shutdown_timeout (plus slack)."""
        most = SHUTDOWN_TIMEOUT + TIMEOUT_SCALE
        return all(code == 0 and t <= most for _, code, t in self.exits)

    @property
    def ok(self) -> bool:
        trouble = self.lost or self.unreadable or self.late or self.reused or not self.exits_ok
        return not trouble and all(s.ok for s in self.subscribers)

    @property
    def positions_unique(self) -> bool:
        """No (epoch, offset) stands for two publications: not in what publishers were
        told, not in history, not in what any subscriber got."""
        return not (self.reused or self.mismatched or any(s.reused for s in self.subscribers))

    def describe(self) -> str:
        epochs = ", ".join(f"{e or '?'}: {n}" for e, n in self.acked_epochs.items())
        lines = [
            f"{self.scenario}: {'ok' if self.ok else 'FAILED'}; "
            f"{self.acknowledged} acknowledged (epochs {epochs}); seconds {self.seconds}",
            f"  unacknowledged attempts: {self.failures or 'none'}",
            f"  history (epoch {self.epoch}): {len(self.missing_from_history)} acknowledged "
            f"missing{_at(self.missing_from_history)}, {len(self.mismatched)} with other "
            f"data{_at(self.mismatched)}",
        ]
        if self.reused:
            lines.append(
                f"  POSITIONS REUSED: {self.reused} (epoch, offset) pairs were acknowledged "
                f"to two different publications"
            )
        if self.other_epoch:
            lines.append(
                f"  EPOCH CHANGED: {self.other_epoch} acknowledged publications are in an "
                f"epoch the channel no longer has (not readable by since)"
            )
        if self.unreadable:
            shown = "; ".join(f"{a}-{b}: {why}" for a, b, why in self.unreadable[:5])
            lines.append(f"  history would not page over offsets {shown}")
        if self.late:
            lines.append(
                f"  {len(self.late)} acknowledged publications came back only {LOG_WAIT:g} s "
                f"later{_at(self.late)}: at first neither the Redis window nor the log "
                f"held them"
            )
        lines.append(f"  MongoDB log: {self.not_in_log} acknowledged publications have no row")
        lines += [f"  {s.describe()}" for s in self.subscribers]
        if self.exits:
            shown = ", ".join(
                f"n{i} {'still running, killed' if code is None else f'exit {code}'} in {t:g} s"
                for i, code, t in self.exits
            )
            late = "" if self.exits_ok else f" (FAILED: not all 0 within {SHUTDOWN_TIMEOUT:g} s)"
            lines.append(f"  after SIGTERM: {shown}{late}")
        if self.warnings:
            lines.append("  server warnings (count, line):")
            lines += [f"    {n:5} {line}" for line, n in self.warnings]
        if self.logs:
            lines.append(f"  server logs: {self.logs}/n*.stderr")
        return "\n".join(lines)

    def assert_no_loss(self) -> None:
        assert self.ok, self.describe()

    def assert_positions_unique(self) -> None:
        assert self.positions_unique, self.describe()

    def to_dict(self) -> dict[str, Any]:
        """Every field (offset lists as inclusive spans), plus the summary figures."""
        data = asdict(self)
        for key in ("missing_from_history", "mismatched", "late"):
            data[key] = spans(data[key])
        for sub in data["subscribers"]:
            sub["missed"] = spans(sub["missed"])
        data.update(lost=self.lost, max_missed=self.max_missed, ok=self.ok)
        data["recovered_false"] = self.recovered_false
        return data


def spans(offsets: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted offsets as inclusive runs: [1, 2, 3, 7] -> [(1, 3), (7, 7)]."""
    runs: list[tuple[int, int]] = []
    for n in sorted(offsets):
        if runs and n == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], n)
        else:
            runs.append((n, n))
    return runs


def _at(offsets: list[int], most: int = 4) -> str:
    if not offsets:
        return ""
    runs = [f"{a}-{b}" if a != b else str(a) for a, b in spans(offsets)]
    more = f", ... {len(runs) - most} more" if len(runs) > most else ""
    return f" (offsets {', '.join(runs[:most])}{more})"


class _Api:
    """Blocking server API calls to whichever of `ports` answers."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports

    def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        last: Exception | None = None
        for port in self.ports:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
            try:
                conn.request("POST", f"/api/{method}", json.dumps(params), {"X-API-Key": API_KEY})
                response = conn.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException) as exc:
                last = exc
                continue
            finally:
                conn.close()
            if response.status == 200:
                return dict(json.loads(body))
            last = RuntimeError(f"HTTP {response.status}: {body[:200]!r}")
        raise AssertionError(f"no instance answered {method}: {last!r}")

    def page(self, epoch: str, after: int, limit: int) -> dict[str, Any]:
        since = {"offset": after, "epoch": epoch}
        return self.call("history", {"channel": CHANNEL, "since": since, "limit": limit})


def read_history(api: _Api, epoch: str, top: int) -> tuple[dict[int, str], list[Any]]:
    """{offset: id} of everything history gives back in `epoch` up to `top`, and the
    spans (first, last, error) it would not page over.

    A page that fails is bisected to the first offset it will not give (pages that
    end before it come back whole); that offset is stepped over, and paging goes on.
    Two calls per unreadable offset, about ten per run of them.
    """
    found: dict[int, str] = {}
    unreadable: list[tuple[int, int, str]] = []
    after = 0
    while after < top:
        answer = api.page(epoch, after, PAGE)
        if "error" in answer:
            good, bad, why = 0, PAGE, _error(answer)
            first = api.page(epoch, after, 1)  # in a run of holes, most often this one
            if "error" in first:
                bad, why = 1, _error(first)
            else:
                good, answer = 1, first
            while bad - good > 1:
                mid = (good + bad) // 2
                tried = api.page(epoch, after, mid)
                if "error" in tried:
                    bad, why = mid, _error(tried)
                else:
                    good, answer = mid, tried
            if good == 0:  # offset after+1 itself: step over it
                if unreadable and unreadable[-1][1] == after and unreadable[-1][2] == why:
                    unreadable[-1] = (unreadable[-1][0], after + 1, why)
                else:
                    unreadable.append((after + 1, after + 1, why))
                after += 1
                continue
        pubs = answer["result"]["publications"]
        if not pubs:  # nothing, yet no error: the rest is beyond reach
            unreadable.append((after + 1, top, "empty page below the top"))
            break
        for pub in pubs:
            found[pub["offset"]] = (pub.get("data") or {}).get("id", "?")
        after = pubs[-1]["offset"]
    return found, unreadable


def _error(answer: dict[str, Any]) -> str:
    error = answer["error"]
    return f"error {error.get('code')} {error.get('message', '')}".strip()


def reread(
    api: _Api, epoch: str, unreadable: list[tuple[int, int, str]], found: dict[int, str]
) -> list[int]:
    """After LOG_WAIT, the offsets of `unreadable` that history gives now (added to
    `found`): what the log only had later, not what it lost."""
    time.sleep(LOG_WAIT)
    late = []
    for first, last, _ in unreadable:
        for offset in range(first, last + 1):
            answer = api.page(epoch, offset - 1, 1)
            pubs = answer.get("result", {}).get("publications", [])
            if pubs and pubs[0]["offset"] == offset:
                found[offset] = (pubs[0].get("data") or {}).get("id", "?")
                late.append(offset)
    return late


def without(
    unreadable: list[tuple[int, int, str]], readable: set[int]
) -> list[tuple[int, int, str]]:
    """`unreadable` spans less the offsets in `readable`."""
    left = []
    for first, last, why in unreadable:
        offsets = [n for n in range(first, last + 1) if n not in readable]
        left += [(a, b, why) for a, b in spans(offsets)]
    return left


def logged(mongo_url: str, epoch: str) -> dict[int, str]:
    """{offset: id} of the channel's rows in MongoDB's log, in `epoch`."""
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_url, serverSelectionTimeoutMS=3000)
    try:
        rows = client["wsfan"]["publications"].find({"channel": CHANNEL, "epoch": epoch})
        result = {}
        for row in rows:
            pub = msgpack.unpackb(row["pub"], raw=False)
            result[row["offset"]] = (pub.get("data") or {}).get("id", "?")
        return result
    finally:
        client.close()


def subscriber_result(received: Received, acked: list[Acked]) -> SubscriberResult:
    """What `received` lacks of `acked` (by id), and what it got more than once."""
    counts = Counter(ident for _, ident, _ in received.publications)
    at: dict[tuple[str, int], set[str]] = {}
    for offset, ident, epoch in received.publications:
        at.setdefault((epoch, offset), set()).add(ident)
    epochs: list[str] = []
    for _, _, epoch in received.subscribed:
        if epoch and epoch not in epochs:
            epochs.append(epoch)
    return SubscriberResult(
        received.name,
        received.port,
        len(received.publications),
        sorted(a.offset for a in acked if a.ident not in counts),
        sum(n - 1 for n in counts.values() if n > 1),
        sum(1 for _, recovered, _ in received.subscribed[1:] if not recovered),
        epochs,
        list(received.unsubscribed),
        sum(1 for idents in at.values() if len(idents) > 1),
    )


def check(
    scenario: str,
    ports: list[int],
    acked: list[Acked],
    received: list[Received],
    mongo_url: str,
) -> FaultReport:
    """Compare `acked` with history (read through `ports`) and with each subscriber."""
    api = _Api(ports)
    position = api.call("history", {"channel": CHANNEL, "limit": 0})["result"]
    epoch, top = position["epoch"], position["offset"]
    found, unreadable = read_history(api, epoch, top)
    late = reread(api, epoch, unreadable, found) if unreadable else []
    if late:
        unreadable = without(unreadable, set(late))
    current = [a for a in acked if a.epoch == epoch]
    in_log = logged(mongo_url, epoch)
    promised: dict[tuple[str, int], set[str]] = {}
    for a in acked:
        promised.setdefault((a.epoch, a.offset), set()).add(a.ident)
    return FaultReport(
        scenario=scenario,
        acknowledged=len(acked),
        epoch=epoch,
        acked_epochs=dict(Counter(a.epoch for a in acked)),
        missing_from_history=sorted(a.offset for a in current if a.offset not in found),
        mismatched=sorted(
            a.offset for a in current if a.offset in found and found[a.offset] != a.ident
        ),
        other_epoch=len(acked) - len(current),
        unreadable=unreadable,
        late=sorted(a.offset for a in current if a.offset in set(late)),
        not_in_log=sum(1 for a in current if in_log.get(a.offset) != a.ident),
        reused=sum(1 for idents in promised.values() if len(idents) > 1),
        subscribers=[subscriber_result(r, acked) for r in received],
    )
