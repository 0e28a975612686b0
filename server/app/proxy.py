"""Centrifugo's HTTP proxy as an implementation of the hook interface: each
decision point POSTs Centrifugo's request JSON to its `[proxy]` endpoint and
maps the answer, so a backend written for Centrifugo works unchanged.

The wire (Centrifugo's "Proxy events to the backend"):
- Requests carry `client`, `transport`, `protocol` (the client's: "json" or
  "msgpack") and `encoding`, then per point: connect `name`, `version`, data;
  refresh `user`; subscribe `user`, `channel`, `token` (when sent), data;
  sub_refresh `user`, `channel`; publish `user`, `channel`, data; rpc `user`,
  `method`, data.
- Data: for JSON clients (`encoding: "json"`) raw JSON in `data`, both ways.
  For msgpack clients (`encoding: "binary"`, Centrifugo's binary encoding) a
  binary value travels as base64 in `b64data`, both ways; other msgpack values
  go as `data` (binary nested inside them as base64 strings, as everywhere in
  JSON). An answer's `b64data` / `b64info`, when non-empty, wins over `data` /
  `info`: bytes for a msgpack client, JSON text to parse for a JSON client.
- Answers: `{"disconnect": {code, reason}}` raises `Disconnect`, `{"error":
  {code, message, temporary}}` raises `ReplyError` with the code unchanged
  (checked first in that order, as Centrifugo does); otherwise `result` maps to
  the point's result type. No result: connect is refused (3501, no credentials),
  refresh and sub_refresh expire, the others allow with nothing changed.
- Headers: `proxy.static_http_headers` on every request, then the handshake's
  headers named in `proxy.http_headers` (these win), then `Content-Type:
  application/json`.

Failures raise `ProxyError` (logged by the layer, error 100 to the client): the
backend down, slower than the point's timeout, answering a status other than
200, or anything malformed: not JSON, wrong types, bad base64, data nested
deeper than clients' data may be, a code that is no reply or disconnect code.
Nothing is retried here.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from ..config.settings import ProxySettings
from ..errors import Disconnect, DisconnectCode, ReplyError
from ..protocol import DEFAULT_MAX_DATA_DEPTH, Encoding, check_data, encode
from .hooks import (
    Client,
    ConnectContext,
    ConnectResult,
    HookPoint,
    PublishContext,
    PublishResult,
    RefreshContext,
    RefreshResult,
    RPCContext,
    RPCResult,
    SubRefreshContext,
    SubRefreshResult,
    SubscribeContext,
    SubscribeResult,
)
from .proxy_client import ProxyClient, ProxyError

__all__ = ["ProxyError", "ProxyHooks"]

_BINARY = (bytes, bytearray, memoryview)
_Result = TypeVar("_Result")


class ProxyHooks:
    """The hook points whose `[proxy] <point>_endpoint` is set, answered by the backend."""

    name = "proxy"

    def __init__(
        self, settings: ProxySettings, max_data_depth: int = DEFAULT_MAX_DATA_DEPTH
    ) -> None:
        """ValueError naming the key when an endpoint is no http(s) URL or
        `proxy.ca_file` cannot be read. Data and info in answers nest at most
        `max_data_depth` levels (`client.max_data_depth`), as clients' data."""
        for point in HookPoint:
            url = settings.endpoint_of(point.proxy_name)
            if url and not url.startswith(("http://", "https://")):
                key = f"proxy.{point.proxy_name}_endpoint"
                raise ValueError(f"{key} {url!r} is not an http:// or https:// URL")
        self.settings = settings
        self._max_data_depth = max_data_depth
        self.client = ProxyClient(
            settings.max_connections, settings.ca_file, settings.max_response_bytes
        )
        self._static_headers = {k.lower(): v for k, v in settings.static_http_headers.items()}
        self._forwarded = tuple(name.lower() for name in settings.http_headers)

    def provides(self, point: HookPoint) -> bool:
        return bool(self.settings.endpoint_of(point.proxy_name))

    async def close(self) -> None:
        await self.client.close()

    # Decision points ----------------------------------------------------------------

    async def connecting(self, ctx: ConnectContext) -> ConnectResult:
        request = _request(ctx.client, name=ctx.name, version=ctx.version)
        _put_data(request, ctx.client, ctx.data)
        return await self._ask(HookPoint.CONNECTING, request, ctx.headers, ctx.client, _connected)

    async def refresh(self, ctx: RefreshContext) -> RefreshResult:
        request = _request(ctx.client, user=ctx.client.user)
        return await self._ask(HookPoint.REFRESH, request, None, ctx.client, _refreshed)

    async def subscribing(self, ctx: SubscribeContext) -> SubscribeResult:
        request = _request(ctx.client, user=ctx.client.user, channel=ctx.channel)
        if ctx.token:
            request["token"] = ctx.token
        _put_data(request, ctx.client, ctx.data)
        return await self._ask(HookPoint.SUBSCRIBING, request, None, ctx.client, _subscribed)

    async def sub_refresh(self, ctx: SubRefreshContext) -> SubRefreshResult:
        request = _request(ctx.client, user=ctx.client.user, channel=ctx.channel)
        return await self._ask(HookPoint.SUB_REFRESH, request, None, ctx.client, _sub_refreshed)

    async def publishing(self, ctx: PublishContext) -> PublishResult:
        request = _request(ctx.client, user=ctx.client.user, channel=ctx.channel)
        _put_data(request, ctx.client, ctx.data)
        return await self._ask(HookPoint.PUBLISHING, request, None, ctx.client, _published)

    async def rpc(self, ctx: RPCContext) -> RPCResult:
        request = _request(ctx.client, user=ctx.client.user, method=ctx.method)
        _put_data(request, ctx.client, ctx.data)
        return await self._ask(HookPoint.RPC, request, None, ctx.client, _answered)

    # One call -----------------------------------------------------------------------

    async def _ask(
        self,
        point: HookPoint,
        request: dict[str, Any],
        handshake: Mapping[str, str] | None,
        client: Client,
        to_result: Callable[[dict[str, Any] | None, _Reader], _Result],
    ) -> _Result:
        """The answer's result as `to_result` maps it; raises the answer's
        disconnect or error, or ProxyError naming the endpoint."""
        url = self.settings.endpoint_of(point.proxy_name)
        if not url:
            raise ProxyError(f"no proxy.{point.proxy_name}_endpoint")
        headers = self._headers(client.headers if handshake is None else handshake)
        timeout = self.settings.timeout_of(point.proxy_name)
        raw = await self.client.post(url, encode(request, Encoding.JSON), headers, timeout)
        try:
            return to_result(_outcome(raw), _Reader(client, self._max_data_depth))
        except ProxyError as exc:
            raise ProxyError(f"{url}: {exc}") from None

    def _headers(self, handshake: Mapping[str, str]) -> dict[str, str]:
        # By lower-cased name: a forwarded header replaces a static one of any case.
        headers = dict(self._static_headers)
        if self._forwarded and handshake:
            for name, value in handshake.items():
                if name.lower() in self._forwarded:
                    headers[name.lower()] = value
        headers["content-type"] = "application/json"
        return headers


# Requests ---------------------------------------------------------------------------


def _request(client: Client, **fields: str) -> dict[str, Any]:
    binary = client.encoding == Encoding.MSGPACK
    return {
        "client": client.client_id,
        "transport": client.transport,
        "protocol": client.encoding,
        "encoding": "binary" if binary else "json",
        **fields,
    }


def _put_data(request: dict[str, Any], client: Client, data: Any) -> None:
    if data is None:
        return
    if client.encoding == Encoding.MSGPACK and isinstance(data, _BINARY):
        request["b64data"] = base64.b64encode(bytes(data)).decode("ascii")
    else:
        request["data"] = data


# Results ----------------------------------------------------------------------------
# Each maps an answer's `result` (None when it has none) for one point.


def _connected(result: dict[str, Any] | None, read: _Reader) -> ConnectResult:
    if result is None:  # as centrifuge: a connect with no credentials is refused
        raise Disconnect(DisconnectCode.BAD_REQUEST, "no credentials")
    return ConnectResult(
        user=_string(result, "user"),
        info=read.payload(result, "info")[1],
        data=read.payload(result, "data")[1],
        channels=_strings(result, "channels"),
        expire_at=_expire_at(result),
        subs=_subs(result, read),
    )


def _subs(result: dict[str, Any], read: _Reader) -> dict[str, SubscribeResult]:
    """A connect result's `subs`: channel -> its subscription's info and data
    (their other options, such as `override`, are not supported and ignored)."""
    subs = result.get("subs")
    if subs is None:
        return {}
    if not isinstance(subs, dict):
        raise ProxyError("result.subs is not an object")
    out = {}
    for channel, options in subs.items():
        if not isinstance(options, dict):
            raise ProxyError(f"result.subs.{channel} is not an object")
        info, data = read.payload(options, "info")[1], read.payload(options, "data")[1]
        out[channel] = SubscribeResult(info=info, data=data)
    return out


def _refreshed(result: dict[str, Any] | None, read: _Reader) -> RefreshResult:
    if result is None or _flag(result, "expired"):
        return RefreshResult(expired=True)
    return RefreshResult(expire_at=_expire_at(result), info=read.payload(result, "info")[1])


def _subscribed(result: dict[str, Any] | None, read: _Reader) -> SubscribeResult:
    if result is None:
        return SubscribeResult()
    return SubscribeResult(
        info=read.payload(result, "info")[1],
        data=read.payload(result, "data")[1],
        expire_at=_expire_at(result),
    )


def _sub_refreshed(result: dict[str, Any] | None, read: _Reader) -> SubRefreshResult:
    if result is None or _flag(result, "expired"):
        return SubRefreshResult(expired=True)
    info = read.payload(result, "info")[1]
    return SubRefreshResult(expire_at=_expire_at(result), info=info)


def _published(result: dict[str, Any] | None, read: _Reader) -> PublishResult:
    if result is None:
        return PublishResult()
    skip_history = _flag(result, "skip_history")
    replaced, data = read.payload(result, "data")
    if replaced:
        return PublishResult(data=data, skip_history=skip_history)
    return PublishResult(skip_history=skip_history)


def _answered(result: dict[str, Any] | None, read: _Reader) -> RPCResult:
    if result is None:
        return RPCResult()
    return RPCResult(data=read.payload(result, "data")[1])


# Answers ----------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_decode_json = json.JSONDecoder(parse_constant=_reject_constant).decode


def _outcome(raw: bytes) -> dict[str, Any] | None:
    answer = _json(raw, "the answer")
    if not isinstance(answer, dict):
        raise ProxyError("the answer is not a JSON object")
    if answer.get("disconnect") is not None:
        raise _disconnect(answer["disconnect"])
    if answer.get("error") is not None:
        raise _reply_error(answer["error"])
    result = answer.get("result")
    if result is not None and not isinstance(result, dict):
        raise ProxyError("result is not an object")
    return result


def _json(raw: bytes, what: str) -> Any:
    try:
        return _decode_json(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError too
        raise ProxyError(f"{what} is not JSON") from None


def _reply_error(error: Any) -> ReplyError:
    if not isinstance(error, dict):
        raise ProxyError("error is not an object")
    code = _integer(error, "code", "error.code")
    message = _string(error, "message", "error.message")
    temporary = error.get("temporary")
    if temporary is not None and not isinstance(temporary, bool):
        raise ProxyError("error.temporary is not a boolean")
    try:
        return ReplyError(code, message or None, temporary)
    except ValueError:
        raise ProxyError(f"error.code {code} is not a reply error code") from None


def _disconnect(disconnect: Any) -> Disconnect:
    if not isinstance(disconnect, dict):
        raise ProxyError("disconnect is not an object")
    code = _integer(disconnect, "code", "disconnect.code")
    reason = _string(disconnect, "reason", "disconnect.reason")
    try:
        return Disconnect(code, reason or None)
    except ValueError:
        raise ProxyError(f"disconnect.code {code} is not a disconnect code") from None


def _string(fields: dict[str, Any], key: str, where: str = "") -> str:
    value = fields.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ProxyError(f"{where or 'result.' + key} is not a string")
    return value


def _integer(fields: dict[str, Any], key: str, where: str = "") -> int:
    value = fields.get(key)
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool):
        raise ProxyError(f"{where or 'result.' + key} is not an integer")
    return value


def _flag(result: dict[str, Any], key: str) -> bool:
    value = result.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ProxyError(f"result.{key} is not a boolean")
    return value


def _strings(result: dict[str, Any], key: str) -> tuple[str, ...]:
    value = result.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ProxyError(f"result.{key} is not a list of strings")
    return tuple(value)


def _expire_at(result: dict[str, Any]) -> int | None:
    """Unix seconds; 0 or absent: never."""
    expire_at = _integer(result, "expire_at")
    if expire_at < 0:
        raise ProxyError("result.expire_at is negative")
    return expire_at or None


@dataclass(frozen=True, slots=True)
class _Reader:
    """Reads an answer's data for one client."""

    client: Client
    max_depth: int

    def payload(self, result: dict[str, Any], key: str) -> tuple[bool, Any]:
        """(whether the result carries `key`, its value): `b64<key>` when non-empty
        (bytes for a msgpack client, parsed JSON for a JSON client), else `<key>`."""
        encoded = result.get("b64" + key)
        if encoded is None or encoded == "":
            value = result.get(key)
            return value is not None, self._checked(f"result.{key}", value)
        if not isinstance(encoded, str):
            raise ProxyError(f"result.b64{key} is not a string")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ProxyError(f"result.b64{key} is not base64") from None
        if self.client.encoding == Encoding.MSGPACK:
            return True, raw
        name = f"result.b64{key}"
        return True, self._checked(name, _json(raw, f"{name} (for a JSON client)"))

    def _checked(self, name: str, value: Any) -> Any:
        try:
            check_data(name, value, self.max_depth)
        except ReplyError as exc:
            raise ProxyError(exc.message) from None
        return value
