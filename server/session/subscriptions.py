"""A connection's channel subscriptions: their state, the subscribe and recovery
state machine, offset checks, held-back publications, join and leave.

Promises:
- A subscription's reply comes before any publication of its channel, and the
  publications after it continue the reply's offset with no gap and no
  duplicate: live publications arriving while history is read are held back
  (counted in the connection's budget, see outbox.py) and merged by offset.
- A subscriber that misses a publication of a recoverable channel (a gap, or a
  new epoch) is unsubscribed with code 2500, and its SDK resubscribes and
  recovers; a subscription token that runs out unrefreshed ends it with 2501.
- A subscription that negotiated delta compression (`delta: "fossil"`, see
  server/delta.py) gets a publication as the hub's patch only when the last
  publication it delivered live is the one right before it; the first live one
  after subscribing (or recovering) goes in full, and so do the recovered ones
  and anything without a patch. Its `data` is always bytes (a JSON string).
- Join, leave and presence go through the node (`NodePort`): their failures are
  logged there, once; a failed join or leave never undoes the client's
  subscribe or unsubscribe.

The hub's channels hold this object; it queues what the hub hands it in the outbox.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import replace
from typing import Any

from .. import delta
from ..auth import access
from ..auth.tokens import SubscriptionClaims
from ..config import ChannelOptions, Settings
from ..errors import ReplyError, UnsubscribeCode
from ..protocol import (
    ClientInfo,
    Encoding,
    Publication,
    StreamPosition,
    SubscribeRequest,
    push,
)
from ..transport import Frame
from .outbox import Outbox
from .port import NodePort
from .recovery import RecoveryLimits, reply_form, subscribe_result
from .subscription_state import Started, Subscription, SubscriptionListener

__all__ = ["Started", "Subscription", "Subscriptions"]

log = logging.getLogger(__name__)


class Subscriptions:
    """The channels of one connection, keyed by channel name."""

    __slots__ = (
        "_grace",
        "_limits",
        "_node",
        "_outbox",
        "_subs",
        "client_id",
        "closed",
        "conn_info",
        "listener",
        "user",
        "variant",
    )

    def __init__(self, node: NodePort, outbox: Outbox, settings: Settings, client_id: str) -> None:
        self._node = node
        self._outbox = outbox
        self.variant = outbox.variant
        self.client_id = client_id
        self.user = ""  # the connection's user and conn_info (see `identify`)
        self.conn_info: Any = None
        self._subs: dict[str, Subscription] = {}
        # Told of each subscription once established and once it ends, whatever
        # ended it (the session, for the application's notifications; None: nobody).
        self.listener: SubscriptionListener | None = None
        self._grace = settings.auth.expired_close_delay
        client = settings.client
        self._limits = RecoveryLimits(client.recovery_max_limit, client.reply_bytes)
        self.closed = False

    def __len__(self) -> int:
        return len(self._subs)

    @property
    def encoding(self) -> Encoding:
        return self.variant.encoding

    def __contains__(self, channel: str) -> bool:
        return channel in self._subs

    @property
    def channels(self) -> list[str]:
        return list(self._subs)

    def active(self, channel: str) -> Subscription | None:
        """The subscription to `channel` once its subscribe finished, else None."""
        sub = self._subs.get(channel)
        return sub if sub is not None and sub.pending is None else None

    def info_in(self, channel: str) -> ClientInfo:
        """Who publishes to `channel`: the subscription's info (with its
        `chan_info`) where subscribed, else the connection's."""
        sub = self._subs.get(channel)
        return sub.info if sub else ClientInfo(self.user, self.client_id, self.conn_info)

    def identify(self, user: str, conn_info: Any) -> None:
        """The connection connected as `user` with `conn_info` (its subscriptions' info)."""
        self.user, self.conn_info = user, conn_info

    @property
    def _log_context(self) -> dict[str, str]:
        return {"client": self.client_id, "user": self.user}

    # Subscribing --------------------------------------------------------------

    async def start(
        self,
        channel: str,
        options: ChannelOptions,
        request: SubscribeRequest,
        claims: SubscriptionClaims | None = None,
        chan_info: Any = None,
        base: int = 0,
    ) -> Started | None:
        """Register, read the position (recovering if asked) and add presence.

        `base`: bytes of the reply around this subscription's result (recovered
        publications must fit `client.reply_bytes` with it). Returns None when
        the connection ended meanwhile. Live publications are held back until
        `finish`, which must follow once the result is queued (if the server
        ended the subscription meanwhile, that does nothing).
        """
        if claims is not None:
            chan_info = claims.info
        wants_delta = delta.negotiate(request.delta, options)  # 107 before anything starts
        info = ClientInfo(self.user, self.client_id, self.conn_info, chan_info)
        sub = self._subs[channel] = Subscription(options, info, wants_delta)
        node = self._node
        try:
            await node.add_subscriber(channel, self, wants_delta)
            # Read before the position, so live publications after it follow the state.
            retained = options.retained and not request.recover
            state = await node.reads.retained_state(channel) if retained else None
            result, publications = await subscribe_result(
                node.reads, channel, request, sub, base, self.encoding, self._limits
            )
            if state is not None:
                result["publications"] = [reply_form(sub, state, self.encoding)]
                publications = [state]
            if wants_delta:
                result["delta"] = True
            if options.presence:
                await node.add_presence(channel, self.client_id, sub.info)
        except BaseException:
            if self._subs.get(channel) is sub:
                del self._subs[channel]
                self._release_held(sub)
                await node.remove_subscriber(channel, self)
            raise
        if self.closed:
            return None
        if claims is not None and claims.expires_at is not None and self._subs.get(channel) is sub:
            result.update(self.expire(channel, sub, claims.expires_at))
        return Started(sub, result, publications)

    async def finish(self, channel: str, sub: Subscription) -> None:
        """After the subscribe's reply (or push) is queued: send what was held
        back, tell the listener, then announce the join."""
        self._release(channel, sub)
        if self.listener is not None and self._subs.get(channel) is sub:
            self.listener.subscribed(channel)
        await self._join(channel, sub)

    async def server_subscribe(
        self, channel: str, chan_info: Any, data: Any, recover_since: StreamPosition | None
    ) -> bool:
        """See `Session.server_subscribe` (the connection is connected)."""
        if channel in self._subs:
            return False
        options = self._node.channel_options(channel)
        since = recover_since or StreamPosition(0, "")
        request = SubscribeRequest(
            channel,
            recover=recover_since is not None,
            offset=since.offset,
            epoch=since.epoch,
            data=data,
        )
        done = await self.start(channel, options, request, chan_info=chan_info)
        if done is None:
            return False
        self._push_subscribe(channel, done.result, request.data, done.publications)
        await self.finish(channel, done.sub)
        return True

    def _push_subscribe(
        self, channel: str, result: dict[str, Any], data: Any, publications: list[Publication]
    ) -> None:
        """A subscribe push, then the recovered publications as publication pushes."""
        keys = ("recoverable", "positioned", "epoch", "offset")
        body = {k: v for k, v in result.items() if k in keys}
        if data is not None:
            body["data"] = data
        send = self._outbox.send
        send(push(channel, "subscribe", body))
        for pub in publications:
            send(push(channel, "pub", pub.to_dict()))

    def _release(self, channel: str, sub: Subscription) -> None:
        """Send what was held back while subscribing: the reply went first."""
        if self._subs.get(channel) is not sub or sub.pending is None:
            return
        pending, sub.pending = sub.pending, None
        self._outbox.release(sub.held)
        sub.held = 0
        for pub, frame, patch in pending:
            if sub.delta:
                self.deliver_delta(channel, pub, frame, patch)
            else:
                self.deliver_publication(channel, pub, frame)

    def _release_held(self, sub: Subscription) -> None:
        """Drop what a subscription that ends held back (its budget share too)."""
        self._outbox.release(sub.held)
        sub.held = 0
        if sub.pending:
            sub.pending.clear()

    async def _join(self, channel: str, sub: Subscription) -> None:
        """Announce the subscriber; a failure is logged by the node (the subscription stands)."""
        if not sub.options.join_leave or self._subs.get(channel) is not sub:
            return
        with suppress(ReplyError):  # the node logged it
            await self._node.publish_join(channel, sub.info)

    # Token expiry, presence ------------------------------------------------------

    def expire(self, channel: str, sub: Subscription, expires_at: int | None) -> dict[str, Any]:
        """End the subscription with code 2501 unless refreshed in time; returns
        the reply fields that tell the SDKs when to refresh."""
        if sub.expiry is None:
            sub.expiry = access.Expiry(
                asyncio.get_running_loop(), self._grace, lambda: self.end_expired(channel, sub)
            )
        return sub.expiry.set(expires_at)

    def end_expired(self, channel: str, sub: Subscription) -> None:
        if self._subs.get(channel) is sub:
            ended = self._end(channel, UnsubscribeCode.EXPIRED, "subscription expired")
            if ended is not None:
                self._node.spawn(self._leave(channel, ended))

    async def update_presence(self, channel: str, sub: Subscription) -> None:
        """Store `sub.info` as this connection's presence in `channel` (if it keeps any)."""
        if sub.options.presence and sub.pending is None and self._subs.get(channel) is sub:
            await self._node.add_presence(channel, self.client_id, sub.info)

    async def set_chan_info(self, channel: str, sub: Subscription, chan_info: Any) -> None:
        """A refresh gave the subscription new `chan_info`: its info and presence follow."""
        if chan_info != sub.info.chan_info:
            sub.info = replace(sub.info, chan_info=chan_info)
            await self.update_presence(channel, sub)

    async def reidentify(self, conn_info: Any) -> None:
        """The connection's `conn_info` changed (a refresh): every subscription's
        info and presence follow."""
        self.conn_info = conn_info
        for channel, sub in list(self._subs.items()):  # presence updates await
            sub.info = replace(sub.info, conn_info=conn_info)
            await self.update_presence(channel, sub)

    def presence_entries(self) -> list[tuple[str, ClientInfo]]:
        """This connection's presence in channels that keep it."""
        return [
            (channel, sub.info)
            for channel, sub in self._subs.items()
            if sub.options.presence and sub.pending is None
        ]

    # Ending ----------------------------------------------------------------------

    async def unsubscribe(self, channel: str) -> None:
        """The client's unsubscribe: no push, and nothing to answer if not subscribed."""
        sub = self._subs.pop(channel, None)
        if sub is not None:
            self._release_held(sub)
            await self._leave(channel, sub)

    async def server_unsubscribe(self, channel: str, code: int, reason: str) -> bool:
        """See `Session.server_unsubscribe`."""
        sub = self._end(channel, code, reason)
        if sub is None:
            return False
        await self._leave(channel, sub)
        return True

    def _end(self, channel: str, code: int, reason: str) -> Subscription | None:
        sub = self._subs.pop(channel, None)
        if sub is not None:
            self._release_held(sub)
            self._outbox.send(push(channel, "unsubscribe", {"code": int(code), "reason": reason}))
        return sub

    def _insufficient_state(self, channel: str) -> None:
        """The stream moved on without us (a gap, or a new epoch): the client
        resubscribes on code 2500 and recovers what it can."""
        sub = self._end(channel, UnsubscribeCode.INSUFFICIENT_STATE, "insufficient state")
        if sub is not None:
            self._node.spawn(self._leave(channel, sub))

    def check_position(self, channel: str, position: StreamPosition) -> None:
        """Compare with the stream's position after a broker outage."""
        sub = self._subs.get(channel)
        if sub is None or not sub.recoverable or sub.pending is not None:
            return
        if position.epoch != sub.epoch or position.offset > sub.offset:
            self._insufficient_state(channel)

    async def _leave(self, channel: str, sub: Subscription) -> None:
        """Undo a subscription everywhere; failures are logged, the client is already out."""
        if sub.expiry is not None:
            sub.expiry.cancel()
        if self.listener is not None and sub.pending is None:
            self.listener.unsubscribed(channel)
        node = self._node
        try:
            await node.remove_subscriber(channel, self)
            if sub.options.presence:
                await node.remove_presence(channel, self.client_id)
            if sub.options.join_leave and sub.pending is None:
                await node.publish_leave(channel, sub.info)
        except ReplyError:
            pass  # the node logged it
        except Exception as exc:
            log.warning(
                "client %s: leaving %r failed: %s",
                self.client_id,
                channel,
                exc,
                extra=self._log_context,
            )

    def close(self) -> None:
        """The connection ended: every subscription ends, and leaves in the background."""
        self.closed = True
        subs, self._subs = self._subs, {}
        for sub in subs.values():
            if sub.expiry is not None:
                sub.expiry.cancel()
        if subs:
            self._node.spawn(self._leave_all(subs))

    async def _leave_all(self, subs: dict[str, Subscription]) -> None:
        for channel, sub in subs.items():
            await self._leave(channel, sub)

    # Delivery (called by the hub) --------------------------------------------------

    def deliver_publication(self, channel: str, pub: Publication, frame: Frame) -> None:
        sub = self._subs.get(channel)
        if sub is not None and self._accepts(channel, sub, pub, frame, None):
            self._outbox.queue(frame.payload, frame)

    def deliver_delta(
        self, channel: str, pub: Publication, full: Frame, patch: Frame | None
    ) -> None:
        """The hub's two forms of `pub` for a delta subscription: the patch goes
        only on top of the publication delivered right before it (see the
        module's promises)."""
        sub = self._subs.get(channel)
        if sub is None or not self._accepts(channel, sub, pub, full, patch):
            return
        frame = full
        if sub.delta:
            offset = pub.offset
            if patch is not None and offset and sub.delta_base == offset - 1:
                frame = patch
            sub.delta_base = offset
        self._outbox.queue(frame.payload, frame)

    def _accepts(
        self, channel: str, sub: Subscription, pub: Publication, frame: Frame, patch: Frame | None
    ) -> bool:
        """Whether `pub` goes out now: not while subscribing (held back, its
        bytes counted), nor out of order (a gap ends the subscription, an old
        one was in the reply)."""
        if sub.pending is not None:
            sub.pending.append((pub, frame, patch))
            size = len(frame.payload)
            sub.held += size
            self._outbox.hold(size)
            return False
        offset = pub.offset
        if offset and sub.recoverable:
            last, epoch = sub.offset, pub.epoch
            same_stream = not epoch or epoch == sub.epoch
            if offset != last + 1 or not same_stream:
                if offset > last or not same_stream:
                    self._insufficient_state(channel)
                # else: already sent in the subscribe reply
                return False
            sub.offset = offset
        return True

    def deliver(self, channel: str, frame: Frame) -> None:
        sub = self._subs.get(channel)
        if sub is not None and sub.pending is None:
            self._outbox.queue(frame.payload, frame)

    def deliver_batch(self, channel: str, messages: Sequence[bytes], frame: Frame) -> None:
        sub = self._subs.get(channel)
        if sub is not None and sub.pending is None:
            self._outbox.queue_batch(messages, frame)
