"""Python hooks for the application-layer benchmarks (`[app] handlers`).

`connecting_app` accepts every connection through a connecting hook (the token's
user when a token was sent, else anonymous); `publishing_app` allows every client
publication through a publishing hook. Both do the least a hook can, so the
figures show what the hook layer itself costs.
"""

from __future__ import annotations

from wsfan.app import ConnectContext, ConnectResult, PublishContext, PublishResult

__all__ = ["connecting_app", "publishing_app"]


class ConnectingApp:
    async def connecting(self, ctx: ConnectContext) -> ConnectResult:
        return ConnectResult(user=ctx.claims.user if ctx.claims else "")


class PublishingApp:
    async def publishing(self, ctx: PublishContext) -> PublishResult:
        return PublishResult()


connecting_app = ConnectingApp()
publishing_app = PublishingApp()
