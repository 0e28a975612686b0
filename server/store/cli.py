"""`python run.py apikey create NAME | list | revoke ID`: API keys kept in MongoDB.

MongoDB is the configured one (`MONGO_URL`, `[mongo] url`); without one, the
embedded SecantusDB of `embedded.dir`: the one a running `make run` uses, or, when
none runs, started for this command and stopped after it (unless a `run.py`
attached meanwhile).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from ..config import ConfigError, Settings, load_settings
from ..embedded import EmbeddedServerError, start_embedded
from ..prog import prog_name
from .keys import ALL_SCOPES, ApiKey, KeyStore
from .mongo import MongoStore

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog_name("apikey"), description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, help="TOML file layered over config/default.toml")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="make a key; it is printed once, never again")
    create.add_argument("name", help="what the key is for, e.g. billing-service")
    create.add_argument(
        "--scope",
        action="append",
        dest="scopes",
        metavar="METHOD",
        help="an API method the key may call (repeat); default: every method",
    )
    listing = commands.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    revoke = commands.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("id")
    return parser


@contextlib.contextmanager
def _mongo_url(settings: Settings) -> Iterator[str]:
    if settings.mongo.url:
        yield settings.mongo.url
        return
    if not settings.embedded.enabled:
        raise ConfigError("mongo.url: not set, and embedded servers are disabled")
    with start_embedded(Path(settings.embedded.dir), need_redis=False, need_mongo=True) as group:
        assert group.mongo is not None
        yield group.mongo.url


NO_KEYS = (
    "no stored API keys (keys set in [api] keys are not listed); "
    f"create one with: {prog_name('apikey')} create NAME"
)


def _row(key: ApiKey) -> dict[str, object]:
    def when(value: object) -> str | None:
        return value.isoformat(timespec="seconds") if value is not None else None  # type: ignore[attr-defined]

    return {
        "id": key.id,
        "name": key.name,
        "scopes": list(key.scopes),
        "created_at": when(key.created_at),
        "last_used_at": when(key.last_used_at),
        "revoked_at": when(key.revoked_at),
    }


async def _run(args: argparse.Namespace, url: str, database: str) -> int:
    store = MongoStore(url, database)
    try:
        await store.ensure_indexes()
        keys = KeyStore(store)
        if args.command == "create":
            key, record = await keys.create(args.name, tuple(args.scopes or [ALL_SCOPES]))
            print(key)
            print(f"id {record.id}: store it now, it cannot be shown again", file=sys.stderr)
        elif args.command == "list":
            rows = [_row(key) for key in await keys.list()]
            if not rows:  # said on stderr with --json, so stdout stays JSON lines
                print(NO_KEYS, file=sys.stderr if args.json else sys.stdout)
            for row in rows:
                if args.json:
                    print(json.dumps(row))
                else:
                    state = f"revoked {row['revoked_at']}" if row["revoked_at"] else "active"
                    used = row["last_used_at"] or "never used"
                    scopes = ",".join(row["scopes"])  # type: ignore[arg-type]
                    print(f"{row['id']}  {row['name']}  [{scopes}]  {state}, {used}")
        elif not await keys.revoke(args.id):
            print(f"no active key with id {args.id!r}", file=sys.stderr)
            return 1
        return 0
    finally:
        await store.close()


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
        with _mongo_url(settings) as url:
            return asyncio.run(_run(args, url, settings.mongo.database))
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except EmbeddedServerError as exc:
        print(str(exc), file=sys.stderr)
        return 1
