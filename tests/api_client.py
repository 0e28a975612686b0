"""A small server API client for tests, on Tornado's HTTP client.

It sends what `cent` sends (JSON, `X-API-Key`) and, unlike `cent`, also what no
library would: other encodings, keys in other places, malformed bodies.
"""

from __future__ import annotations

import json
from typing import Any

import msgpack
from tornado.httpclient import AsyncHTTPClient, HTTPResponse
from wsfan.api.keys import DEVELOPMENT_KEY

from tests.conftest import TIMEOUT_SCALE


class ApiCaller:
    def __init__(self, client: AsyncHTTPClient, base: str, key: str = DEVELOPMENT_KEY) -> None:
        self.client = client
        self.base = base  # http://127.0.0.1:port/api
        self.key = key

    async def raw(
        self,
        method: str,
        body: bytes | str = b"{}",
        headers: dict[str, str] | None = None,
        query: str = "",
        http_method: str = "POST",
        key: str | None = None,
    ) -> HTTPResponse:
        """The response as it came; `key` None sends this caller's key in X-API-Key."""
        sent = {"Content-Type": "application/json"}
        key = self.key if key is None else key
        if key:
            sent["X-API-Key"] = key
        sent.update(headers or {})
        url = f"{self.base}/{method}" + (f"?{query}" if query else "")
        return await self.client.fetch(
            url,
            method=http_method,
            body=body if http_method == "POST" else None,
            headers=sent,
            raise_error=False,
            request_timeout=10 * TIMEOUT_SCALE,
        )

    async def call(self, method: str, params: Any = None) -> dict[str, Any]:
        """The decoded JSON body of a call that must answer HTTP 200."""
        response = await self.raw(method, json.dumps({} if params is None else params))
        assert response.code == 200, (response.code, response.body)
        assert response.headers["Content-Type"] == "application/json"
        return json.loads(response.body)

    async def result(self, method: str, params: Any = None) -> dict[str, Any]:
        answer = await self.call(method, params)
        assert "error" not in answer, answer
        return answer["result"]

    async def error(self, method: str, params: Any = None) -> dict[str, Any]:
        answer = await self.call(method, params)
        assert "result" not in answer, answer
        return answer["error"]

    async def msgpack(self, method: str, params: Any) -> tuple[HTTPResponse, Any]:
        response = await self.raw(
            method,
            msgpack.packb(params, use_bin_type=True),
            headers={"Content-Type": "application/msgpack"},
        )
        return response, msgpack.unpackb(response.body, raw=False)
