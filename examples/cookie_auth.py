"""An application that authenticates WebSocket clients with its own session cookie.

`POST /login` (form field `user`) sets the `session` cookie, as any web
application would. The WebSocket endpoint, on the same port, connects only
clients sending a known `session` cookie (the `connecting` hook: error 101
otherwise), and lets a user subscribe to its own `inbox:<user>` and to any
`public:*` channel (the `subscribing` hook: error 103 otherwise).

    python -m examples.cookie_auth [port]    # 8000 by default
"""

from __future__ import annotations

import asyncio
import re
import secrets
import signal
import sys

from tornado.web import Application, HTTPError, RequestHandler
from wsfan import build
from wsfan.app import ConnectContext, ConnectResult, ReplyError, SubscribeContext, SubscribeResult
from wsfan.config import load_settings
from wsfan.errors import ErrorCode

__all__ = ["CookieAuth", "LogIn", "main", "serve"]

SESSION_COOKIE = "session"
USER_NAME = re.compile(r"[a-z0-9_-]{1,32}")


class CookieAuth:
    """The hooks: users by session cookie, channels by user. Methods it lacks
    (publishing, rpc, ...) fall back to the namespace rules."""

    def __init__(self) -> None:
        self.sessions: dict[str, str] = {}  # session cookie -> user

    def log_in(self, user: str) -> str:
        """A new session for `user`: the cookie's value."""
        session = secrets.token_urlsafe(16)
        self.sessions[session] = user
        return session

    async def connecting(self, ctx: ConnectContext) -> ConnectResult:
        user = self.sessions.get(ctx.cookies.get(SESSION_COOKIE, ""))
        if user is None:
            raise ReplyError(ErrorCode.UNAUTHORIZED)
        return ConnectResult(user, info={"name": user})

    async def subscribing(self, ctx: SubscribeContext) -> SubscribeResult:
        if ctx.channel == f"inbox:{ctx.client.user}" or ctx.channel.startswith("public:"):
            return SubscribeResult()
        raise ReplyError(ErrorCode.PERMISSION_DENIED)


class LogIn(RequestHandler):
    """The application's own route: `user` logs in (a real one checks a password)."""

    def initialize(self, auth: CookieAuth) -> None:
        self.auth = auth

    def post(self) -> None:
        user = self.get_body_argument("user", "")
        if not USER_NAME.fullmatch(user):
            raise HTTPError(400, "user: 1 to 32 of a-z 0-9 _ -")
        self.set_cookie(SESSION_COOKIE, self.auth.log_in(user), httponly=True, samesite="Strict")
        self.write({"user": user})


async def serve(port: int, stop: asyncio.Event) -> None:
    """Serve /login and /connection/websocket on `port` until `stop` is set."""
    settings = load_settings(env={}, defaults_file=None).with_overrides(
        broker={"type": "memory"},
        namespaces={"inbox": {"history_size": 100, "history_ttl": 3600.0}, "public": {}},
    )
    auth = CookieAuth()
    server = build(settings, auth)  # auth's methods are the hooks
    await server.start()
    app = Application([(r"/login", LogIn, {"auth": auth}), *server.handlers()])
    server.listen(app, port, "127.0.0.1")
    try:
        await stop.wait()
    finally:
        await server.close()


async def main(port: int) -> None:
    """Serve until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    print(f"http://127.0.0.1:{port}/login, ws://127.0.0.1:{port}/connection/websocket", flush=True)
    await serve(port, stop)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 8000))
