"""`python run.py publish CHANNEL JSON`: publish from a shell through the server API.

The URL defaults to the server running from this checkout (the file it keeps
under `<embedded.dir>/servers/`, see server/instances.py; the most recently
started one when several run), else to this machine's configuration
(`--config`, the environment, config/default.toml):
`http://<server.host>:<server.port>/api`. The key defaults to the first of
`api.keys`. Prints the result as JSON; exit code 0 on success, 1
when the server answers an error or cannot be reached, 2 for bad arguments.
The key is never printed.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from http import HTTPStatus
from pathlib import Path
from typing import Any

from ..config import ConfigError, Settings, load_settings
from ..instances import client_host, find
from ..prog import prog_name

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog_name("publish"),
        description="Publish JSON data into a channel through the server HTTP API.",
    )
    parser.add_argument("channel", help="channel to publish into, e.g. chat:lobby")
    parser.add_argument("data", help='the data as JSON, e.g. \'{"text": "hello"}\'')
    parser.add_argument(
        "--url",
        help="API base URL (default: the server running from this checkout, "
        "else server.host and server.port of the configuration)",
    )
    parser.add_argument(
        "--api-key",
        help="API key (default: the first of api.keys; prefer WSFAN_API__KEYS over this "
        "flag, which other users of the machine can see)",
    )
    parser.add_argument("--config", type=Path, help="TOML file layered over config/default.toml")
    parser.add_argument("--idempotency-key", help="drop repeats of this publish within a window")
    parser.add_argument(
        "--tag", action="append", default=[], metavar="KEY=VALUE", help="a publication tag"
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    return parser


def _post(url: str, key: str, body: dict[str, Any], timeout: float) -> tuple[int, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "X-API-Key": key},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"{}")
        except ValueError:
            return exc.code, {}


def _default_url(settings: Settings) -> str:
    """The API of the newest server running from this checkout, else the configured one."""
    running = find(Path(settings.embedded.dir))
    if running:
        return running[0].url + "/api"
    host = client_host(settings.server.host)
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{settings.server.port}/api"


def main(argv: list[str]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        data = json.loads(args.data)
    except ValueError as exc:
        print(f"data: not valid JSON: {exc}", file=sys.stderr)
        return EXIT_USAGE
    tags = {}
    for tag in args.tag:
        name, sep, value = tag.partition("=")
        if not sep or not name:
            print(f"--tag: expected KEY=VALUE, got {tag!r}", file=sys.stderr)
            return EXIT_USAGE
        tags[name] = value
    url, key = args.url, args.api_key
    if url is None or key is None:
        try:
            settings = load_settings(args.config)
        except ConfigError as exc:
            print(f"configuration error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        url = url or _default_url(settings)
        key = key if key is not None else (settings.api.keys or ("",))[0]
    body: dict[str, Any] = {"channel": args.channel, "data": data}
    if tags:
        body["tags"] = tags
    if args.idempotency_key:
        body["idempotency_key"] = args.idempotency_key
    try:
        status, answer = _post(url.rstrip("/") + "/publish", key, body, args.timeout)
    except (OSError, ValueError) as exc:
        print(f"cannot reach {url}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    error = answer.get("error") if isinstance(answer, dict) else None
    if status != HTTPStatus.OK or error:
        detail = f"{error.get('code')}: {error.get('message')}" if error else "no detail"
        print(f"publish failed (HTTP {status}): {detail}", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(answer.get("result", {})))
    return EXIT_OK
