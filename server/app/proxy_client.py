"""The proxy's HTTP client: JSON POSTs to the backend over pooled keep-alive
connections, with a bound on concurrent requests.

Contract of `ProxyClient.post`:
- It answers the body of a 200 response, or raises `ProxyError` (never anything
  else): the backend is down, refused TLS, answered another status or more
  than `max_response_bytes`, or did not answer within `timeout`. The timeout
  covers the whole call, the wait for a free slot included.
- At most `max_connections` requests are in flight at once; the next ones wait
  for a slot, in order, within their own timeout (a connect storm cannot open
  thousands of backend requests).
- It never retries: a publish or an RPC reaches the backend at most once.
- Connections are kept alive and reused (aiohttp's pool; Tornado's simple
  client opens one connection per request). No cookie jar: a `Set-Cookie` from
  the backend never leaks into another client's request.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping

import aiohttp

__all__ = ["ProxyClient", "ProxyError", "tls_context"]


class ProxyError(Exception):
    """The backend could not be asked, or gave no usable answer. The message is
    for the log (it names the endpoint and the cause), never for the client:
    the layer answers error 100 (temporary)."""


def tls_context(ca_file: str = "") -> ssl.SSLContext:
    """Verifies the backend's certificate and host name against the system's CAs,
    and those of `ca_file` when given (ValueError when it cannot be read)."""
    context = ssl.create_default_context()
    if ca_file:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"proxy.ca_file {ca_file!r}: {exc}") from exc
    return context


class ProxyClient:
    """POSTs JSON to backend endpoints; one per `ProxyHooks`, closed with it."""

    def __init__(
        self, max_connections: int, ca_file: str = "", max_response_bytes: int = 1 << 20
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.max_connections = max_connections
        self.max_response_bytes = max_response_bytes
        self._tls = tls_context(ca_file)
        self._slots = asyncio.Semaphore(max_connections)
        self._waiting = 0
        self._in_flight = 0
        self._session: aiohttp.ClientSession | None = None  # made in the running loop
        self._closed = False

    @property
    def in_flight(self) -> int:
        """Requests holding a slot now."""
        return self._in_flight

    @property
    def waiting(self) -> int:
        """Requests waiting for a slot now."""
        return self._waiting

    def _open_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self.max_connections, limit_per_host=0, ssl=self._tls
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=None),  # ours covers the slot wait too
                trust_env=False,
            )
        return self._session

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> bytes:
        """The body of `url`'s 200 answer to `body`; ProxyError otherwise."""
        if self._closed:
            raise ProxyError(f"{url}: the proxy client is closed")
        try:
            async with asyncio.timeout(timeout):
                self._waiting += 1
                try:
                    await self._slots.acquire()
                finally:
                    self._waiting -= 1
                self._in_flight += 1
                try:
                    return await self._request(url, body, headers)
                finally:
                    self._in_flight -= 1
                    self._slots.release()
        except TimeoutError:
            raise ProxyError(f"{url}: no answer within {timeout:g}s") from None
        except ProxyError:
            raise
        except aiohttp.ClientSSLError as exc:
            raise ProxyError(f"{url}: TLS failed: {exc}") from None
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise ProxyError(f"{url}: {type(exc).__name__}: {exc}") from None

    async def _request(self, url: str, body: bytes, headers: Mapping[str, str]) -> bytes:
        session = self._open_session()
        async with session.post(url, data=body, headers=dict(headers)) as response:
            if response.status != 200:
                raise ProxyError(f"{url}: HTTP status {response.status}")
            limit = self.max_response_bytes
            too_long = ProxyError(f"{url}: an answer longer than {limit} bytes")
            if (response.content_length or 0) > limit:
                raise too_long
            answer = bytearray()
            async for chunk in response.content.iter_chunked(1 << 16):
                answer += chunk
                if len(answer) > limit:
                    raise too_long
            return bytes(answer)

    async def close(self) -> None:
        """Closes the pooled connections; a later `post` raises ProxyError."""
        self._closed = True
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
