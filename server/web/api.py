"""`POST /api/<method>`: the server HTTP API, a thin layer over `ApiExecutor`.

HTTP statuses, checked in this order: 405 for anything but POST, 401 for a
missing or wrong key (`X-API-Key`, `Authorization: apikey <key>` or the
`api_key` query parameter), 503 when the key store cannot answer, 404 for an
unknown method, 413 for a body over `api.max_body_bytes`, 400 for a body that
is not a JSON (or msgpack) map. Everything else is 200 with `{"result": ...}`
or `{"error": {"code", "message"}}`; `batch` answers `{"replies": [...]}`.

A body sent as `application/msgpack` is answered in msgpack, anything else in
JSON; an empty body counts as `{}`. The request's query string (where a key
may be) never reaches a log line.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any

import msgpack
from tornado.http1connection import HTTP1Connection
from tornado.web import HTTPError, RequestHandler, stream_request_body

from ..api.executor import ApiExecutor
from ..api.keys import ApiKeyChecker
from ..errors import HTTP_ERROR_CODES, HTTP_MESSAGES, ErrorCode, ReplyError
from ..protocol import Encoding, encode

__all__ = ["MSGPACK_TYPES", "ApiHandler"]

log = logging.getLogger(__name__)

MSGPACK_TYPES = ("application/msgpack", "application/x-msgpack", "application/vnd.msgpack")

DISCARD_BYTES = 1 << 20
"""Body bytes past `api.max_body_bytes` read (and dropped) before the connection is closed."""

DRAIN_RETRY_AFTER = 1
"""Seconds a client is told to wait (Retry-After) when the instance is shutting down."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _decode(body: bytes, encoding: Encoding) -> Any:
    """The body's value; ValueError with a reason when it is not one JSON / msgpack value."""
    if not body.strip():
        return {}
    if encoding is Encoding.JSON:
        try:
            return json.loads(body, parse_constant=_reject_constant)
        except RecursionError:
            raise ValueError("body is not valid JSON: nested too deeply") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"body is not valid JSON: {exc}") from None
    try:
        return msgpack.unpackb(body, raw=False, strict_map_key=False)
    except msgpack.StackError:
        raise ValueError("body is not valid msgpack: nested too deeply") from None
    except Exception as exc:  # the decoder's errors have no common base
        raise ValueError(f"body is not valid msgpack: {type(exc).__name__}") from None


@stream_request_body
class ApiHandler(RequestHandler):
    SUPPORTED_METHODS = ("POST",)

    def initialize(self, executor: ApiExecutor, keys: ApiKeyChecker, max_body_bytes: int) -> None:
        self.executor = executor
        self.keys = keys
        self.max_body_bytes = max_body_bytes
        self.encoding = Encoding.JSON
        self._chunks: list[bytes] = []
        self._size = 0

    # Checks before the body ----------------------------------------------------

    def _given_key(self) -> str:
        key = self.request.headers.get("X-API-Key", "")
        if not key:
            scheme, _, value = self.request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() == "apikey":
                key = value.strip()
        if not key:
            key = self.get_query_argument("api_key", "") or ""
        return key

    async def prepare(self) -> None:
        # Any refusal from here on leaves the body unread: Tornado then drops the
        # connection, so say so and keep-alive clients open a new one.
        self.set_header("Connection", "close")
        content_type = self.request.headers.get("Content-Type", "").split(";")[0].strip()
        if content_type.lower() in MSGPACK_TYPES:
            self.encoding = Encoding.MSGPACK
        if self.executor.node.draining:  # shutting down: nothing new may start
            self.set_header("Retry-After", str(DRAIN_RETRY_AFTER))
            self._fail(HTTPStatus.SERVICE_UNAVAILABLE, "shutting down: retry (another instance)")
            return
        try:
            accepted = await self.keys.check(self._given_key(), self.path_args[0])
        except PermissionError:
            self._fail(HTTPStatus.FORBIDDEN, f"this key may not call {self.path_args[0][:64]!r}")
            return
        except Exception as exc:
            log.warning("API key lookup failed: %s", type(exc).__name__)
            self._fail(HTTPStatus.SERVICE_UNAVAILABLE)
            return
        if not accepted:
            self._fail(HTTPStatus.UNAUTHORIZED)
            return
        if not self.executor.has(self.path_args[0]):
            self._fail(HTTPStatus.NOT_FOUND, f"method not found: {self.path_args[0][:64]!r}")
            return
        declared = self.request.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            self._too_large()
            return
        if isinstance(self.request.connection, HTTP1Connection):
            # Past the limit the body is read on (and dropped) so the client hears
            # the 413, but not without end: beyond this Tornado closes the connection.
            self.request.connection.set_max_body_size(self.max_body_bytes + DISCARD_BYTES)
        self.clear_header("Connection")  # accepted: the body will be read

    def data_received(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size <= self.max_body_bytes:
            self._chunks.append(chunk)
        else:
            self._chunks = []  # keep reading (so the client hears the 413), keep nothing

    # The call ----------------------------------------------------------------

    async def post(self, method: str) -> None:
        if self._size > self.max_body_bytes:
            self._too_large()
            return
        try:
            params = _decode(b"".join(self._chunks), self.encoding)
        except ValueError as exc:
            self._fail(HTTPStatus.BAD_REQUEST, str(exc))
            return
        if not isinstance(params, dict):
            self._fail(HTTPStatus.BAD_REQUEST, "body must be a map (a JSON object)")
            return
        if method == "batch":
            try:
                self._answer(await self.executor.batch(params))
            except ReplyError as exc:
                self._answer({"error": exc.to_dict()})
            return
        try:
            self._answer({"result": await self.executor.call(method, params)})
        except ReplyError as exc:
            self._answer({"error": exc.to_dict()})

    # Answers -----------------------------------------------------------------

    def _answer(self, body: dict[str, Any]) -> None:
        if self.encoding is Encoding.MSGPACK:
            self.set_header("Content-Type", "application/msgpack")
        else:
            self.set_header("Content-Type", "application/json")
        self.finish(encode(body, self.encoding))

    def _too_large(self) -> None:
        self._fail(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            f"request body larger than {self.max_body_bytes} bytes",
        )

    def _fail(self, status: int, message: str | None = None) -> None:
        """An HTTP-level refusal, with a body saying why in the request's encoding."""
        self.set_status(status)
        code = HTTP_ERROR_CODES.get(status, ErrorCode.BAD_REQUEST)
        self._answer({"error": {"code": int(code), "message": message or HTTP_MESSAGES[status]}})

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        # Tornado's own refusals (405, a failure in a handler) in our format.
        message = HTTP_MESSAGES.get(status_code, "error")
        exc = kwargs.get("exc_info", (None, None))[1]
        if (
            isinstance(exc, HTTPError)
            and exc.log_message
            and status_code < HTTPStatus.INTERNAL_SERVER_ERROR
        ):
            message = exc.log_message
        code = HTTP_ERROR_CODES.get(status_code, ErrorCode.INTERNAL)
        self._answer({"error": {"code": int(code), "message": message}})

    # Logging without the query string (it may hold the key) --------------------

    def _request_summary(self) -> str:
        return f"{self.request.method} {self.request.path} ({self.request.remote_ip})"

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, HTTPError):
            log.warning("%d %s", value.status_code, self._request_summary())
        else:
            log.error("uncaught exception %s", self._request_summary(), exc_info=(typ, value, tb))
