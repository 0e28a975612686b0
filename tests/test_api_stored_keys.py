"""The server API accepts keys kept in MongoDB (`run.py apikey`), within their scopes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient
from tornado.web import Application
from wsfan.api.keys import ApiKeyChecker
from wsfan.node import Node
from wsfan.store.keys import KeyStore
from wsfan.store.mongo import MongoStore
from wsfan.web.app import make_app

from tests.api_client import ApiCaller
from tests.processes import clean_env, run_to_exit, running

pytestmark = pytest.mark.brokers("memory")


@pytest.fixture
def keys(mongo_store: MongoStore) -> KeyStore:
    return KeyStore(mongo_store, cache_ttl=0.0)


@pytest.fixture
def app(node: Node, keys: KeyStore) -> Application:
    return make_app(node, api_keys=ApiKeyChecker([], keys.verify))


@pytest.fixture
def api(http_server: Any, http_client: AsyncHTTPClient, http_port: int) -> ApiCaller:
    return ApiCaller(http_client, f"http://127.0.0.1:{http_port}/api")


async def publish(api: ApiCaller, key: str) -> int:
    body = json.dumps({"channel": "news", "data": {"x": 1}})
    return (await api.raw("publish", body, key=key)).code


@pytest.mark.gen_test
async def test_a_key_created_in_mongodb_is_accepted(api, keys):
    key, _ = await keys.create("billing")
    assert await publish(api, key) == 200


@pytest.mark.gen_test
async def test_a_revoked_key_answers_401(api, keys):
    key, record = await keys.create("billing")
    await keys.revoke(record.id)
    assert await publish(api, key) == 401


@pytest.mark.gen_test
async def test_a_key_outside_its_scopes_answers_403(api, keys):
    key, _ = await keys.create("pusher", ("publish",))
    assert await publish(api, key) == 200
    response = await api.raw("disconnect", json.dumps({"user": "u"}), key=key)
    assert response.code == 403
    assert json.loads(response.body)["error"]["code"] == 103


@pytest.mark.gen_test
async def test_an_unknown_key_of_the_right_shape_answers_401(api):
    assert await publish(api, "wsf_000000000000_not-a-real-secret") == 401


@pytest.mark.gen_test(timeout=60)
async def test_run_py_serves_the_api_to_a_key_made_with_run_py_apikey(
    redis_url, mongo_url, mongo_db_name, tmp_path, http_client
):
    env = clean_env(REDIS_URL=redis_url, MONGO_URL=mongo_url, WSFAN_MONGO__DATABASE=mongo_db_name)
    created = run_to_exit(["apikey", "create", "svc", "--scope", "publish"], env)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    with running(tmp_path, env, ("--workers", "1")) as server:
        server.wait_ready()
        api = ApiCaller(http_client, f"http://127.0.0.1:{server.port}/api")
        assert await publish(api, key) == 200
        assert await publish(api, key + "x") == 401
