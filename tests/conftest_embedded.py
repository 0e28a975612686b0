"""Pytest plugin: real Valkey / SecantusDB servers for the test suite.

``redis_url`` / ``mongo_url`` are shared for the whole session (or taken from the
REDIS_URL / MONGO_URL environment variables, starting nothing). ``embedded_redis`` /
``embedded_mongo`` give each test its own fresh server to stop, restart or kill.
Isolate tests on the shared servers with ``redis_prefix`` and ``mongo_db_name``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tornado.ioloop import IOLoop
from wsfan.embedded import EmbeddedSecantus, EmbeddedServer, EmbeddedValkey
from wsfan.store.mongo import MongoStore


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a Redis-protocol server shared by the session: $REDIS_URL or embedded Valkey."""
    if url := os.environ.get("REDIS_URL"):
        yield url
        return
    with EmbeddedValkey(tmp_path_factory.mktemp("valkey"), persist=False) as server:
        yield server.url


@pytest.fixture(scope="session")
def second_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second Valkey shared by the session, the other shard of client-side sharding
    ($REDIS_URL_B when set)."""
    if url := os.environ.get("REDIS_URL_B"):
        yield url
        return
    with EmbeddedValkey(tmp_path_factory.mktemp("valkey-b"), persist=False) as server:
        yield server.url


@pytest.fixture(scope="session")
def mongo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a MongoDB-protocol server shared by the session: $MONGO_URL or SecantusDB."""
    if url := os.environ.get("MONGO_URL"):
        yield url
        return
    with EmbeddedSecantus(tmp_path_factory.mktemp("secantusdb"), persist=False) as server:
        yield server.url


@pytest.fixture
def embedded_redis(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """A fresh Valkey of this test's own, already started; stopped after the test."""
    with EmbeddedValkey(tmp_path / "valkey", persist=False) as server:
        yield server


@pytest.fixture
def embedded_mongo(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """A fresh in-memory SecantusDB of this test's own, already started; stopped after."""
    with EmbeddedSecantus(tmp_path / "secantusdb", persist=False) as server:
        yield server


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix unique to this test, e.g. ``t-1a2b3c4d5e6f:``."""
    return f"t-{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def mongo_db_name() -> str:
    """A database name unique to this test, e.g. ``t_1a2b3c4d5e6f``."""
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def mongo_store(mongo_url: str, mongo_db_name: str, io_loop: IOLoop) -> Iterator[MongoStore]:
    """The session's MongoDB server, in a database of this test's own (dropped after)."""
    store = MongoStore(mongo_url, mongo_db_name)
    io_loop.run_sync(store.ensure_indexes)
    yield store
    io_loop.run_sync(lambda: store.db.client.drop_database(mongo_db_name))
    io_loop.run_sync(store.close)


@pytest.fixture
def restartable_mongo(tmp_path: Path) -> Iterator[EmbeddedSecantus]:
    """A SecantusDB of this test's own that keeps its data across stop and start."""
    with EmbeddedSecantus(tmp_path / "restartable-db", persist=True) as server:
        yield server
