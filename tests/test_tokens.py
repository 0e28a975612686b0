"""Token verification (server/auth/tokens.py): keys, algorithms, claims, and every failure."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from wsfan.auth.tokens import TokenError, TokenExpired, TokenVerifier
from wsfan.config import AuthSettings, ConfigError

SECRET = "test-secret-that-is-long-enough-for-hs256-and-hs384-and-hs512!!!"
OTHER_SECRET = "another-secret-that-is-long-enough-too!!"


def hs256(claims: dict[str, Any], secret: str = SECRET, **kwargs: Any) -> str:
    return jwt.encode(claims, secret, algorithm="HS256", **kwargs)


def in_(seconds: float) -> int:
    return int(time.time() + seconds)


def pem(public_key: Any) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def verifier() -> TokenVerifier:
    return TokenVerifier.from_settings(AuthSettings(hmac_secret=SECRET))


def reason(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(TokenError) as info:
        verifier.connection(token)
    assert not isinstance(info.value, TokenExpired)
    return info.value.reason


def unsigned(claims: dict[str, Any], header: dict[str, Any]) -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part(header)}.{part(claims)}."


# Connection tokens -------------------------------------------------------------------


def test_hs256_connection_token_gives_user_expiry_info_and_channels(verifier):
    token = hs256({"sub": "alice", "exp": in_(60), "info": {"name": "A"}, "channels": ["a", "b"]})
    claims = verifier.connection(token)
    assert claims.user == "alice"
    assert claims.expires_at == in_(60) or claims.expires_at == in_(59)
    assert claims.info == {"name": "A"}
    assert claims.channels == ("a", "b")


def test_token_without_exp_never_expires(verifier):
    assert verifier.connection(hs256({"sub": "alice"})).expires_at is None


def test_empty_or_missing_sub_is_the_anonymous_user(verifier):
    assert verifier.connection(hs256({"sub": ""})).user == ""
    assert verifier.connection(hs256({})).user == ""


def test_duplicate_channels_are_subscribed_once(verifier):
    assert verifier.connection(hs256({"channels": ["a", "a", "b"]})).channels == ("a", "b")


def test_expired_token_raises_token_expired(verifier):
    with pytest.raises(TokenExpired):
        verifier.connection(hs256({"sub": "alice", "exp": in_(-1)}))


def test_bad_signature_is_refused(verifier):
    assert reason(verifier, hs256({"sub": "alice"}, OTHER_SECRET)) == "bad signature"


def test_tampered_payload_is_refused(verifier):
    header, _, signature = hs256({"sub": "alice"}).split(".")
    forged = hs256({"sub": "admin"}).split(".")[1]
    assert reason(verifier, f"{header}.{forged}x.{signature}") in (
        "bad signature",
        "malformed token",
    )
    assert reason(verifier, f"{header}.{forged}.{signature[:-4]}AAAA") == "bad signature"


def test_alg_none_is_refused(verifier):
    token = unsigned({"sub": "admin"}, {"alg": "none", "typ": "JWT"})
    assert reason(verifier, token) == "algorithm not allowed"


def test_alg_none_in_other_spellings_is_refused(verifier):
    for alg in ("None", "NONE", "nOnE", ""):
        assert reason(verifier, unsigned({"sub": "a"}, {"alg": alg})) == "algorithm not allowed"


def test_other_hmac_algorithm_with_the_right_secret_is_refused(verifier):
    token = jwt.encode({"sub": "alice"}, SECRET, algorithm="HS384")
    assert reason(verifier, token) == "algorithm not allowed"


def test_rs256_token_is_refused_when_only_a_secret_is_configured(verifier, rsa_key):
    token = jwt.encode({"sub": "alice"}, rsa_key, algorithm="RS256")
    assert reason(verifier, token) == "algorithm not allowed"


@pytest.mark.parametrize("garbage", ["", "x", "a.b", "a.b.c", "....", "é.é.é", "eyJ9.e30.x"])
def test_malformed_token_is_refused(verifier, garbage: str):
    assert reason(verifier, garbage) in ("malformed token", "algorithm not allowed")


def test_subscription_token_is_not_a_connection_token(verifier):
    token = hs256({"sub": "alice", "channel": "news"})
    assert reason(verifier, token) == "subscription token used as a connection token"


@pytest.mark.parametrize("channels", ["news", [1], {"a": 1}, [None]])
def test_channels_claim_must_be_a_list_of_strings(verifier, channels):
    assert (
        reason(verifier, hs256({"channels": channels})) == "channels claim is not a list of strings"
    )


@pytest.mark.parametrize("sub", [42, None, ["alice"]])
def test_sub_claim_must_be_a_string(verifier, sub):
    assert reason(verifier, hs256({"sub": sub})) == "sub claim is not a string"


def test_exp_that_is_not_a_number_is_refused(verifier):
    assert reason(verifier, hs256({"sub": "a", "exp": "tomorrow"})) == "malformed token"


@pytest.mark.parametrize("exp", [float("inf"), float("nan")])
def test_exp_that_is_not_a_finite_number_is_refused(verifier, exp: float):
    assert reason(verifier, hs256({"sub": "a", "exp": exp})) == "malformed token"


def test_token_not_valid_yet_is_refused(verifier):
    assert reason(verifier, hs256({"sub": "a", "nbf": in_(3600)})) == "not valid yet"


def test_no_key_configured_refuses_every_token():
    verifier = TokenVerifier.from_settings(AuthSettings())
    assert not verifier.enabled
    assert reason(verifier, hs256({"sub": "alice"})) == "no token key configured"


# Subscription tokens -------------------------------------------------------------------


def test_subscription_token_gives_user_channel_expiry_and_info(verifier):
    token = hs256({"sub": "alice", "channel": "private:1", "exp": in_(60), "info": [1]})
    claims = verifier.subscription(token)
    assert (claims.user, claims.channel, claims.info) == ("alice", "private:1", [1])
    assert claims.expires_at is not None


def test_connection_token_is_not_a_subscription_token(verifier):
    with pytest.raises(TokenError) as info:
        verifier.subscription(hs256({"sub": "alice"}))
    assert info.value.reason == "channel claim missing"


def test_expired_subscription_token_raises_token_expired(verifier):
    with pytest.raises(TokenExpired):
        verifier.subscription(hs256({"sub": "a", "channel": "c", "exp": in_(-5)}))


# Audience and issuer -------------------------------------------------------------------


def test_configured_audience_is_required():
    verifier = TokenVerifier.from_settings(AuthSettings(hmac_secret=SECRET, audience="wsfan"))
    assert verifier.connection(hs256({"sub": "a", "aud": "wsfan"})).user == "a"
    assert reason(verifier, hs256({"sub": "a", "aud": "other"})) == "wrong audience"
    assert reason(verifier, hs256({"sub": "a"})) == "missing required claim"


def test_audience_in_a_token_is_ignored_when_none_is_configured(verifier):
    assert verifier.connection(hs256({"sub": "a", "aud": "anything"})).user == "a"


def test_configured_issuer_is_required():
    verifier = TokenVerifier.from_settings(AuthSettings(hmac_secret=SECRET, issuer="https://me"))
    assert verifier.connection(hs256({"sub": "a", "iss": "https://me"})).user == "a"
    assert reason(verifier, hs256({"sub": "a", "iss": "https://evil"})) == "wrong issuer"
    assert reason(verifier, hs256({"sub": "a"})) == "missing required claim"


# Public keys ---------------------------------------------------------------------------


def test_rs256_token_verifies_with_a_pem_public_key(tmp_path: Path, rsa_key):
    path = tmp_path / "key.pem"
    path.write_bytes(pem(rsa_key.public_key()))
    verifier = TokenVerifier.from_settings(AuthSettings(public_key_file=str(path)))
    assert verifier.connection(jwt.encode({"sub": "a"}, rsa_key, algorithm="RS256")).user == "a"


def test_es256_token_verifies_with_a_pem_public_key(tmp_path: Path, ec_key):
    path = tmp_path / "key.pem"
    path.write_bytes(pem(ec_key.public_key()))
    verifier = TokenVerifier.from_settings(AuthSettings(public_key_file=str(path)))
    assert verifier.connection(jwt.encode({"sub": "a"}, ec_key, algorithm="ES256")).user == "a"


def test_rs256_token_signed_by_another_key_is_refused(tmp_path: Path, rsa_key):
    path = tmp_path / "key.pem"
    path.write_bytes(pem(rsa_key.public_key()))
    verifier = TokenVerifier.from_settings(AuthSettings(public_key_file=str(path)))
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert reason(verifier, jwt.encode({"sub": "a"}, other, algorithm="RS256")) == "bad signature"


def test_hs256_token_signed_with_the_public_key_as_secret_is_refused(tmp_path: Path, rsa_key):
    """The algorithm-confusion attack: only RS256 is accepted with an RSA key."""
    public_pem = pem(rsa_key.public_key())
    path = tmp_path / "key.pem"
    path.write_bytes(public_pem)
    verifier = TokenVerifier.from_settings(AuthSettings(public_key_file=str(path)))
    token = unsigned({"sub": "admin"}, {"alg": "HS256", "typ": "JWT"}) + "c2ln"
    assert reason(verifier, token) == "algorithm not allowed"


def test_secret_and_public_key_may_both_be_configured(tmp_path: Path, rsa_key):
    path = tmp_path / "key.pem"
    path.write_bytes(pem(rsa_key.public_key()))
    verifier = TokenVerifier.from_settings(
        AuthSettings(hmac_secret=SECRET, public_key_file=str(path))
    )
    assert verifier.connection(hs256({"sub": "h"})).user == "h"
    assert verifier.connection(jwt.encode({"sub": "r"}, rsa_key, algorithm="RS256")).user == "r"


def jwks(*entries: tuple[Any, str]) -> dict[str, Any]:
    keys = []
    for public_key, kid in entries:
        algorithm = (
            jwt.algorithms.RSAAlgorithm
            if isinstance(public_key, rsa.RSAPublicKey)
            else (jwt.algorithms.ECAlgorithm)
        )
        keys.append({**algorithm.to_jwk(public_key, as_dict=True), "kid": kid})
    return {"keys": keys}


def test_jwks_key_is_chosen_by_kid(tmp_path: Path, rsa_key, ec_key):
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks((rsa_key.public_key(), "r1"), (ec_key.public_key(), "e1"))))
    verifier = TokenVerifier.from_settings(AuthSettings(jwks_file=str(path)))
    rs = jwt.encode({"sub": "r"}, rsa_key, algorithm="RS256", headers={"kid": "r1"})
    es = jwt.encode({"sub": "e"}, ec_key, algorithm="ES256", headers={"kid": "e1"})
    assert verifier.connection(rs).user == "r"
    assert verifier.connection(es).user == "e"


def test_jwks_token_signed_by_a_key_not_in_the_set_is_refused(tmp_path: Path, rsa_key):
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks((rsa_key.public_key(), "r1"))))
    verifier = TokenVerifier.from_settings(AuthSettings(jwks_file=str(path)))
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode({"sub": "x"}, other, algorithm="RS256", headers={"kid": "r1"})
    assert reason(verifier, token) == "bad signature"


# Configuration errors ------------------------------------------------------------------


def config_error(**auth: Any) -> str:
    with pytest.raises(ConfigError) as info:
        TokenVerifier.from_settings(AuthSettings(**auth))
    return str(info.value)


def test_short_hmac_secret_is_a_config_error_that_does_not_quote_it():
    message = config_error(hmac_secret="short-secret")
    assert "auth.hmac_secret" in message and "32 bytes" in message
    assert "short-secret" not in message


def test_missing_public_key_file_is_a_config_error(tmp_path: Path):
    assert "auth.public_key_file" in config_error(public_key_file=str(tmp_path / "nope.pem"))


def test_public_key_file_that_is_not_pem_is_a_config_error(tmp_path: Path):
    path = tmp_path / "key.pem"
    path.write_text("not a key")
    assert "not a PEM public key" in config_error(public_key_file=str(path))


def test_ec_key_on_another_curve_is_a_config_error(tmp_path: Path):
    path = tmp_path / "key.pem"
    path.write_bytes(pem(ec.generate_private_key(ec.SECP384R1()).public_key()))
    assert "ES256" in config_error(public_key_file=str(path))


def test_jwks_file_that_is_not_json_is_a_config_error(tmp_path: Path):
    path = tmp_path / "jwks.json"
    path.write_text("{")
    assert "auth.jwks_file" in config_error(jwks_file=str(path))


def test_jwks_without_keys_is_a_config_error(tmp_path: Path):
    path = tmp_path / "jwks.json"
    path.write_text('{"keys": []}')
    assert "keys" in config_error(jwks_file=str(path))


def test_jwks_with_a_symmetric_key_is_a_config_error_that_does_not_quote_it(tmp_path: Path):
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [{"kty": "oct", "kid": "s", "k": "c2VjcmV0LXZhbHVl"}]}))
    message = config_error(jwks_file=str(path))
    assert "'s'" in message and "c2VjcmV0LXZhbHVl" not in message


def test_jwks_with_a_private_key_is_a_config_error(tmp_path: Path, rsa_key):
    entry = jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key, as_dict=True)
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [entry]}))
    message = config_error(jwks_file=str(path))
    assert "public key" in message and entry["d"] not in message
