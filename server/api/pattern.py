"""Channel name patterns for the `channels` method, as Centrifugo matches them.

The glob syntax of gobwas/glob without separators: `*` any run of characters,
`?` one character, `[abc]` / `[a-z]` one of a set, `[!abc]` one not in it,
`{a,b}` one of several alternatives (which may themselves be patterns), and
`\\` makes the next character literal. A pattern matches a whole channel name.
"""

from __future__ import annotations

import re

__all__ = ["compile_pattern"]


def _char_class(pattern: str, start: int) -> tuple[str, int]:
    """The regex for the class opening at `start`, and the index after its `]`."""
    i = start + 1
    negate = i < len(pattern) and pattern[i] == "!"
    if negate:
        i += 1
    parts: list[str] = []
    while i < len(pattern) and pattern[i] != "]":
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            parts.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if char == "-" and parts and i + 1 < len(pattern) and pattern[i + 1] != "]":
            parts.append("-")
        else:
            parts.append(re.escape(char))
        i += 1
    if i >= len(pattern):
        raise ValueError("unclosed [")
    if not parts:
        raise ValueError("empty []")
    return "[" + ("^" if negate else "") + "".join(parts) + "]", i + 1


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """A compiled pattern to `fullmatch` channel names with; ValueError names a
    malformed one (unclosed `[` or `{`, empty `[]`, trailing `\\`, bad range)."""
    out: list[str] = []
    depth = 0
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            if i + 1 >= len(pattern):
                raise ValueError("ends with an escaping backslash")
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if char == "[":
            regex, i = _char_class(pattern, i)
            out.append(regex)
            continue
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "{":
            depth += 1
            out.append("(?:")
        elif char == "," and depth:
            out.append("|")
        elif char == "}" and depth:
            depth -= 1
            out.append(")")
        else:
            out.append(re.escape(char))
        i += 1
    if depth:
        raise ValueError("unclosed {")
    try:
        return re.compile("".join(out), re.DOTALL)
    except re.error as exc:  # e.g. a reversed range [z-a]
        raise ValueError(str(exc)) from None
