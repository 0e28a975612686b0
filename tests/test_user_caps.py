"""`client.max_connections_per_user` in scope "process": this node's connections of
the user count (the cluster scope, with leases, is in test_user_leases.py)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from wsfan.broker.memory import MemoryPresence
from wsfan.config import load_settings
from wsfan.logs import Repeated
from wsfan.user_caps import UserCaps


def caps(cap: int, connected: dict[str, int]) -> UserCaps:
    settings = load_settings(env={}).with_overrides(
        broker={"type": "memory"}, client={"max_connections_per_user": cap}
    )
    return UserCaps(
        settings,
        MemoryPresence(),
        lambda user: connected.get(user, 0),
        Repeated(logging.getLogger(__name__), 1.0),
        asyncio.ensure_future,
    )


@pytest.mark.gen_test
async def test_a_user_below_the_cap_is_admitted_and_one_at_it_is_not():
    users = caps(2, {"alice": 2, "bob": 1})
    assert not await users.admit("alice", "c1")
    assert await users.admit("bob", "c2")
    assert not users.leasing


@pytest.mark.gen_test
async def test_no_cap_admits_everyone():
    assert await caps(0, {"alice": 1000}).admit("alice", "c1")
