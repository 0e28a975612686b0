"""Key and pub/sub channel names on Redis, one place for every Redis module.

Every key of a channel, and its pub/sub channel, carries the same Redis Cluster
hash tag, so a channel's scripts stay within one slot and `SPUBLISH` from
inside them is allowed: `<prefix>.<kind>.{<escaped channel>}` (kinds: meta,
stream, logged, presence, presence.z, occ.m, occ.s, pub; idempotency and lease
keys append `.<name>`). Escaping makes the tag safe for any channel name:
`%`, `{` and `}` become `%25`, `%7B` and `%7D`, so the tag is exactly the
channel's (a `}` inside it would otherwise end the tag early and a `{` before
the tag would move it), and `untag` gives the channel back.
"""

from __future__ import annotations

__all__ = ["channel_key", "escape", "pubsub_channel", "tag", "unescape", "untag"]

_ESCAPES = (("%", "%25"), ("{", "%7B"), ("}", "%7D"))


def escape(channel: str) -> str:
    """The channel with `%`, `{` and `}` escaped (no brace is left)."""
    for raw, escaped in _ESCAPES:
        channel = channel.replace(raw, escaped)
    return channel


def unescape(text: str) -> str:
    """The inverse of `escape`."""
    for raw, escaped in reversed(_ESCAPES):
        text = text.replace(escaped, raw)
    return text


def tag(channel: str) -> str:
    """The channel's hash tag, braces included."""
    return "{" + escape(channel) + "}"


def untag(text: str) -> str:
    """The channel whose tag `text` starts with (the part up to the closing brace)."""
    return unescape(text[1 : text.index("}")])


def channel_key(prefix: str, kind: str, channel: str, name: str | None = None) -> str:
    """`<prefix>.<kind>.{<escaped channel>}`, then `.<name>` when given."""
    key = f"{prefix}.{kind}.{tag(channel)}"
    return key if name is None else f"{key}.{name}"


def pubsub_channel(prefix: str, channel: str) -> bytes:
    """The channel's pub/sub channel, in the channel's slot."""
    return channel_key(prefix, "pub", channel).encode()
