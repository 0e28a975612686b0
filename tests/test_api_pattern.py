"""Channel patterns of the `channels` method: gobwas/glob syntax, whole-name matches."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wsfan.api.pattern import MAX_NESTING, MAX_PATTERN_LENGTH, compile_pattern

from tests.conftest import TIMEOUT_SCALE


def matches(pattern: str, channel: str) -> bool:
    """Whether `pattern` matches the whole of `channel`."""
    return compile_pattern(pattern).fullmatch(channel)


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


# Bounds ------------------------------------------------------------------------


def test_a_pattern_of_the_length_limit_compiles_and_one_more_character_is_refused() -> None:
    assert matches("a" * MAX_PATTERN_LENGTH, "a" * MAX_PATTERN_LENGTH)
    with pytest.raises(ValueError, match=f"longer than {MAX_PATTERN_LENGTH} characters"):
        compile_pattern("a" * (MAX_PATTERN_LENGTH + 1))


def test_braces_nested_to_the_limit_compile_and_one_deeper_are_refused() -> None:
    assert matches("{" * MAX_NESTING + "a" + "}" * MAX_NESTING, "a")
    deeper = MAX_NESTING + 1
    with pytest.raises(ValueError, match=f"braces nested deeper than {MAX_NESTING}"):
        compile_pattern("{" * deeper + "a" + "}" * deeper)


@pytest.mark.parametrize(
    "pattern", ["*a" * 20 + "b", "{*a,*b}" * 20 + "c", "*?" * 100 + "!", "{{{*a}*}*}" * 30]
)
def test_a_match_never_backtracks_whatever_the_pattern(pattern: str) -> None:
    # A backtracking regex took 50 s for "*a" * 8 + "b" against 60 characters.
    compiled = compile_pattern(pattern)
    start = time.perf_counter()
    for channel in ("a" * 255, "ab" * 127, "a" * 254 + "c"):
        compiled.fullmatch(channel)
    assert time.perf_counter() - start < 2 * TIMEOUT_SCALE


# The same answers as the glob's regex translation, where that one is quick ---------


def as_regex(pattern: str) -> re.Pattern[str]:
    """The straightforward translation (it backtracks: only for short names)."""
    out, i, depth = [], 0, 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if char == "[":
            end = pattern.index("]", i + 2)
            body = pattern[i + 1 : end]
            negate = body.startswith("!")
            out.append("[" + ("^" if negate else "") + body[negate:].replace("\\", "\\\\") + "]")
            i = end + 1
            continue
        if char == "{":
            depth += 1
            out.append("(?:")
        elif char == "," and depth:
            out.append("|")
        elif char == "}" and depth:
            depth -= 1
            out.append(")")
        else:
            out.append({"*": ".*", "?": "."}.get(char, re.escape(char)))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def well_formed(parts: list[str]) -> str:
    """Balance the braces of a random pattern (drop stray closers, close what is open)."""
    out, depth = [], 0
    for part in parts:
        if part == "}":
            if not depth:
                continue
            depth -= 1
        elif part == "{":
            depth += 1
        out.append(part)
    return "".join(out) + "}" * depth


@settings(max_examples=300, deadline=None)
@given(
    parts=st.lists(
        st.sampled_from(["a", "b", "*", "?", "[ab]", "[!a]", "[a-b]", "{", "}", ",", "\\*"]),
        max_size=10,
    ),
    channel=st.text(alphabet="ab*,", max_size=8),
)
def test_matches_agree_with_the_regex_translation(parts: list[str], channel: str) -> None:
    pattern = well_formed(parts)
    assert matches(pattern, channel) == (as_regex(pattern).fullmatch(channel) is not None)
