"""One client connection: its lifecycle, command dispatch, liveness and expiry.

Independent of Tornado: it reads frames through `handle_frame` and writes through
a `Transport` (server/transport.py), which frames what the session's `Outbox`
queued. Its channels are its `Subscriptions`; the commands are handled in
commands.py; all it asks of the node is `NodePort` (port.py). Promises:
- Commands of a connection are handled one at a time, in order; replies keep
  that order. Every command with an id gets exactly one reply (a result or an
  error) while the connection is open: handlers return their result and the
  dispatcher alone replies; work after a reply (a subscription's join) runs
  after it, and its failure is logged, never answered. A reply larger than the
  whole outgoing budget answers error 106 instead.
- A connection that has not connected within `client.stale_timeout` closes with
  3502; one that does not answer a ping within `client.pong_timeout` closes with
  3012; one whose token runs out unrefreshed, 3005 (after `auth.expired_close_delay`).
- Closing sends what was queued, then (where the transport has no close frame,
  or the client was connected) a disconnect push, then the close.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Any

from ..auth import access
from ..auth.limits import CommandLimiter, Verdict
from ..auth.tokens import TokenVerifier
from ..config import Settings
from ..errors import (
    CONNECTION_CLOSED,
    Disconnect,
    DisconnectCode,
    ErrorCode,
    ReplyError,
    UnsubscribeCode,
)
from ..metrics import Metrics
from ..protocol import (
    PING,
    ClientInfo,
    Command,
    ProtocolError,
    StreamPosition,
    decode_frame,
    encode,
    encode_reply,
    error_reply,
    parse_command,
    push,
)
from ..transport import Handshake, Transport
from . import unidirectional
from .commands import HANDLERS, Answer
from .hook_calls import client_of
from .outbox import Outbox
from .port import NodePort
from .subscriptions import Subscriptions

__all__ = ["Session", "State"]

log = logging.getLogger(__name__)


_PEER_CLOSED = Disconnect(CONNECTION_CLOSED, "connection closed")


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class State(Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSED = "closed"


class Session:
    """One connection. `outbox` is what the hub flushes and what the transport
    tells `writable`; `subscriptions` is what the hub's channels hold."""

    __slots__ = (
        "_limiter",
        "_loop",
        "_pong_handle",
        "_timer",
        "client_id",
        "conn_info",
        "encoding",
        "expiry",
        "handshake",
        "metrics",
        "name",
        "node",
        "outbox",
        "remote_addr",
        "settings",
        "state",
        "subscriptions",
        "tokens",
        "transport",
        "user",
        "variant",
    )

    def __init__(
        self,
        node: NodePort,
        transport: Transport,
        remote_addr: str = "",
        *,
        settings: Settings,
        metrics: Metrics,
        tokens: TokenVerifier,
        handshake: Handshake | None = None,
    ) -> None:
        """`handshake`: the opening request, kept for a connecting hook until connected."""
        self.node = node
        self.settings = settings
        self.metrics = metrics
        self.tokens = tokens
        self.transport = transport
        self.variant = transport.variant
        self.encoding = transport.variant.encoding
        self.remote_addr = remote_addr
        self.handshake = handshake
        self.client_id = str(uuid.uuid4())
        self.user = ""
        self.conn_info: Any = None
        self.name = ""
        self.state = State.CONNECTING
        limits = settings.client
        self.outbox = Outbox(
            transport,
            limits.max_unsent_bytes,
            metrics,
            node.want_flush,
            self,
            self.client_id,
        )
        self.subscriptions = Subscriptions(node, self.outbox, settings, self.client_id)
        self._loop = asyncio.get_running_loop()
        self._pong_handle: asyncio.TimerHandle | None = None
        # Connecting: the stale deadline; connected: the next ping.
        self._timer = self._loop.call_later(limits.stale_timeout, self._on_stale)
        self.expiry = access.Expiry(
            self._loop,
            settings.auth.expired_close_delay,
            lambda: self.disconnect(Disconnect(DisconnectCode.EXPIRED)),
        )
        self._limiter = CommandLimiter(
            limits.command_rate,
            limits.command_burst,
            limits.max_rejected_commands,
            limits.rejected_commands_window,
            self._loop.time(),
        )
        metrics.connection_opened(self.variant.framing.name)

    @property
    def channels(self) -> list[str]:
        return self.subscriptions.channels

    @property
    def expires_at(self) -> int | None:
        """When the connection token runs out (unix seconds); None: never."""
        return self.expiry.expires_at

    @property
    def is_connected(self) -> bool:
        return self.state is State.CONNECTED

    @property
    def is_closed(self) -> bool:
        return self.state is State.CLOSED

    # Incoming ----------------------------------------------------------------

    async def handle_frame(self, data: bytes | str) -> None:
        """Handle every command of one frame, in order; a malformed one closes with 3501."""
        if self.state is State.CLOSED:
            return
        try:
            if not self.variant.framing.unidirectional:
                messages = decode_frame(data, self.encoding)
            elif self.state is State.CONNECTING:  # its one message; later ones are ignored
                messages = [unidirectional.connect_message(data, self.encoding)]
            else:
                return
        except ProtocolError as exc:
            log.debug("client %s: %s", self.client_id, exc, extra=self._log_context)
            self.disconnect(Disconnect(DisconnectCode.BAD_REQUEST))
            return
        self.metrics.frame_in(len(messages), len(data))
        for message in messages:
            if self.state is State.CLOSED:
                return
            try:
                command = parse_command(message)
            except ProtocolError as exc:
                log.debug("client %s: %s", self.client_id, exc, extra=self._log_context)
                self.disconnect(Disconnect(DisconnectCode.BAD_REQUEST))
                return
            await self._handle_command(command)

    async def _handle_command(self, command: Command) -> None:
        if not command.id and not command.method:
            self._on_pong()
            return
        method = command.method if command.method in HANDLERS else "unknown"
        self.metrics.commands.labels(method).inc()
        verdict = self._limiter.check(self._loop.time())
        if verdict is Verdict.DISCONNECT:
            self.disconnect(Disconnect(DisconnectCode.TOO_MANY_REQUESTS))
            return
        if verdict is Verdict.REJECT:
            self._reply_error(command, method, ReplyError(ErrorCode.TOO_MANY_REQUESTS))
            return
        # The one place a command is answered: a handler returns its result or
        # raises, and nothing that runs after the reply can answer it again.
        try:
            handler = HANDLERS.get(command.method)
            if handler is None:
                raise ReplyError(ErrorCode.METHOD_NOT_FOUND)
            if self.state is not State.CONNECTED and command.method != "connect":
                raise ReplyError(ErrorCode.UNAUTHORIZED)
            answer = await handler(self, command)
        except ReplyError as exc:
            self._reply_error(command, method, exc)
            return
        except Disconnect as exc:
            self.disconnect(exc)
            return
        except Exception:
            log.exception("client %s: %s command failed", self.client_id, command.method)
            self._reply_error(command, method, ReplyError(ErrorCode.INTERNAL))
            return
        then = None
        if isinstance(answer, Answer):
            answer, then = answer
        if command.id and self.state is not State.CLOSED:
            if answer is None:  # neither answered nor raised: a bug, but still one reply
                log.error("client %s: %s command got no result", self.client_id, command.method)
                self._reply_error(command, method, ReplyError(ErrorCode.INTERNAL))
            else:
                self._reply(command, answer)
        if then is not None:
            await self._after_reply(command, then)

    def _reply(self, command: Command, result: dict[str, Any]) -> None:
        if self.variant.framing.unidirectional:  # only ever the connect: as a push
            data = unidirectional.connect_push(result, self.encoding)
        else:
            data = encode_reply(command.id, command.method, result, self.encoding)
        if len(data) > self.outbox.budget:  # it could never be sent: say so instead
            log.info(
                "client %s: %s reply of %d bytes is over client.max_unsent_bytes",
                self.client_id,
                command.method,
                len(data),
                extra=self._log_context,
            )
            error = ReplyError(ErrorCode.LIMIT_EXCEEDED, "reply too large")
            self._reply_error(command, command.method, error)
            return
        self.outbox.queue(data)

    def _reply_error(self, command: Command, method: str, error: ReplyError) -> None:
        self.metrics.command_errors.labels(method, int(error.code)).inc()
        if self.variant.framing.unidirectional:  # no error replies: a disconnect push
            self.disconnect(unidirectional.disconnect_for(error))
        elif command.id:
            self.outbox.send(error_reply(command.id, error))

    async def _after_reply(self, command: Command, then: Callable[[], Awaitable[None]]) -> None:
        """Work that follows a reply (joins, held publications): its failure is logged
        once; the command was answered already."""
        try:
            await then()
        except Exception as exc:
            log.warning(
                "client %s: after the %s reply: %s",
                self.client_id,
                command.method,
                _describe(exc),
                extra=self._log_context,
            )

    def accept(self, user: str, conn_info: Any, name: str) -> None:
        """The connect command succeeded: the connection is connected (registered
        with the node, pinged from now on)."""
        self.user, self.conn_info, self.name = user, conn_info, name
        self.subscriptions.identify(user, conn_info)
        self.state = State.CONNECTED
        self._timer.cancel()
        self.node.add_session(self)
        self._timer = self._loop.call_later(self.settings.client.ping_interval, self._ping)
        app = self.node.app
        if app.notifies("subscribed") or app.notifies("unsubscribed"):
            self.subscriptions.listener = self

    async def set_conn_info(self, conn_info: Any) -> None:
        """A refresh's new info: its subscriptions' info and presence follow."""
        if conn_info != self.conn_info:
            self.conn_info = conn_info
            await self.subscriptions.reidentify(conn_info)

    # The application's notifications (subscriptions tell them, see `accept`) -----

    def subscribed(self, channel: str) -> None:
        """A subscription was established (client, token or server side)."""
        self.node.app.notify("subscribed", client_of(self), channel)

    def unsubscribed(self, channel: str) -> None:
        """A subscription ended: the client, the server, expiry, a gap, the close."""
        self.node.app.notify("unsubscribed", client_of(self), channel)

    # What the node and the server API do to a connection -----------------------

    async def server_subscribe(
        self,
        channel: str,
        chan_info: Any = None,
        data: Any = None,
        recover_since: StreamPosition | None = None,
    ) -> bool:
        """Subscribe from the server side (the server API): the client gets a
        subscribe push (with `data`), then the publications after `recover_since`
        where the channel keeps them (and they fit `client.reply_bytes`). False if
        not connected or already subscribed; channel permissions and the channel
        limit do not apply."""
        if self.state is not State.CONNECTED:
            return False
        return await self.subscriptions.server_subscribe(channel, chan_info, data, recover_since)

    async def server_unsubscribe(
        self, channel: str, code: int = UnsubscribeCode.SERVER, reason: str = "server unsubscribe"
    ) -> bool:
        """End a subscription from the server side with an unsubscribe push. Codes
        below 2500 leave the client unsubscribed; from 2500 the SDKs resubscribe."""
        return await self.subscriptions.server_unsubscribe(channel, code, reason)

    def presence_entries(self) -> list[tuple[str, ClientInfo]]:
        """This connection's presence in channels that keep it."""
        return self.subscriptions.presence_entries()

    def server_refresh(self, expired: bool = False, expire_at: float | None = None) -> None:
        """The server API's refresh: `expired` closes now with 3005; `expire_at`
        (Unix seconds) closes with 3005 then (after `auth.expired_close_delay`)
        unless refreshed again; neither means the connection no longer expires."""
        if self.state is not State.CONNECTED:
            return
        if expired or (expire_at is not None and expire_at <= time.time()):
            self.disconnect(Disconnect(DisconnectCode.EXPIRED))
            return
        self.expiry.set(None if expire_at is None else int(expire_at))

    # Liveness ----------------------------------------------------------------

    def _on_stale(self) -> None:
        if self.state is State.CONNECTING:
            self.disconnect(Disconnect(DisconnectCode.STALE))

    def _ping(self) -> None:
        interval = self.settings.client
        self.outbox.send(PING)
        if self._pong_handle is None and not self.variant.framing.unidirectional:
            self._pong_handle = self._loop.call_later(interval.pong_timeout, self._on_no_pong)
        self._timer = self._loop.call_later(interval.ping_interval, self._ping)

    def _on_pong(self) -> None:
        if self._pong_handle is not None:
            self._pong_handle.cancel()
            self._pong_handle = None

    def _on_no_pong(self) -> None:
        self._pong_handle = None
        self.disconnect(Disconnect(DisconnectCode.NO_PONG))

    @property
    def _log_context(self) -> dict[str, str]:
        """Fields JSON log lines carry for this connection (see server/logs.py)."""
        return {"client": self.client_id, "user": self.user}

    # The transport's calls -----------------------------------------------------

    def writable(self) -> None:
        """The socket took everything it held (see `Outbox.writable`)."""
        self.outbox.writable()

    def on_transport_closed(self) -> None:
        """The peer went away (or the close handshake finished)."""
        self._closed(_PEER_CLOSED)

    # Closing -----------------------------------------------------------------

    def disconnect(self, reason: Disconnect) -> None:
        """Close with `reason`: queued replies go first, then (if connected, or
        the transport has no close frame) a disconnect push, then the close."""
        if self.state is State.CLOSED:
            return
        self.metrics.disconnects.labels(int(reason.code)).inc()
        if not self.transport.sends_close_frame or (
            self.state is State.CONNECTED and reason.code is not DisconnectCode.BAD_REQUEST
        ):
            body = {"code": int(reason.code), "reason": reason.reason}
            body["reconnect"] = reason.reconnect
            self.outbox.queue_last(encode(push("", "disconnect", body), self.encoding))
        self.outbox.flush(force=True)
        self._closed(reason)
        self.transport.close(int(reason.code), reason.reason)

    def overflowed(self, held: int) -> None:
        """The outbox passed `client.max_unsent_bytes`: close with 3008."""
        if self.state is State.CLOSED:
            return
        log.info(
            "client %s: %d bytes held, closing as slow",
            self.client_id,
            held,
            extra=self._log_context,
        )
        self.metrics.disconnects.labels(int(DisconnectCode.SLOW)).inc()
        self._closed(Disconnect(DisconnectCode.SLOW))
        self.transport.close(int(DisconnectCode.SLOW), "slow")

    def _closed(self, reason: Disconnect) -> None:
        if self.state is State.CLOSED:
            return
        was_connected = self.state is State.CONNECTED
        self.state = State.CLOSED
        self.metrics.connection_closed(self.variant.framing.name)
        self.outbox.close()
        self._timer.cancel()
        self._on_pong()
        self.expiry.cancel()
        if was_connected:
            self.node.remove_session(self)
            if self.node.app.notifies("disconnected"):
                self.node.app.notify(
                    "disconnected", client_of(self), int(reason.code), reason.reason
                )
        self.subscriptions.close()
