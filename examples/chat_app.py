"""The chat demo's hooks: a connection's name comes from the server, not the page.

`make run` loads them (`WSFAN_APP__HANDLERS=examples.chat_app:app`); the shipped
config/default.toml does not, so other servers (tests, benchmarks) connect
without a hook. The page (static/js/chat.js) sends its name as the connect
`data` ({"name": ...}) and shows people by their connection's info.

The connecting hook names each connection, in this order:
- a token's user, when the client sent a token with one (the token's
  channels, expiry and dict info are kept);
- else the `name` in the connect data, cleaned: control characters dropped,
  trimmed, cut to NAME_MAX characters. A name that is not a string, or is
  empty once cleaned, is not refused (the page cannot do much about it): the
  connection is named as a guest instead;
- else "guest-" and the first 4 characters of the client id.
It answers `ConnectResult(user, info={"name": name, ...})`; anonymous clients
stay anonymous (user "").
"""

from __future__ import annotations

from typing import Any

from wsfan.app import ConnectContext, ConnectResult

__all__ = ["NAME_MAX", "ChatApp", "app", "clean_name"]

NAME_MAX = 32


def clean_name(value: Any) -> str:
    """`value` as a display name: printable characters, trimmed, at most
    NAME_MAX characters; "" when it is not a string or nothing is left."""
    if not isinstance(value, str):
        return ""
    printable = "".join(ch for ch in value if ch.isprintable())
    return printable.strip()[:NAME_MAX].strip()


class ChatApp:
    """The demo's application object: one connecting hook."""

    async def connecting(self, ctx: ConnectContext) -> ConnectResult:
        claims = ctx.claims
        data = ctx.data if isinstance(ctx.data, dict) else {}
        name = clean_name(data.get("name")) or f"guest-{ctx.client.client_id[:4]}"
        if claims is None:
            return ConnectResult("", info={"name": name})
        info = dict(claims.info) if isinstance(claims.info, dict) else {}
        info["name"] = clean_name(claims.user) or name
        return ConnectResult(
            claims.user, info=info, channels=claims.channels, expire_at=claims.expires_at
        )


app = ChatApp()
