"""`python run.py token USER [--channel C] [--ttl S] [--info JSON]`: tokens for development.

Mints an HS256 token with the configured `auth.hmac_secret` (from
config/default.toml, the `--config` file and `WSFAN_AUTH__HMAC_SECRET`, as the
server reads it) and prints it alone on stdout. Without `--channel` it is a
connection token; with it, a subscription token for that channel.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import jwt

from ..config import ConfigError, load_settings
from ..prog import prog_name
from .tokens import HS256, TokenVerifier

__all__ = ["main", "mint"]

EXIT_USAGE = 2


def mint(
    secret: str,
    user: str,
    channel: str | None = None,
    ttl: float = 3600,
    info: Any = None,
    channels: list[str] | None = None,
    now: float | None = None,
) -> str:
    """An HS256 token: a connection token, or a subscription token for `channel`.

    `ttl` of 0 leaves out `exp` (the token never expires).
    """
    claims: dict[str, Any] = {"sub": user}
    if ttl:
        claims["exp"] = int((time.time() if now is None else now) + ttl)
    if info is not None:
        claims["info"] = info
    if channel is not None:
        claims["channel"] = channel
    if channels:
        claims["channels"] = channels
    return jwt.encode(claims, secret, algorithm=HS256)


def _parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog_name("token"),
        description="Print a token signed with auth.hmac_secret (for development).",
    )
    parser.add_argument("user", help='the user id (the "sub" claim); "" for anonymous')
    parser.add_argument("--channel", help="make a subscription token for this channel")
    parser.add_argument(
        "--ttl", type=float, default=3600, help="seconds until it expires; 0: never (3600)"
    )
    parser.add_argument("--info", help='JSON attached as "info" (presence, publications)')
    parser.add_argument(
        "--subscribe",
        action="append",
        metavar="CHANNEL",
        help='server-side subscription on connect (the "channels" claim); repeatable',
    )
    parser.add_argument("--config", type=Path, help="TOML file layered over config/default.toml")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = _parse_args(argv)
    if args.ttl < 0:
        print("token: --ttl must be >= 0", file=sys.stderr)
        return EXIT_USAGE
    if args.channel is not None and args.subscribe:
        print(
            "token: --subscribe belongs in a connection token, not with --channel", file=sys.stderr
        )
        return EXIT_USAGE
    info = None
    if args.info is not None:
        try:
            info = json.loads(args.info)
        except ValueError:
            print("token: --info is not valid JSON", file=sys.stderr)
            return EXIT_USAGE
    try:
        settings = load_settings(args.config)
        TokenVerifier.from_settings(settings.auth)  # the same checks as the server's
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    secret = settings.auth.hmac_secret
    if not secret:
        print("configuration error: auth.hmac_secret is not set", file=sys.stderr)
        return EXIT_USAGE
    print(mint(secret, args.user, args.channel, args.ttl, info, args.subscribe))
    return 0
