"""Server API calls aimed at users or clients, run on every node, and the channel survey.

The API sends `subscribe`, `unsubscribe`, `disconnect` and `refresh` to every
node over the cluster's control stream (`ClusterCommands.send`); each node runs
its share on its own connections (`COMMANDS`, a table of name -> coroutine).
`channels` asks every node which channels its connections are subscribed to.

`ClusterCommands(node).register()` makes a node run the commands and answer the
survey; the composition root (server/compose.py) calls it, so the node itself
knows nothing of the API.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..errors import Disconnect
from ..protocol import StreamPosition
from .pattern import compile_pattern

if TYPE_CHECKING:
    from ..node import Node
    from ..session import ClientSession

__all__ = ["COMMANDS", "ClusterCommands", "Command"]

log = logging.getLogger(__name__)

CHANNELS_SURVEY = "channels"

Command = Callable[["ClusterCommands", list["ClientSession"], dict[str, Any]], Awaitable[None]]
"""One node's share of a command: acts on the sessions it names on this node."""


class ClusterCommands:
    """The API's commands and survey, as one node sends and runs them."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def register(self) -> None:
        """Make the node run commands any node sends, and answer `channels` surveys."""
        self.node.cluster.handle_commands(self._on_command)
        self.node.cluster.answer(CHANNELS_SURVEY, self._channels_answer)

    # Sending -----------------------------------------------------------------

    async def send(self, name: str, params: dict[str, Any]) -> None:
        """Run command `name` on every node (see `COMMANDS`); returns once sent, the
        effect follows asynchronously. ReplyError(100) if the broker cannot carry it."""
        with self.node.broker_call("command", name):
            await self.node.cluster.command(name, params)

    async def subscribe(
        self,
        user: str,
        client: str,
        channel: str,
        info: Any = None,
        data: Any = None,
        recover_since: StreamPosition | None = None,
    ) -> None:
        """Subscribe the connections of `user` (or `client`) to `channel` server-side."""
        since = None if recover_since is None else [recover_since.offset, recover_since.epoch]
        params = {"channel": channel, "info": info, "data": data, "recover_since": since}
        await self.send("subscribe", {"user": user, "client": client, **params})

    async def unsubscribe(self, user: str, client: str, channel: str) -> None:
        await self.send("unsubscribe", {"user": user, "client": client, "channel": channel})

    async def refresh(
        self, user: str, client: str, expired: bool = False, expire_at: float | None = None
    ) -> None:
        params = {"expired": expired, "expire_at": expire_at}
        await self.send("refresh", {"user": user, "client": client, **params})

    async def disconnect(
        self, user: str, client: str, code: int, reason: str, whitelist: list[str] | None = None
    ) -> None:
        params = {"whitelist": whitelist or [], "code": int(code), "reason": reason}
        await self.send("disconnect", {"user": user, "client": client, **params})

    async def channels(self, pattern: str = "") -> dict[str, int]:
        """Channels with subscribers on any node (matching `pattern`), with their
        number of subscribers; nodes that do not answer in time are left out.
        ReplyError(100) if the broker cannot carry the survey."""
        with self.node.broker_call("survey", CHANNELS_SURVEY):
            answers = await self.node.cluster.survey(
                CHANNELS_SURVEY, {"pattern": pattern}, self.node.settings.api.survey_timeout
            )
        total: dict[str, int] = {}
        for answer in answers.values():
            for channel, count in (answer or {}).items():
                total[channel] = total.get(channel, 0) + int(count)
        return total

    # Running, on this node -----------------------------------------------------

    def sessions_of(self, user: str | None, client_id: str | None) -> list[ClientSession]:
        """This node's sessions of `user`, or its one session `client_id` (of `user`)."""
        hub = self.node.hub
        if client_id:
            found = hub.session(client_id)
            return [found] if found is not None and user in (None, found.user) else []
        if user is not None:
            return hub.user_sessions(user)
        return []

    async def unsubscribe_here(
        self, channel: str, user: str | None = None, client_id: str | None = None
    ) -> int:
        """Unsubscribe this node's sessions of `user` (or one client) from `channel`.

        Each gets an unsubscribe push (code 2000) and stops receiving the channel;
        returns how many were subscribed.
        """
        done = 0
        for session in self.sessions_of(user, client_id):
            done += await session.server_unsubscribe(channel)
        return done

    def _on_command(self, name: str, params: dict[str, Any]) -> None:
        self.node.spawn(self.run(name, params))

    async def run(self, name: str, params: dict[str, Any]) -> None:
        """This node's share of command `name`; unknown names are logged and ignored."""
        command = COMMANDS.get(name)
        if command is None:
            log.warning("unknown cluster command %r", name)
            return
        client = params.get("client") or None
        user = params.get("user", "")
        # With a client, an empty user means any user (it names the connection).
        await command(self, self.sessions_of((user or None) if client else user, client), params)

    def _channels_answer(self, params: dict[str, Any]) -> dict[str, int]:
        pattern = str(params.get("pattern") or "")
        matcher = compile_pattern(pattern) if pattern else None
        hub = self.node.hub
        return {
            channel: hub.num_subscribers(channel)
            for channel in hub.channels()
            if matcher is None or matcher.fullmatch(channel)
        }


async def _unsubscribe(
    commands: ClusterCommands, sessions: list[ClientSession], params: dict[str, Any]
) -> None:
    for session in sessions:
        await session.server_unsubscribe(params["channel"])


async def _subscribe(
    commands: ClusterCommands, sessions: list[ClientSession], params: dict[str, Any]
) -> None:
    since = params.get("recover_since")
    position = None if since is None else StreamPosition(since[0], since[1])
    for session in sessions:
        try:
            await session.server_subscribe(
                params["channel"], params.get("info"), params.get("data"), position
            )
        except Exception as exc:  # one connection's failure is not the others'
            commands.node.broker_failures(
                "server subscribe of %s failed: %s", session.client_id, exc
            )


async def _disconnect(
    commands: ClusterCommands, sessions: list[ClientSession], params: dict[str, Any]
) -> None:
    keep = set(params.get("whitelist") or ())
    reason = Disconnect(params["code"], params["reason"])
    for session in sessions:
        if session.client_id not in keep:
            session.disconnect(reason)


async def _refresh(
    commands: ClusterCommands, sessions: list[ClientSession], params: dict[str, Any]
) -> None:
    for session in sessions:
        session.server_refresh(params.get("expired", False), params.get("expire_at"))


COMMANDS: dict[str, Command] = {
    "unsubscribe": _unsubscribe,
    "subscribe": _subscribe,
    "disconnect": _disconnect,
    "refresh": _refresh,
}
"""Every command the API sends to every node, by name."""
