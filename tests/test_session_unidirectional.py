"""The unidirectional protocol (server/session/unidirectional.py): the bare
connect request, the connect push, refusals as disconnect pushes, and the
channels `subs` asks for, driven in process on a real node (memory broker)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from wsfan.auth.cli import mint
from wsfan.errors import Disconnect, DisconnectCode, ErrorCode, ReplyError
from wsfan.node import Node
from wsfan.protocol import Encoding, ProtocolError
from wsfan.session import Session
from wsfan.session.unidirectional import (
    connect_message,
    connect_push,
    disconnect_for,
    requested_subscriptions,
)
from wsfan.transport import variant
from wsfan.web.stream_framing import UNI_SSE

from tests.conftest import TIMEOUT_SCALE
from tests.transports import RecordingTransport, messages, new_session, started_node

unit = pytest.mark.gen_test(timeout=10 * TIMEOUT_SCALE)


class UniTransport(RecordingTransport):
    """A uni_sse connection: pushes unwrapped, no close frame."""

    sends_close_frame = False

    def __init__(self) -> None:
        super().__init__()
        self.variant = variant(Encoding.JSON, UNI_SSE)


@asynccontextmanager
async def uni_session(**overrides: object) -> AsyncIterator[tuple[Node, Session, UniTransport]]:
    node = await started_node(**overrides)
    try:
        transport = UniTransport()
        yield node, new_session(node, transport), transport
    finally:
        await node.close()


async def connected(session: Session, request: object) -> None:
    await session.handle_frame(json.dumps(request).encode())
    session.outbox.flush()


# The request and the connect push ------------------------------------------------


def test_the_bare_request_stands_for_a_connect_command():
    request = b'{"token": "t", "subs": {"news": {}}}'
    assert connect_message(request, Encoding.JSON) == {
        "id": 1,
        "connect": {"token": "t", "subs": {"news": {}}},
    }


@pytest.mark.parametrize("request_", [b"[1]", b'"x"', b"null", b"{}\n{}", b"{"])
def test_a_request_that_is_not_one_object_is_a_protocol_error(request_):
    with pytest.raises(ProtocolError):
        connect_message(request_, Encoding.JSON)


def test_the_connect_push_is_the_connect_result_under_connect():
    pushed = connect_push({"client": "c", "version": "1", "ping": 25}, Encoding.JSON)
    assert json.loads(pushed) == {"connect": {"client": "c", "version": "1", "ping": 25}}


@pytest.mark.parametrize(
    ("error", "code", "reconnect"),
    [
        (ErrorCode.UNAUTHORIZED, 3500, False),
        (ErrorCode.TOKEN_EXPIRED, 3005, True),
        (ErrorCode.EXPIRED, 3005, True),
        (ErrorCode.PERMISSION_DENIED, 3507, False),
        (ErrorCode.UNKNOWN_CHANNEL, 3501, False),
        (ErrorCode.BAD_REQUEST, 3501, False),
        (ErrorCode.LIMIT_EXCEEDED, 3501, False),
        (ErrorCode.TOO_MANY_REQUESTS, 3013, True),
        (ErrorCode.INTERNAL, 3004, True),
        (1400, 3004, True),  # an application's own code: a passing failure
    ],
)
def test_a_refused_connect_becomes_the_disconnect_of_its_kind(error, code, reconnect):
    disconnect = disconnect_for(ReplyError(error, "why"))
    assert (int(disconnect.code), disconnect.reason, disconnect.reconnect) == (
        code,
        "why",
        reconnect,
    )


# A session on a unidirectional transport ---------------------------------------------


@unit
async def test_the_request_is_answered_by_a_connect_push_without_pong():
    async with uni_session() as (node, session, transport):
        await connected(session, {"name": "curl"})
        (push,) = messages(transport)
        assert set(push) == {"connect"}
        assert push["connect"]["client"] == session.client_id
        assert "pong" not in push["connect"]
        assert node.hub.session(session.client_id) is session


@unit
async def test_frames_after_the_request_are_ignored():
    async with uni_session() as (_, session, transport):
        await connected(session, {})
        await session.handle_frame(b'{"id": 2, "subscribe": {"channel": "news"}}')
        await session.handle_frame(b"garbage")
        session.outbox.flush()
        assert len(messages(transport)) == 1
        assert transport.closed is None
        assert len(session.subscriptions) == 0


@unit
async def test_a_refused_request_ends_with_a_disconnect_push_not_an_error_reply():
    async with uni_session() as (_, session, transport):
        await connected(session, {"token": "not-a-token"})
        assert messages(transport) == [
            {"disconnect": {"code": 3500, "reason": "invalid token", "reconnect": False}}
        ]
        assert transport.closed == 3500


@unit
async def test_subs_that_is_not_a_map_subscribes_nothing():
    async with uni_session() as (_, session, transport):
        await connected(session, {"subs": ["news"]})
        assert "subs" not in messages(transport)[0]["connect"]


# The channels `subs` names -------------------------------------------------------------


@unit
async def test_subs_each_allowed_as_a_subscribe_would_be():
    async with uni_session() as (_, session, _):
        allowed = await requested_subscriptions(session, {"a": {}, "b": None}, "")
        assert set(allowed) == {"a", "b"}


@unit
async def test_more_subs_than_max_channels_is_3505():
    async with uni_session(client={"max_channels": 2}) as (_, session, _):
        with pytest.raises(Disconnect) as refused:
            await requested_subscriptions(session, {"a": {}, "b": {}, "c": {}}, "")
        assert refused.value.code is DisconnectCode.CHANNEL_LIMIT


@unit
async def test_a_channel_name_that_is_not_a_string_is_107():
    async with uni_session() as (_, session, _):
        with pytest.raises(ReplyError) as refused:
            await requested_subscriptions(session, {1: {}}, "")
        assert refused.value.code is ErrorCode.BAD_REQUEST


@pytest.mark.parametrize(
    "options",
    [{"allow_subscribe": False}, {"require_sub_token": True}, {"allow_anonymous": False}],
)
@unit
async def test_a_namespace_that_refuses_the_channel_is_103(options):
    async with uni_session(namespaces={"closed": options}) as (_, session, _):
        with pytest.raises(ReplyError) as refused:
            await requested_subscriptions(session, {"closed:x": {}}, "")
        assert refused.value.code is ErrorCode.PERMISSION_DENIED


@unit
async def test_a_subscription_token_in_subs_allows_the_channel_with_its_info():
    async with uni_session(namespaces={"closed": {"require_sub_token": True}}) as (
        node,
        session,
        _,
    ):
        secret = node.settings.auth.hmac_secret
        token = mint(secret, "alice", channel="closed:x", info={"role": "reader"})
        allowed = await requested_subscriptions(session, {"closed:x": {"token": token}}, "alice")
        assert allowed["closed:x"].info == {"role": "reader"}


@unit
async def test_a_subscription_token_for_another_user_is_refused():
    async with uni_session() as (node, session, _):
        token = mint(node.settings.auth.hmac_secret, "mallory", channel="news")
        with pytest.raises(ReplyError):
            await requested_subscriptions(session, {"news": {"token": token}}, "alice")
