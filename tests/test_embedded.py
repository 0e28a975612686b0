"""What wsfan.embedded promises: real servers on loopback, started, stopped, restarted."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import redis
import redis.asyncio
from motor.motor_asyncio import AsyncIOMotorClient
from wsfan.embedded import (
    EmbeddedServer,
    EmbeddedServerError,
    EmbeddedValkey,
    Fsync,
    start_embedded,
)

from tests.processes import ROOT, is_running, still_running


def answers(port: int) -> bool:
    """True if something accepts a TCP connection on the loopback port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


@pytest.mark.gen_test
async def test_valkey_answers_ping_and_set_get(io_loop, redis_url: str, redis_prefix: str):
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        assert await client.ping() is True
        await client.set(redis_prefix + "greeting", "hello")
        assert await client.get(redis_prefix + "greeting") == b"hello"
    finally:
        await client.aclose()


@pytest.mark.gen_test
async def test_secantusdb_accepts_insert_and_find(io_loop, mongo_url: str, mongo_db_name: str):
    client: AsyncIOMotorClient = AsyncIOMotorClient(mongo_url)
    try:
        collection = client[mongo_db_name]["things"]
        await collection.insert_one({"name": "widget", "count": 3})
        found = await collection.find_one({"name": "widget"}, {"_id": 0})
        assert found == {"name": "widget", "count": 3}
        await client.drop_database(mongo_db_name)
    finally:
        client.close()


def test_stopped_server_stops_answering_and_restarts_on_the_same_url(
    embedded_redis: EmbeddedServer,
):
    url = embedded_redis.url
    embedded_redis.stop()
    assert not embedded_redis.is_running()
    assert not answers(embedded_redis.port)

    assert embedded_redis.start() == url
    assert embedded_redis.url == url
    client = redis.Redis.from_url(url)
    try:
        assert client.ping() is True
    finally:
        client.close()


def test_persisted_valkey_keeps_a_key_across_stop_and_start(tmp_path: Path):
    with EmbeddedValkey(tmp_path / "valkey", persist=True) as server:
        client = redis.Redis.from_url(server.url)
        try:
            client.set("survivor", "still here")
        finally:
            client.close()
        server.stop()
        server.start()
        client = redis.Redis.from_url(server.url)
        try:
            assert client.get("survivor") == b"still here"
        finally:
            client.close()


def test_kill_leaves_the_server_not_running(embedded_redis: EmbeddedServer):
    assert embedded_redis.is_running()
    assert embedded_redis.pid is not None
    embedded_redis.kill()
    assert not embedded_redis.is_running()
    assert embedded_redis.pid is None


def test_start_on_a_port_already_bound_raises_naming_the_port(tmp_path: Path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        server = EmbeddedValkey(tmp_path / "valkey", port=port)
        with pytest.raises(EmbeddedServerError, match=rf"valkey on 127\.0\.0\.1:{port}\b"):
            server.start(timeout=5.0)
        assert not server.is_running()


def test_stop_on_a_never_started_server_does_nothing(tmp_path: Path):
    server = EmbeddedValkey(tmp_path / "valkey")
    server.stop()
    server.stop()
    assert not server.is_running()
    assert server.pid is None


def test_start_embedded_starts_only_what_is_needed(tmp_path: Path):
    with start_embedded(tmp_path, need_redis=True, need_mongo=False) as group:
        assert group.mongo is None
        assert group.redis is not None and is_running(group.redis.pid)
        assert group.redis.url.startswith("redis://127.0.0.1:")
        assert (tmp_path / "valkey").is_dir()
        assert not (tmp_path / "secantusdb").exists()
    assert not is_running(group.redis.pid)


@pytest.mark.parametrize("fsync", ["always", "everysec"])
def test_valkey_fsyncs_its_append_only_file_as_asked(tmp_path: Path, fsync: Fsync):
    with EmbeddedValkey(tmp_path / "valkey", persist=True, fsync=fsync) as server:
        client = redis.Redis.from_url(server.url)
        try:
            assert client.config_get("appendfsync") == {"appendfsync": fsync}
        finally:
            client.close()


def test_a_server_started_to_die_with_its_parent_dies_when_it_is_killed(tmp_path: Path):
    code = (
        "import sys, time; from wsfan.embedded import EmbeddedValkey; "
        f"s = EmbeddedValkey({str(tmp_path / 'valkey')!r}, die_with_parent=True); "
        "s.start(); print(s.pid, flush=True); time.sleep(60)"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE)
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        parent.kill()
        assert still_running({"valkey": pid}) == []
    finally:
        parent.kill()
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
