"""API keys kept in MongoDB, hashed.

A key reads `wsf_<id>_<secret>`. Only the SHA-256 of the secret is stored: the
secret is 192 random bits, so a fast hash is enough (no password stretching
needed), and a database dump reveals no usable key. The full key is shown once,
when it is created.

Live keys are cached for `cache_ttl` seconds per process, so the API does not
read MongoDB on every request; a revoked key stops working within that time on
every instance. Unknown ids are not cached (each costs one indexed read).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo.errors import PyMongoError

from .mongo import MongoStore

__all__ = ["ALL_SCOPES", "ApiKey", "KeyStore", "parse_key"]

PREFIX = "wsf"
ALL_SCOPES = "*"
_LAST_USED_EVERY = 60.0  # seconds between last-used updates of one key


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    def allows(self, method: str) -> bool:
        return ALL_SCOPES in self.scopes or method in self.scopes

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> ApiKey:
        return cls(
            doc["_id"],
            doc.get("name", ""),
            tuple(doc.get("scopes", [ALL_SCOPES])),
            doc["created_at"],
            doc.get("last_used_at"),
            doc.get("revoked_at"),
        )


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_key(key: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed key, else None."""
    prefix, sep, rest = key.partition("_")
    key_id, sep2, secret = rest.partition("_")
    if prefix != PREFIX or not sep or not sep2 or not key_id or not secret:
        return None
    return key_id, secret


class KeyStore:
    def __init__(self, store: MongoStore, cache_ttl: float = 10.0) -> None:
        self._keys = store.api_keys
        self._cache_ttl = cache_ttl
        # id -> (valid until, the key, its stored digest); live keys only, so
        # requests with made-up ids cannot grow it
        self._cache: dict[str, tuple[float, ApiKey, str]] = {}
        self._used: dict[str, float] = {}

    async def create(
        self, name: str, scopes: tuple[str, ...] = (ALL_SCOPES,)
    ) -> tuple[str, ApiKey]:
        """A new key: (the full key, shown only now; its record)."""
        key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(24)
        now = datetime.now(UTC)
        doc = {
            "_id": key_id,
            "name": name,
            "hash": _digest(secret),
            "scopes": list(scopes),
            "created_at": now,
        }
        await self._keys.insert_one(doc)
        return f"{PREFIX}_{key_id}_{secret}", ApiKey.from_document(doc)

    async def list(self) -> list[ApiKey]:
        cursor = self._keys.find({}, {"hash": 0}).sort("created_at", 1)
        return [ApiKey.from_document(doc) async for doc in cursor]

    async def revoke(self, key_id: str) -> bool:
        """Revoke by id; False when no such live key exists."""
        result = await self._keys.update_one(
            {"_id": key_id, "revoked_at": None}, {"$set": {"revoked_at": datetime.now(UTC)}}
        )
        self._cache.pop(key_id, None)
        return result.modified_count == 1

    async def verify(self, key: str) -> ApiKey | None:
        """The live key `key` names, or None (unknown, wrong secret or revoked)."""
        parsed = parse_key(key)
        if parsed is None:
            return None
        key_id, secret = parsed
        now = time.monotonic()
        cached = self._cache.get(key_id)
        if cached is None or cached[0] <= now:
            self._cache.pop(key_id, None)
            doc = await self._keys.find_one({"_id": key_id, "revoked_at": None})
            if doc is None:
                return None
            cached = (now + self._cache_ttl, ApiKey.from_document(doc), doc["hash"])
            self._cache[key_id] = cached
        _, found, digest = cached
        if not hmac.compare_digest(digest, _digest(secret)):
            return None
        if now - self._used.get(key_id, -_LAST_USED_EVERY) >= _LAST_USED_EVERY:
            self._used[key_id] = now
            with contextlib.suppress(PyMongoError):  # bookkeeping must not refuse a good key
                await self._keys.update_one(
                    {"_id": key_id}, {"$set": {"last_used_at": datetime.now(UTC)}}
                )
        return found
