"""`POST /emulation`: the commands of an emulated stream (http_stream, sse)
after its connect, as the JavaScript SDK sends them:
`{"session": <the connect reply's session>, "node": <its node>, "data": "<commands>"}`,
where `data` is the newline-delimited JSON commands as one JSON string.

The stream may be held by any instance: a request for another node goes to it
through the broker's control stream (`Cluster.request`), and is answered only
once that instance has taken the commands (or said it holds no such session).
The SDK never reads these answers except to close its transport on 404 and
5xx, so nothing is refused silently: a connection whose waiting commands
would pass their bound is closed (3013) instead.

| request | answer |
|---|---|
| OPTIONS (a CORS preflight) | 204, the allowed origin echoed, `Access-Control-Max-Age` |
| an origin the policy refuses | 403 |
| not POST | 405 |
| over `transports.emulation_rate` for its address | 429 |
| a body over `transports.max_request_body_bytes` | 413 |
| malformed JSON, or not that shape | 400 |
| a node no instance answers for | 404 |
| a known node that does not answer in `transports.emulation_timeout` | 503 |
| an unknown session | 204 (ignored) |
| commands taken | 204 |
| commands refused (their connection closes with 3013) | 429 |
"""

from __future__ import annotations

import asyncio
import json
import logging
from http import HTTPStatus
from typing import Any

from ..auth.limits import AddressRates
from .cors import ALLOWED_METHODS, cors
from .endpoint import Endpoint, Streams
from .handshake import peer_of
from .request_body import BodyHandler

__all__ = ["EMULATION_OP", "EMULATION_PATH", "EmulationHandler", "deliver", "serve_emulation"]

log = logging.getLogger(__name__)

EMULATION_PATH = "/emulation"
EMULATION_OP = "emulation"
"""The cluster request op that hands commands to the node holding the stream."""
UNKNOWN_NODE_WAIT = 1.0
"""Seconds a request for a node this instance has not heard of waits for it to
answer anyway (it may have started a moment ago) before the answer is 404."""

TAKEN, UNKNOWN, REFUSED = "taken", "unknown", "refused"


def deliver(streams: Streams, secret: str, data: bytes) -> str:
    """Hand `data` to the local stream of session `secret`: TAKEN, UNKNOWN or REFUSED."""
    stream = streams.get(secret)
    if stream is None:
        return UNKNOWN
    return TAKEN if stream.take(data) else REFUSED


def serve_emulation(endpoint: Endpoint) -> None:
    """Answer other instances' emulation requests for `endpoint`'s streams."""

    def answer(params: dict[str, Any]) -> str:
        secret, data = params.get("session"), params.get("data")
        if not isinstance(secret, str) or not isinstance(data, bytes):
            return UNKNOWN
        return deliver(endpoint.streams, secret, data)

    endpoint.node.cluster.answer(EMULATION_OP, answer)


def _parse(body: bytes) -> tuple[str, str, bytes] | None:
    """(session, node, commands) of an emulation request body; None if malformed."""
    try:
        request = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    if not isinstance(request, dict):
        return None
    secret, node, data = request.get("session"), request.get("node"), request.get("data")
    if not (isinstance(secret, str) and isinstance(node, str) and isinstance(data, str)):
        return None
    try:
        return secret, node, data.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate escaped in the JSON
        return None


class EmulationHandler(BodyHandler):
    """See the module's table."""

    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")

    def initialize(self, endpoint: Endpoint, rates: AddressRates) -> None:
        self.endpoint = endpoint
        self.node = endpoint.node
        self.rates = rates

    def body_limit(self) -> int:
        return self.node.settings.transports.max_request_body_bytes

    def _header(self, name: str) -> str | None:
        return self.request.headers.get(name)

    def _peer(self) -> str:
        return peer_of(self.request.connection, self.request.remote_ip)

    def _cors(self) -> bool:
        """Set the CORS headers; False (answered 403) for a refused origin."""
        decision = cors(self.endpoint.origins, self.endpoint.proxies, self._header, self._peer())
        if not decision.allowed:
            self._answer(HTTPStatus.FORBIDDEN, "origin not allowed")
            return False
        for name, value in decision.headers:
            self.set_header(name, value)
        return True

    def options(self) -> None:
        if self._cors():
            self.set_header("Access-Control-Allow-Methods", ALLOWED_METHODS)
            max_age = self.node.settings.transports.cors_max_age
            self.set_header("Access-Control-Max-Age", str(max_age))
            self._answer(HTTPStatus.NO_CONTENT)

    def _not_post(self) -> None:
        if self._cors():
            self.set_header("Allow", "POST, OPTIONS")
            self._answer(HTTPStatus.METHOD_NOT_ALLOWED, "use POST")

    get = head = put = delete = patch = _not_post

    async def post(self) -> None:
        if not self._cors():
            return
        settings = self.node.settings.transports
        address, peer = self.request.remote_ip or "", self._peer()
        if address != peer:  # Tornado's xheaders believe anyone: only a trusted proxy counts
            address = self.endpoint.proxies.client_address(self._header, peer)
        if not self.rates.allow(address, asyncio.get_running_loop().time()):
            self._answer(HTTPStatus.TOO_MANY_REQUESTS, "too many emulation requests")
            return
        body = self.body()
        if body is None:
            limit = settings.max_request_body_bytes
            self._answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {limit} bytes")
            return
        parsed = _parse(body)
        if parsed is None:
            self._answer(HTTPStatus.BAD_REQUEST, "expected {session, node, data}")
            return
        secret, node_id, data = parsed
        cluster = self.node.cluster
        if node_id == cluster.uid:
            outcome = deliver(self.endpoint.streams, secret, data)
        else:
            known = cluster.knows(node_id)
            wait = settings.emulation_timeout if known else UNKNOWN_NODE_WAIT
            params = {"session": secret, "data": data}
            try:
                outcome = await cluster.request(node_id, EMULATION_OP, params, wait)
            except TimeoutError:
                if known:
                    self._answer(HTTPStatus.SERVICE_UNAVAILABLE, "node did not answer")
                else:
                    self._answer(HTTPStatus.NOT_FOUND, "unknown node")
                return
            except Exception as exc:  # the broker cannot carry it now
                log.warning("emulation request for node %s not sent: %s", node_id[:40], exc)
                self._answer(HTTPStatus.SERVICE_UNAVAILABLE, "broker unavailable")
                return
        if outcome == REFUSED:
            self._answer(HTTPStatus.TOO_MANY_REQUESTS, "too many commands waiting")
        else:
            self._answer(HTTPStatus.NO_CONTENT)

    def _answer(self, status: int, message: str = "") -> None:
        self.set_status(status)
        if message:
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish(message)
        else:
            self.finish()
