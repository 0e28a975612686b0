"""Channel patterns of the `channels` method: gobwas/glob syntax, whole-name matches."""

from __future__ import annotations

import re

import pytest

from server.api.pattern import compile_pattern


def matches(pattern: str, channel: str) -> bool:
    return compile_pattern(pattern).fullmatch(channel) is not None


@pytest.mark.parametrize(
    ("pattern", "channel", "expected"),
    [
        ("news", "news", True),
        ("news", "news2", False),
        ("chat:*", "chat:lobby", True),
        ("chat:*", "chat:", True),
        ("chat:*", "news:lobby", False),
        ("*", "anything:at/all", True),
        ("*:lobby", "chat:lobby", True),
        ("room?", "room1", True),
        ("room?", "room12", False),
        ("room[0-9]", "room7", True),
        ("room[0-9]", "roomx", False),
        ("room[!0-9]", "roomx", True),
        ("room[!0-9]", "room7", False),
        ("room[abc]", "roomb", True),
        ("{chat,news}:*", "news:today", True),
        ("{chat,news}:*", "sport:today", False),
        ("{chat:*,feed}", "feed", True),
        ("a.b", "a.b", True),
        ("a.b", "axb", False),
        ("(x)+", "(x)+", True),
        ("\\*", "*", True),
        ("\\*", "a", False),
        ("a,b", "a,b", True),
        ("a}b", "a}b", True),
    ],
)
def test_pattern_matches_like_centrifugo(pattern: str, channel: str, expected: bool) -> None:
    assert matches(pattern, channel) is expected


def test_star_matches_across_lines_and_unicode() -> None:
    assert matches("x*", "x\nü")


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("room[0-9", "unclosed ["),
        ("{a,b", "unclosed {"),
        ("room[]", "empty []"),
        ("trailing\\", "backslash"),
        ("[z-a]", "range"),
    ],
)
def test_malformed_pattern_raises_value_error_naming_the_problem(
    pattern: str, problem: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        compile_pattern(pattern)
