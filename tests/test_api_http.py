"""The server API's HTTP layer: keys, statuses, encodings, size limit, and no key in logs.

These are about HTTP, not about brokers, so they run on the memory broker only
(the methods' behaviour runs on both in test_api_methods.py).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import msgpack
import pytest
from tornado.httpclient import AsyncHTTPClient
from tornado.web import Application
from wsfan.api.keys import DEVELOPMENT_KEY, ApiKeyChecker
from wsfan.node import Node
from wsfan.web.app import make_app

from tests.api_client import ApiCaller

SMALL_LIMIT = 256

pytestmark = pytest.mark.brokers("memory")


@pytest.fixture
def api_keys(request: pytest.FixtureRequest) -> ApiKeyChecker | None:
    return getattr(request, "param", None)


@pytest.fixture
def app(node: Node, api_keys: ApiKeyChecker | None) -> Application:
    return make_app(node, api_keys=api_keys)


@pytest.fixture
def api(http_server: Any, http_client: AsyncHTTPClient, http_port: int) -> ApiCaller:
    return ApiCaller(http_client, f"http://127.0.0.1:{http_port}/api")


def body_of(response: Any) -> dict[str, Any]:
    assert response.headers["Content-Type"] == "application/json"
    return json.loads(response.body)


async def _stored_key(key: str) -> bool:
    return key == "from-the-store"


async def _store_down(key: str) -> bool:
    raise ConnectionError("store unreachable")


# Keys ------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_a_request_without_a_key_answers_401_with_a_reason(api: ApiCaller) -> None:
    response = await api.raw("info", key="")
    assert response.code == 401
    assert body_of(response)["error"] == {
        "code": 101,
        "message": "unauthorized: missing or wrong API key",
    }


@pytest.mark.gen_test
async def test_a_wrong_key_answers_401(api: ApiCaller) -> None:
    assert (await api.raw("info", key="wrong")).code == 401


@pytest.mark.gen_test
async def test_the_key_may_come_in_the_api_key_query_parameter(api: ApiCaller) -> None:
    response = await api.raw("info", key="", query=f"api_key={DEVELOPMENT_KEY}")
    assert response.code == 200
    assert "nodes" in body_of(response)["result"]


@pytest.mark.gen_test
async def test_the_key_may_come_as_authorization_apikey(api: ApiCaller) -> None:
    headers = {"Authorization": f"apikey {DEVELOPMENT_KEY}"}
    assert (await api.raw("info", key="", headers=headers)).code == 200


@pytest.mark.settings(api={"keys": []})
@pytest.mark.gen_test
async def test_with_no_key_configured_every_request_answers_401(api: ApiCaller) -> None:
    assert (await api.raw("info")).code == 401
    assert (await api.raw("info", key="")).code == 401


@pytest.mark.parametrize("api_keys", [ApiKeyChecker([], _stored_key)], indirect=True)
@pytest.mark.gen_test
async def test_keys_from_the_lookup_are_accepted(api: ApiCaller) -> None:
    assert (await api.raw("info", key="from-the-store")).code == 200
    assert (await api.raw("info", key=DEVELOPMENT_KEY)).code == 401


@pytest.mark.parametrize("api_keys", [ApiKeyChecker([], _store_down)], indirect=True)
@pytest.mark.gen_test
async def test_a_failing_key_lookup_answers_503(api: ApiCaller) -> None:
    response = await api.raw("info", key="anything")
    assert response.code == 503
    assert body_of(response)["error"]["message"] == "API key store unavailable"


# Statuses --------------------------------------------------------------------


@pytest.mark.gen_test
async def test_an_unknown_method_answers_404_naming_it(api: ApiCaller) -> None:
    response = await api.raw("no_such_method")
    assert response.code == 404
    assert body_of(response)["error"] == {
        "code": 104,
        "message": "method not found: 'no_such_method'",
    }


@pytest.mark.gen_test
async def test_the_bare_api_path_answers_404(api: ApiCaller) -> None:
    response = await api.client.fetch(
        api.base, method="POST", body=b"{}", headers={"X-API-Key": api.key}, raise_error=False
    )
    assert response.code == 404


@pytest.mark.gen_test
async def test_a_missing_key_answers_401_before_an_unknown_method_is_told(api: ApiCaller) -> None:
    assert (await api.raw("no_such_method", key="")).code == 401


@pytest.mark.gen_test
async def test_get_answers_405(api: ApiCaller) -> None:
    response = await api.raw("info", http_method="GET")
    assert response.code == 405
    assert body_of(response)["error"]["message"] == "method not allowed: use POST"


@pytest.mark.parametrize(
    "body",
    [b"{", b"not json", b'{"channel": NaN}', b"\xff\xfe", b'{"a": 1} {"b": 2}'],
    ids=["truncated", "text", "nan", "not-utf8", "two-values"],
)
@pytest.mark.gen_test
async def test_a_body_that_is_not_json_answers_400(api: ApiCaller, body: bytes) -> None:
    response = await api.raw("publish", body)
    assert response.code == 400
    assert body_of(response)["error"]["message"].startswith("body is not valid JSON")


DEEP = 100_000


@pytest.mark.parametrize(
    "body",
    [
        b"[" * DEEP + b"]" * DEEP,
        b'{"channel": "a", "data": ' + b'{"x":' * DEEP + b"1" + b"}" * DEEP + b"}",
    ],
    ids=["body", "data"],
)
@pytest.mark.gen_test
async def test_json_nested_past_what_the_decoder_takes_answers_400_without_a_traceback(
    api: ApiCaller, body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    response = await api.raw("publish", body)
    assert response.code == 400
    assert body_of(response)["error"] == {
        "code": 107,
        "message": "body is not valid JSON: nested too deeply",
    }
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []


@pytest.mark.gen_test
async def test_msgpack_nested_past_what_the_decoder_takes_answers_400(
    api: ApiCaller, caplog: pytest.LogCaptureFixture
) -> None:
    body = b"\x82\xa7channel\xa1a\xa4data" + b"\x91" * DEEP + b"\xc0"
    response = await api.raw("publish", body, headers={"Content-Type": "application/msgpack"})
    assert response.code == 400
    assert msgpack.unpackb(response.body)["error"] == {
        "code": 107,
        "message": "body is not valid msgpack: nested too deeply",
    }
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []


@pytest.mark.gen_test
async def test_data_nested_within_what_the_decoder_takes_but_past_the_limit_answers_107(
    api: ApiCaller,
) -> None:
    data: Any = 1
    for _ in range(200):
        data = [data]
    error = await api.error("publish", {"channel": "a", "data": data})
    assert error == {"code": 107, "message": "data: nested deeper than 64 levels"}


@pytest.mark.gen_test
async def test_a_channels_pattern_of_a_thousand_nested_braces_is_a_client_error(
    api: ApiCaller, caplog: pytest.LogCaptureFixture
) -> None:
    error = await api.error("channels", {"pattern": "{" * 1000 + "}" * 1000})
    assert error["code"] == 107 and error["message"].startswith("pattern: ")
    assert "temporary" not in error
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.mark.parametrize("body", [b"[]", b"1", b'"text"', b"null"])
@pytest.mark.gen_test
async def test_a_json_body_that_is_not_an_object_answers_400(api: ApiCaller, body: bytes) -> None:
    response = await api.raw("publish", body)
    assert response.code == 400
    assert body_of(response)["error"]["message"] == "body must be a map (a JSON object)"


@pytest.mark.gen_test
async def test_an_empty_body_counts_as_an_empty_object(api: ApiCaller) -> None:
    response = await api.raw("info", b"")
    assert response.code == 200
    assert body_of(response)["result"]["nodes"]


@pytest.mark.gen_test
async def test_a_method_error_is_http_200_with_the_error_naming_the_field(api: ApiCaller) -> None:
    response = await api.raw("publish", json.dumps({"channel": 5, "data": {}}))
    assert response.code == 200
    assert body_of(response) == {"error": {"code": 107, "message": "channel: expected a string"}}


@pytest.mark.gen_test
async def test_an_unexpected_failure_answers_error_100_without_details(
    api: ApiCaller, node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(node.broker, "publish", broken)
    response = await api.raw("publish", json.dumps({"channel": "news", "data": 1}))
    assert body_of(response)["error"]["code"] == 100
    assert b"secret" not in response.body


# Body size -------------------------------------------------------------------


def padded(size: int) -> bytes:
    """A valid publish body of exactly `size` bytes."""
    body = b'{"channel": "news", "data": ""}'
    return body[:-2] + b"x" * (size - len(body)) + body[-2:]


@pytest.mark.settings(api={"max_body_bytes": SMALL_LIMIT})
@pytest.mark.gen_test
async def test_a_body_of_exactly_the_limit_is_accepted(api: ApiCaller) -> None:
    response = await api.raw("publish", padded(SMALL_LIMIT))
    assert response.code == 200
    assert "result" in body_of(response)


@pytest.mark.settings(api={"max_body_bytes": SMALL_LIMIT})
@pytest.mark.gen_test
async def test_a_body_one_byte_over_the_limit_answers_413(api: ApiCaller) -> None:
    response = await api.raw("publish", padded(SMALL_LIMIT + 1))
    assert response.code == 413
    assert body_of(response)["error"] == {
        "code": 106,
        "message": f"request body larger than {SMALL_LIMIT} bytes",
    }


@pytest.mark.settings(api={"max_body_bytes": SMALL_LIMIT})
@pytest.mark.gen_test
async def test_a_chunked_body_over_the_limit_answers_413(api: ApiCaller) -> None:
    async def produce(write: Any) -> None:
        for _ in range(4):
            await write(b" " * 100)
        await write(b"{}")

    response = await api.client.fetch(
        f"{api.base}/info",
        method="POST",
        body_producer=produce,
        headers={"X-API-Key": api.key, "Content-Type": "application/json"},
        raise_error=False,
    )
    assert response.code == 413


@pytest.mark.settings(api={"max_body_bytes": SMALL_LIMIT})
@pytest.mark.gen_test
async def test_a_chunked_body_within_the_limit_is_accepted(api: ApiCaller) -> None:
    async def produce(write: Any) -> None:
        await write(b'{"channel": "news",')
        await write(b' "data": 1}')

    response = await api.client.fetch(
        f"{api.base}/publish",
        method="POST",
        body_producer=produce,
        headers={"X-API-Key": api.key},
        raise_error=False,
    )
    assert response.code == 200
    assert "result" in body_of(response)


# msgpack ---------------------------------------------------------------------


@pytest.mark.gen_test
async def test_a_msgpack_request_is_answered_in_msgpack(api: ApiCaller) -> None:
    response, answer = await api.msgpack("publish", {"channel": "news", "data": b"\x00\xff"})
    assert response.headers["Content-Type"] == "application/msgpack"
    assert answer["result"]["offset"] == 1


@pytest.mark.gen_test
async def test_binary_data_published_in_msgpack_comes_back_as_binary(api: ApiCaller) -> None:
    await api.msgpack("publish", {"channel": "news", "data": {"raw": b"\x00\xff"}})
    _, answer = await api.msgpack("history", {"channel": "news", "limit": 1})
    assert answer["result"]["publications"][0]["data"] == {"raw": b"\x00\xff"}


@pytest.mark.gen_test
async def test_invalid_msgpack_answers_400_in_msgpack(api: ApiCaller) -> None:
    response = await api.raw("publish", b"\xc1", headers={"Content-Type": "application/msgpack"})
    assert response.code == 400
    assert response.headers["Content-Type"] == "application/msgpack"
    assert msgpack.unpackb(response.body)["error"]["code"] == 107


@pytest.mark.gen_test
async def test_a_msgpack_refusal_is_in_msgpack(api: ApiCaller) -> None:
    response = await api.raw(
        "info", msgpack.packb({}), headers={"Content-Type": "application/msgpack"}, key="x"
    )
    assert response.code == 401
    assert msgpack.unpackb(response.body)["error"]["code"] == 101


@pytest.mark.gen_test
async def test_batch_answers_replies_without_a_result_wrapper(api: ApiCaller) -> None:
    answer = await api.call("batch", {"commands": [{"info": {}}]})
    assert list(answer) == ["replies"]


# Keys stay out of logs ---------------------------------------------------------


@pytest.mark.gen_test
async def test_no_key_appears_in_any_log_line_or_answer(
    api: ApiCaller, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-key-e3b0c442"
    answers = [
        await api.raw("info", key="", query=f"api_key={DEVELOPMENT_KEY}"),
        await api.raw("info", key="", query=f"api_key={wrong}"),
        await api.raw("no_such_method", key="", query=f"api_key={DEVELOPMENT_KEY}"),
        await api.raw("publish", b"{", key=wrong),
        await api.raw("publish", b"{", key="", query=f"api_key={DEVELOPMENT_KEY}"),
        await api.raw("info", key="", query=f"api_key={DEVELOPMENT_KEY}", http_method="GET"),
    ]
    assert [a.code for a in answers] == [200, 401, 404, 401, 400, 405]
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "/api/info" in text  # the access log did run
    for key in (DEVELOPMENT_KEY, wrong):
        assert key not in text
        assert all(key.encode() not in a.body for a in answers)


@pytest.mark.gen_test
async def test_a_call_while_the_instance_drains_answers_503_with_retry_after(
    api: ApiCaller, node: Node
) -> None:
    node.draining = True
    response = await api.raw("publish", json.dumps({"channel": "news", "data": {"x": 1}}))
    assert response.code == 503
    assert response.headers["Retry-After"] == "1"
    assert body_of(response)["error"]["code"] == 100
    node.draining = False
    history = await api.call("history", {"channel": "news", "limit": -1})
    assert history["result"].get("publications", []) == []  # nothing was published
