"""Channel name patterns, as Centrifugo matches them (the `channels` method of the
server API, and channel sources in server/app/sources.py).

The glob syntax of gobwas/glob without separators: `*` any run of characters,
`?` one character, `[abc]` / `[a-z]` one of a set, `[!abc]` one not in it,
`{a,b}` one of several alternatives (which may themselves be patterns), and
`\\` makes the next character literal. A pattern matches a whole channel name.

A match never backtracks: the pattern becomes a nondeterministic automaton that
is run as a deterministic one built lazily (as RE2 does), so its time grows
with the channel name's length, times the pattern's size at worst, whatever the
pattern. (Translated to a Python regex, `*a*a*a*a*a*a*a*ab` took 50 seconds
against one 60-character name, with the event loop blocked.) A pattern is at
most MAX_PATTERN_LENGTH characters, its braces nested at most MAX_NESTING deep.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeAlias

__all__ = ["MAX_NESTING", "MAX_PATTERN_LENGTH", "Pattern", "compile_pattern"]

MAX_PATTERN_LENGTH = 1024
MAX_NESTING = 32
_CACHE_SIZE = 4096  # transitions remembered per pattern; beyond, steps are computed

Test = Callable[[str], bool]
STAR = "*"
Item: TypeAlias = "Test | str | list[list[Item]]"
"""Of a parsed pattern: a Test (one character), STAR, or alternative sequences."""


def _any(char: str) -> bool:
    return True


def _class_test(negate: bool, singles: frozenset[str], ranges: tuple[tuple[str, str], ...]) -> Test:
    def test(char: str) -> bool:
        inside = char in singles or any(low <= char <= high for low, high in ranges)
        return inside is not negate

    return test


def _char_class(pattern: str, start: int) -> tuple[Test, int]:
    """The test for the class opening at `start`, and the index after its `]`."""
    i = start + 1
    negate = i < len(pattern) and pattern[i] == "!"
    if negate:
        i += 1
    singles: set[str] = set()
    ranges: list[tuple[str, str]] = []
    empty = True
    while i < len(pattern) and pattern[i] != "]":
        if pattern[i] == "\\" and i + 1 < len(pattern):
            char, i = pattern[i + 1], i + 2
        else:
            char, i = pattern[i], i + 1
        empty = False
        if pattern[i : i + 1] == "-" and i + 1 < len(pattern) and pattern[i + 1] != "]":
            high, i = pattern[i + 1], i + 2
            if high == "\\" and i < len(pattern):
                high, i = pattern[i], i + 1
            if high < char:
                raise ValueError(f"bad character range {char}-{high}")
            ranges.append((char, high))
        else:
            singles.add(char)
    if i >= len(pattern):
        raise ValueError("unclosed [")
    if empty:
        raise ValueError("empty []")
    return _class_test(negate, frozenset(singles), tuple(ranges)), i + 1


def _parse(pattern: str) -> list[Item]:
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise ValueError(f"longer than {MAX_PATTERN_LENGTH} characters")
    groups: list[tuple[list[list[Item]], list[Item]]] = []  # open braces: (alternatives, outer)
    seq: list[Item] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            if i + 1 >= len(pattern):
                raise ValueError("ends with an escaping backslash")
            seq.append(pattern[i + 1].__eq__)
            i += 2
            continue
        if char == "[":
            test, i = _char_class(pattern, i)
            seq.append(test)
            continue
        if char == "*":
            if not seq or seq[-1] != STAR:
                seq.append(STAR)
        elif char == "?":
            seq.append(_any)
        elif char == "{":
            if len(groups) >= MAX_NESTING:
                raise ValueError(f"braces nested deeper than {MAX_NESTING}")
            groups.append(([], seq))
            seq = []
        elif char == "," and groups:
            groups[-1][0].append(seq)
            seq = []
        elif char == "}" and groups:
            alternatives, outer = groups.pop()
            alternatives.append(seq)
            outer.append(alternatives)
            seq = outer
        else:
            seq.append(char.__eq__)
        i += 1
    if groups:
        raise ValueError("unclosed {")
    return seq


class Pattern:
    """A compiled pattern; `fullmatch(channel)` says whether it matches the whole name."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        # The automaton: state s consumes a character passing tests[s] and moves to
        # out[s][0]; a state whose test is None moves on without one (to each of out[s]).
        self._tests: list[Test | None] = [None]
        self._out: list[list[int]] = [[]]  # state 0 accepts
        start = self._build(_parse(pattern), 0)
        self._start = self._closure([start])
        self._cache: dict[tuple[frozenset[int], str], frozenset[int]] = {}

    def _state(self, test: Test | None, out: list[int]) -> int:
        self._tests.append(test)
        self._out.append(out)
        return len(self._tests) - 1

    def _build(self, seq: list[Item], after: int) -> int:
        """The state that matches `seq` and then goes on to `after`."""
        for item in reversed(seq):
            if isinstance(item, str):  # STAR
                loop = self._state(None, [])
                self._out[loop] = [self._state(_any, [loop]), after]
                after = loop
            elif isinstance(item, list):
                after = self._state(None, [self._build(alt, after) for alt in item])
            else:
                after = self._state(item, [after])
        return after

    def _closure(self, states: Iterable[int]) -> frozenset[int]:
        """The states reachable without consuming, keeping those that consume (and 0)."""
        stack = list(states)
        seen = set(stack)
        while stack:
            state = stack.pop()
            if self._tests[state] is None:
                for nxt in self._out[state]:
                    if nxt not in seen:
                        seen.add(nxt)
                        stack.append(nxt)
        return frozenset(s for s in seen if s == 0 or self._tests[s] is not None)

    def _step(self, states: frozenset[int], char: str) -> frozenset[int]:
        tests, out = self._tests, self._out
        return self._closure(out[s][0] for s in states if (test := tests[s]) and test(char))

    def fullmatch(self, channel: str) -> bool:
        states, cache = self._start, self._cache
        for char in channel:
            nxt = cache.get((states, char))
            if nxt is None:
                nxt = self._step(states, char)
                if len(cache) < _CACHE_SIZE:
                    cache[(states, char)] = nxt
            if not nxt:
                return False
            states = nxt
        return 0 in states

    def __repr__(self) -> str:
        return f"Pattern({self.pattern!r})"


def compile_pattern(pattern: str) -> Pattern:
    """A compiled pattern to `fullmatch` channel names with; ValueError names a
    malformed one (unclosed `[` or `{`, empty `[]`, trailing `\\`, bad range, too
    long, nested too deep)."""
    return Pattern(pattern)
