"""Runs server API methods against a node.

`call(method, params)` returns the method's result map or raises `ReplyError`
(which the HTTP layer answers as `{"error": {"code", "message"}}`); anything
else that goes wrong is logged and answered as error 100, never leaked.
`batch(params)` answers `{"replies": [...]}`, one reply per command in order.

Methods aimed at users or clients (subscribe, unsubscribe, disconnect,
refresh) are sent to every node and answered once sent, as Centrifugo does:
their effect on connections follows asynchronously.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..errors import ErrorCode, ReplyError
from .cluster_commands import ClusterCommands
from .requests import (
    BatchRequest,
    BroadcastRequest,
    ChannelRequest,
    ChannelsRequest,
    DisconnectRequest,
    HistoryRequest,
    Limits,
    PublishRequest,
    RefreshRequest,
    StateRequest,
    SubscribeRequest,
    UnsubscribeRequest,
    bad_request,
    parse,
)

if TYPE_CHECKING:
    from ..node import Node

__all__ = ["METHODS", "ApiExecutor"]

log = logging.getLogger(__name__)

Result = dict[str, Any]


class ApiExecutor:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.commands = ClusterCommands(node)
        settings = node.settings
        self.limits = Limits(
            settings.client.max_data_depth,
            settings.api.max_broadcast_channels,
            settings.api.max_batch_commands,
        )

    @staticmethod
    def has(method: str) -> bool:
        return method in METHODS

    async def call(self, method: str, params: Any) -> Result:
        """The result of one method; ReplyError for what the caller should hear."""
        handler = _HANDLERS.get(method)
        if handler is None:
            raise ReplyError(ErrorCode.METHOD_NOT_FOUND)
        try:
            return await handler(self, params)
        except ReplyError:
            raise
        except Exception:
            log.exception("server API %s failed", method)
            raise ReplyError(ErrorCode.INTERNAL) from None

    async def batch(self, params: Any) -> Result:
        """`{"replies": [...]}`: each `{method: result}` or `{"error": ...}`, in order;
        `parallel` runs the commands concurrently (the order of replies stays)."""
        request: BatchRequest = parse(BatchRequest, params, self.limits)
        if request.parallel:
            replies = await asyncio.gather(
                *(self._batch_reply(i, c) for i, c in enumerate(request.commands))
            )
        else:
            replies = [await self._batch_reply(i, c) for i, c in enumerate(request.commands)]
        return {"replies": list(replies)}

    async def _batch_reply(self, index: int, command: Any) -> Result:
        try:
            if not isinstance(command, dict) or len(command) != 1:
                raise bad_request(f"commands[{index}]", "expected a map with one method")
            ((method, params),) = command.items()
            if method == "batch":
                raise bad_request(f"commands[{index}]", "a batch cannot contain a batch")
            return {method: await self.call(str(method), params)}
        except ReplyError as exc:
            return {"error": exc.to_dict()}

    # Helpers -----------------------------------------------------------------

    def _parse(self, cls: type[Any], params: Any) -> Any:
        return parse(cls, params, self.limits)

    # Methods -----------------------------------------------------------------

    async def _publish_to(self, channel: str, request: PublishRequest | BroadcastRequest) -> Result:
        self.node.checked_channel(channel)
        position = await self.node.publish(
            channel,
            request.data,
            tags=request.tags or None,
            skip_history=request.skip_history,
            idempotency_key=request.idempotency_key or None,
            delta=request.delta,
        )
        if not position.offset:
            return {}
        return {"offset": position.offset, "epoch": position.epoch}

    async def publish(self, params: Any) -> Result:
        request: PublishRequest = self._parse(PublishRequest, params)
        return await self._publish_to(request.channel, request)

    async def broadcast(self, params: Any) -> Result:
        """One response per channel, in order: `{"result": ...}` or `{"error": ...}`."""
        request: BroadcastRequest = self._parse(BroadcastRequest, params)

        async def one(channel: str) -> Result:
            try:
                return {"result": await self._publish_to(channel, request)}
            except ReplyError as exc:
                return {"error": exc.to_dict()}

        return {"responses": list(await asyncio.gather(*(one(c) for c in request.channels)))}

    async def subscribe(self, params: Any) -> Result:
        request: SubscribeRequest = self._parse(SubscribeRequest, params)
        self.node.checked_channel(request.channel)
        await self.commands.subscribe(
            request.user,
            request.client,
            request.channel,
            request.info,
            request.data,
            request.recover_since,
        )
        return {}

    async def unsubscribe(self, params: Any) -> Result:
        request: UnsubscribeRequest = self._parse(UnsubscribeRequest, params)
        self.node.checked_channel(request.channel)
        await self.commands.unsubscribe(request.user, request.client, request.channel)
        return {}

    async def disconnect(self, params: Any) -> Result:
        request: DisconnectRequest = self._parse(DisconnectRequest, params)
        reason = request.disconnect
        await self.commands.disconnect(
            request.user, request.client, reason["code"], reason["reason"], request.whitelist
        )
        return {}

    async def refresh(self, params: Any) -> Result:
        request: RefreshRequest = self._parse(RefreshRequest, params)
        await self.commands.refresh(
            request.user, request.client, request.expired, request.expire_at or None
        )
        return {}

    def _presence_channel(self, params: Any) -> str:
        request: ChannelRequest = self._parse(ChannelRequest, params)
        if not self.node.checked_channel(request.channel).presence:
            raise ReplyError(ErrorCode.NOT_AVAILABLE, "channel keeps no presence")
        return request.channel

    async def presence(self, params: Any) -> Result:
        clients = await self.node.channel_presence(self._presence_channel(params))
        return {"presence": {cid: info.to_dict() for cid, info in clients.items()}}

    async def presence_stats(self, params: Any) -> Result:
        stats = await self.node.presence_stats(self._presence_channel(params))
        return {"num_clients": stats.num_clients, "num_users": stats.num_users}

    async def history(self, params: Any) -> Result:
        request: HistoryRequest = self._parse(HistoryRequest, params)
        self.node.checked_channel(request.channel)
        return await self.node.reads.history_reply(request)

    async def history_remove(self, params: Any) -> Result:
        request: ChannelRequest = self._parse(ChannelRequest, params)
        self.node.checked_channel(request.channel)
        await self.node.reads.remove_history(request.channel)
        return {}

    async def state_set(self, params: Any) -> Result:
        """Our extension: the state new subscribers of a `retained` namespace get
        until the channel's next publication."""
        request: StateRequest = self._parse(StateRequest, params)
        self.node.checked_channel(request.channel)
        await self.node.reads.set_retained_state(request.channel, request.data)
        return {}

    async def state_get(self, params: Any) -> Result:
        """Our extension: the retained state (`publication`, absent when none)."""
        request: ChannelRequest = self._parse(ChannelRequest, params)
        self.node.checked_channel(request.channel)
        state = await self.node.reads.retained_state(request.channel)
        return {} if state is None else {"publication": state.to_dict()}

    async def channels(self, params: Any) -> Result:
        request: ChannelsRequest = self._parse(ChannelsRequest, params)
        counts = await self.commands.channels(request.pattern)
        return {"channels": {ch: {"num_clients": n} for ch, n in sorted(counts.items())}}

    async def info(self, params: Any) -> Result:
        if params is not None and not isinstance(params, dict):
            raise ReplyError(ErrorCode.BAD_REQUEST, "body: expected a map")
        return {"nodes": self.node.cluster.nodes()}


_Handler = Callable[[ApiExecutor, Any], Awaitable[Result]]

_HANDLERS: dict[str, _Handler] = {
    "publish": ApiExecutor.publish,
    "broadcast": ApiExecutor.broadcast,
    "subscribe": ApiExecutor.subscribe,
    "unsubscribe": ApiExecutor.unsubscribe,
    "disconnect": ApiExecutor.disconnect,
    "refresh": ApiExecutor.refresh,
    "presence": ApiExecutor.presence,
    "presence_stats": ApiExecutor.presence_stats,
    "history": ApiExecutor.history,
    "history_remove": ApiExecutor.history_remove,
    "channels": ApiExecutor.channels,
    "info": ApiExecutor.info,
    "state_set": ApiExecutor.state_set,
    "state_get": ApiExecutor.state_get,
}

METHODS = frozenset([*_HANDLERS, "batch"])
"""Every method at `POST /api/<method>`; `batch` answers without a `result` wrapper."""
