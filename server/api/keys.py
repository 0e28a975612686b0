"""Which API keys the server HTTP API accepts.

Keys from the configuration (`api.keys`) are compared in constant time; a
`lookup` (the key store in MongoDB, wired in by the caller) answers for every
other key. With neither, no key is accepted: the API refuses every request.
Keys never appear in log lines or errors.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Iterable

__all__ = ["DEVELOPMENT_KEY", "ApiKeyChecker", "KeyLookup"]

log = logging.getLogger(__name__)

DEVELOPMENT_KEY = "dev-api-key-not-for-production"
"""The key config/default.toml ships so `make run` and the README examples work."""

KeyLookup = Callable[[str], Awaitable[object]]
"""The record of a key not in the configuration, falsy when unknown; raises when it
cannot tell. A record with an `allows(method)` method limits the key to those
methods (the MongoDB key store's scopes)."""


class ApiKeyChecker:
    def __init__(self, keys: Iterable[str], lookup: KeyLookup | None = None) -> None:
        self._keys = [key.encode("utf-8", "surrogatepass") for key in keys if key]
        self._lookup = lookup
        if DEVELOPMENT_KEY.encode() in self._keys:
            log.warning(
                "the server API accepts the development key from config/default.toml; "
                "set api.keys in your own configuration before exposing this server"
            )

    @property
    def configured(self) -> bool:
        """Whether any key at all can be accepted."""
        return bool(self._keys) or self._lookup is not None

    async def check(self, key: str, method: str = "") -> bool:
        """Whether `key` is accepted. A failing lookup raises (the caller answers
        503); a known key whose scopes leave out `method` raises PermissionError."""
        if not key:
            return False
        given = key.encode("utf-8", "surrogatepass")
        # Compare with every configured key, so the time taken does not tell which matched.
        matched = False
        for known in self._keys:
            matched |= hmac.compare_digest(known, given)
        if matched:
            return True
        if self._lookup is None:
            return False
        found = await self._lookup(key)
        allows = getattr(found, "allows", None)
        if found and method and allows is not None and not allows(method):
            raise PermissionError(method)
        return bool(found)
