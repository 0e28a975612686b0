"""Key names on Redis: one hash tag per channel, safe for any channel name."""

from __future__ import annotations

import pytest
from redis.crc import key_slot
from wsfan.broker.redis_keys import channel_key, escape, pubsub_channel, untag


@pytest.mark.parametrize("channel", ["news", "a}b", "{x}", "%7B", "50%", "}{", ""])
def test_untag_gives_back_the_channel_whatever_its_name(channel: str) -> None:
    key = channel_key("p", "meta", channel)
    assert untag(key[len("p.meta.") :]) == channel


def test_an_escaped_channel_holds_no_brace() -> None:
    assert not set(escape("{a}b{")) & set("{}")


def test_a_channels_pubsub_channel_shares_its_keys_slot() -> None:
    channel = "chat:{room}"
    assert key_slot(pubsub_channel("p", channel)) == key_slot(
        channel_key("p", "stream", channel).encode()
    )


def test_channels_differing_after_a_brace_get_different_tags() -> None:
    assert channel_key("p", "meta", "a}b") != channel_key("p", "meta", "a}c")
    assert key_slot(channel_key("p", "meta", "a}b").encode()) != key_slot(b"p.meta.{a}")


def test_a_name_is_appended_after_the_tag() -> None:
    assert channel_key("p", "lease", "c", "writer") == "p.lease.{c}.writer"
