"""API keys kept hashed in MongoDB, and `run.py apikey create|list|revoke`."""

from __future__ import annotations

import hashlib
import json

import pytest
from wsfan.store.keys import KeyStore, parse_key

from tests.processes import clean_env, run_to_exit


@pytest.mark.gen_test
async def test_a_created_key_verifies_and_only_its_hash_is_stored(mongo_store):
    keys = KeyStore(mongo_store)
    key, record = await keys.create("billing", ("publish",))
    found = await keys.verify(key)
    assert found is not None and found.name == "billing" and found.scopes == ("publish",)
    doc = await mongo_store.api_keys.find_one({"_id": record.id})
    _, secret = parse_key(key)
    assert secret not in json.dumps(doc, default=str)
    assert doc["hash"] == hashlib.sha256(secret.encode()).hexdigest()


@pytest.mark.gen_test
async def test_a_wrong_secret_or_a_malformed_key_verifies_as_nothing(mongo_store):
    keys = KeyStore(mongo_store)
    key, record = await keys.create("billing")
    assert await keys.verify(key[:-2] + "xx") is None
    for bad in ("", "wsf", "wsf__", f"wsf_{record.id}", "other_" + key[4:], "wsf_nope_secret"):
        assert await keys.verify(bad) is None


@pytest.mark.gen_test
async def test_a_revoked_key_stops_working(mongo_store):
    keys = KeyStore(mongo_store)
    key, record = await keys.create("billing")
    assert await keys.verify(key) is not None
    assert await keys.revoke(record.id) is True
    assert await keys.verify(key) is None
    assert await keys.revoke(record.id) is False


@pytest.mark.gen_test
async def test_a_revocation_reaches_other_processes_within_the_cache_time(mongo_store):
    mine, theirs = KeyStore(mongo_store, cache_ttl=0.0), KeyStore(mongo_store, cache_ttl=0.0)
    key, record = await mine.create("billing")
    assert await theirs.verify(key) is not None
    await mine.revoke(record.id)
    assert await theirs.verify(key) is None


@pytest.mark.gen_test
async def test_use_is_recorded_on_the_key(mongo_store):
    keys = KeyStore(mongo_store)
    key, _ = await keys.create("billing")
    assert (await keys.list())[0].last_used_at is None
    await keys.verify(key)
    assert (await keys.list())[0].last_used_at is not None


@pytest.mark.gen_test
async def test_scopes_limit_the_methods_a_key_may_call(mongo_store):
    keys = KeyStore(mongo_store)
    key, _ = await keys.create("pusher", ("publish", "broadcast"))
    found = await keys.verify(key)
    assert found.allows("publish") and not found.allows("disconnect")
    everything, _ = await keys.create("admin")
    assert (await keys.verify(everything)).allows("disconnect")


def test_apikey_command_creates_lists_and_revokes(mongo_url, mongo_db_name):
    env = clean_env(MONGO_URL=mongo_url, WSFAN_MONGO__DATABASE=mongo_db_name)
    created = run_to_exit(["apikey", "create", "billing", "--scope", "publish"], env)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert parse_key(key) is not None
    listed = run_to_exit(["apikey", "list", "--json"], env)
    (row,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert row["name"] == "billing" and row["scopes"] == ["publish"]
    assert row["revoked_at"] is None and key not in listed.stdout
    assert run_to_exit(["apikey", "revoke", row["id"]], env).returncode == 0
    (row,) = [
        json.loads(line)
        for line in run_to_exit(["apikey", "list", "--json"], env).stdout.splitlines()
    ]
    assert row["revoked_at"] is not None
    again = run_to_exit(["apikey", "revoke", row["id"]], env)
    assert again.returncode == 1 and "no active key" in again.stderr


def test_apikey_list_says_so_when_no_key_is_stored(mongo_url, mongo_db_name):
    env = clean_env(MONGO_URL=mongo_url, WSFAN_MONGO__DATABASE=mongo_db_name)
    listed = run_to_exit(["apikey", "list"], env)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("no stored API keys")
    assert "run.py apikey create NAME" in listed.stdout
    as_json = run_to_exit(["apikey", "list", "--json"], env)
    assert as_json.returncode == 0 and as_json.stdout == ""  # no JSON line, no prose
    assert as_json.stderr.startswith("no stored API keys")
