"""Connection and subscription tokens: JWTs verified with PyJWT.

Claims follow what the official SDKs and Centrifugo use:
- connection token: `sub` (the user; "" or missing is anonymous), `exp`, `info`
  (attached to presence, join/leave and the client's publications), `channels`
  (server-side subscriptions made on connect);
- subscription token: `sub` (must be the connection's user), `channel` (must be
  the channel subscribed to), `exp`, `info` (the subscription's `chan_info`).

Accepted algorithms are exactly those a key is configured for: HS256 with
`auth.hmac_secret`, RS256 / ES256 with `auth.public_key_file` (PEM) or a key of
`auth.jwks_file`. Anything else (`alg: none` included) is refused before any
signature check. `exp` is enforced when present; `aud` / `iss` when configured.

Errors carry fixed reasons chosen here, never text taken from the token or a
key, so they are safe to log and to send: no token or secret can leak through them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from ..config import AuthSettings, ConfigError

__all__ = [
    "DEV_HMAC_SECRET",
    "MIN_HMAC_SECRET_BYTES",
    "ConnectionClaims",
    "SubscriptionClaims",
    "TokenError",
    "TokenExpired",
    "TokenVerifier",
]

log = logging.getLogger(__name__)

DEV_HMAC_SECRET = "wsfan-development-secret-not-for-production-use"
"""The secret config/default.toml ships so `run.py token` works against `make run`."""

MIN_HMAC_SECRET_BYTES = 32
"""RFC 7518 3.2: an HS256 key must be at least as long as the hash output."""

HS256, RS256, ES256 = "HS256", "RS256", "ES256"


class TokenError(Exception):
    """A token that cannot be used. `reason` is fixed text: safe to log and to send."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class TokenExpired(TokenError):
    """The token's `exp` has passed: the client should get a new one."""

    def __init__(self) -> None:
        super().__init__("token expired")


@dataclass(frozen=True, slots=True)
class ConnectionClaims:
    user: str
    expires_at: int | None  # unix seconds; None: the token never expires
    info: Any
    channels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SubscriptionClaims:
    user: str
    channel: str
    expires_at: int | None
    info: Any


@dataclass(frozen=True, slots=True)
class _Key:
    algorithm: str
    key: Any
    kid: str | None = None


# PyJWT's exception classes -> our fixed reasons (most specific first).
_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.InvalidSignatureError, "bad signature"),
    (jwt.InvalidAlgorithmError, "algorithm not allowed"),
    (jwt.exceptions.InvalidSubjectError, "sub claim is not a string"),
    (jwt.MissingRequiredClaimError, "missing required claim"),
    (jwt.InvalidAudienceError, "wrong audience"),
    (jwt.InvalidIssuerError, "wrong issuer"),
    (jwt.ImmatureSignatureError, "not valid yet"),
    (jwt.DecodeError, "malformed token"),
)


def _reason(exc: Exception) -> str:
    for kind, reason in _REASONS:
        if isinstance(exc, kind):
            return reason
    return "invalid token"


class TokenVerifier:
    """Verifies tokens against the configured keys. Immutable after construction."""

    def __init__(self, keys: list[_Key], audience: str = "", issuer: str = "") -> None:
        self._keys = keys
        self._algorithms = frozenset(k.algorithm for k in keys)
        self._audience = audience
        self._issuer = issuer

    @classmethod
    def from_settings(cls, auth: AuthSettings) -> TokenVerifier:
        """Keys from `[auth]`; ConfigError names the key at fault (never its value)."""
        keys: list[_Key] = []
        if auth.hmac_secret:
            if len(auth.hmac_secret.encode("utf-8")) < MIN_HMAC_SECRET_BYTES:
                raise ConfigError(
                    f"auth.hmac_secret: expected at least {MIN_HMAC_SECRET_BYTES} bytes "
                    "(RFC 7518 section 3.2)"
                )
            if auth.hmac_secret == DEV_HMAC_SECRET:
                log.warning("auth.hmac_secret is the shipped development secret: set your own")
            keys.append(_Key(HS256, auth.hmac_secret))
        if auth.public_key_file:
            keys.append(_pem_key(Path(auth.public_key_file)))
        if auth.jwks_file:
            keys.extend(_jwks_keys(Path(auth.jwks_file)))
        return cls(keys, auth.audience, auth.issuer)

    @property
    def enabled(self) -> bool:
        """False when no key is configured: no token can be verified."""
        return bool(self._keys)

    def connection(self, token: str) -> ConnectionClaims:
        """Claims of a connection token; raises TokenExpired or TokenError."""
        claims = self._decode(token)
        if "channel" in claims:
            raise TokenError("subscription token used as a connection token")
        channels = claims.get("channels", [])
        if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
            raise TokenError("channels claim is not a list of strings")
        return ConnectionClaims(
            _user(claims), _expires_at(claims), claims.get("info"), tuple(dict.fromkeys(channels))
        )

    def subscription(self, token: str) -> SubscriptionClaims:
        """Claims of a subscription token; raises TokenExpired or TokenError."""
        claims = self._decode(token)
        channel = claims.get("channel")
        if not isinstance(channel, str) or not channel:
            raise TokenError("channel claim missing")
        return SubscriptionClaims(_user(claims), channel, _expires_at(claims), claims.get("info"))

    def _decode(self, token: str) -> dict[str, Any]:
        if not self._keys:
            raise TokenError("no token key configured")
        try:
            header = jwt.get_unverified_header(token)
        except Exception:  # the boundary: whatever the client sent
            raise TokenError("malformed token") from None
        algorithm = header.get("alg")
        if algorithm not in self._algorithms:
            raise TokenError("algorithm not allowed")
        kid = header.get("kid")
        candidates = [k for k in self._keys if k.algorithm == algorithm]
        if isinstance(kid, str) and any(k.kid == kid for k in candidates):
            candidates = [k for k in candidates if k.kid == kid]
        options: dict[str, Any] = {"verify_aud": bool(self._audience)}
        failure = "bad signature"
        for key in candidates:
            try:
                claims = jwt.decode(
                    token,
                    key.key,
                    algorithms=[algorithm],
                    audience=self._audience or None,
                    issuer=self._issuer or None,
                    options=options,  # type: ignore[arg-type]
                )
            except jwt.ExpiredSignatureError:
                raise TokenExpired() from None
            except jwt.InvalidSignatureError:
                continue  # maybe another key of the same algorithm
            except Exception as exc:
                failure = _reason(exc)
                break
            if not isinstance(claims, dict):
                raise TokenError("malformed token")
            return claims
        raise TokenError(failure)


def _user(claims: dict[str, Any]) -> str:
    user = claims.get("sub", "")
    if not isinstance(user, str):
        raise TokenError("sub claim is not a string")
    return user


def _expires_at(claims: dict[str, Any]) -> int | None:
    exp = claims.get("exp")
    return None if exp is None else int(exp)  # PyJWT has checked it is a number


def _pem_key(path: Path) -> _Key:
    try:
        key = load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"auth.public_key_file: cannot read {path}: {exc.strerror}") from None
    except ValueError:
        raise ConfigError(f"auth.public_key_file: {path} is not a PEM public key") from None
    if isinstance(key, rsa.RSAPublicKey):
        return _Key(RS256, key)
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return _Key(ES256, key)
    raise ConfigError(
        f"auth.public_key_file: {path} must hold an RSA (RS256) or P-256 EC (ES256) public key"
    )


def _jwks_keys(path: Path) -> list[_Key]:
    """RSA and P-256 EC keys of a JWKS file. Errors never quote key material."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"auth.jwks_file: cannot read {path}: {exc.strerror}") from None
    except ValueError:
        raise ConfigError(f"auth.jwks_file: {path} is not JSON") from None
    entries = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f'auth.jwks_file: {path} has no "keys" list')
    keys = []
    for index, entry in enumerate(entries):
        kid = entry.get("kid") if isinstance(entry, dict) else None
        name = f"key {kid!r}" if isinstance(kid, str) else f"key #{index}"
        kty = entry.get("kty") if isinstance(entry, dict) else None
        if kty not in ("RSA", "EC") or "d" in entry:
            raise ConfigError(f"auth.jwks_file: {name} must be an RSA or EC public key")
        try:
            jwk = jwt.PyJWK(entry)
        except Exception:
            raise ConfigError(f"auth.jwks_file: {name} is not a usable key") from None
        if jwk.algorithm_name not in (RS256, ES256):
            raise ConfigError(f"auth.jwks_file: {name} is not an RS256 or ES256 key")
        keys.append(_Key(jwk.algorithm_name, jwk.key, kid if isinstance(kid, str) else None))
    return keys
