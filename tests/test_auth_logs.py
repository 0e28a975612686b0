"""No secret in a log line or an error: token failures of every kind, with logging at DEBUG."""

from __future__ import annotations

import logging

import jwt
import pytest
from wsfan.auth.cli import mint
from wsfan.protocol import Encoding

from tests.client import ProtoClient

SECRET = "configured-SECRET-value-0123456789-abcdefghij"
WRONG_SECRET = "attacker-SECRET-value-0123456789-klmnopqrst"
PRIVATE = "private:1"


def everything_logged(caplog: pytest.LogCaptureFixture) -> str:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return "\n".join(formatter.format(record) for record in caplog.records)


async def drain(c: ProtoClient) -> str:
    """Everything the server sent until it closed, close code and reason included."""
    seen = []
    while (message := await c.recv()) is not None:
        seen.append(repr(message))
    return "\n".join([*seen, repr((c.conn.close_code, c.conn.close_reason))])


@pytest.mark.settings(
    auth={"hmac_secret": SECRET},
    namespaces={"private": {"require_sub_token": True}},
)
@pytest.mark.gen_test
async def test_token_failures_log_and_answer_without_any_token_or_secret(open_client, caplog):
    caplog.set_level(logging.DEBUG)
    good = mint(SECRET, "alice")
    tokens = {
        "bad-signature": mint(WRONG_SECRET, "alice"),
        "expired": mint(SECRET, "alice", ttl=-10),
        "alg-none": jwt.encode({"sub": "alice"}, None, algorithm="none"),
        "wrong-alg": jwt.encode({"sub": "alice"}, SECRET + SECRET, algorithm="HS512"),
        "garbage": "garbage-" + SECRET,  # a client that sends the secret itself
        "sub-for-another-channel": mint(SECRET, "alice", channel="private:2"),
        "sub-for-another-user": mint(SECRET, "bob", channel=PRIVATE),
        "sub-expired": mint(SECRET, "alice", channel=PRIVATE, ttl=-10),
        "sub-bad-signature": mint(WRONG_SECRET, "alice", channel=PRIVATE),
        "refresh-other-user": mint(SECRET, "mallory"),
        "refresh-expired": mint(SECRET, "alice", ttl=-10),
    }
    sent: list[str] = []

    async def session() -> ProtoClient:
        c = await open_client(Encoding.JSON)
        return c

    for kind in ("bad-signature", "expired", "alg-none", "wrong-alg", "garbage"):
        c = await session()
        await c.send({"id": 1, "connect": {"token": tokens[kind]}})
        if kind == "expired":
            sent.append(repr(await c.reply(1)))
            c.close()
        else:
            sent.append(await drain(c))

    c = await session()
    await c.connect(token=good)
    for kind in (
        "sub-for-another-channel",
        "sub-for-another-user",
        "sub-expired",
        "sub-bad-signature",
    ):
        reply = await c.call("subscribe", {"channel": PRIVATE, "token": tokens[kind]})
        sent.append(repr(reply))
        assert reply["error"]["code"] in (103, 109)
    await c.result(
        "subscribe", {"channel": PRIVATE, "token": mint(SECRET, "alice", channel=PRIVATE)}
    )
    reply = await c.call("sub_refresh", {"channel": PRIVATE, "token": tokens["sub-expired"]})
    sent.append(repr(reply))
    for kind in ("refresh-other-user", "refresh-expired"):
        c = await session()
        await c.connect(token=good)
        await c.send({"id": 9, "refresh": {"token": tokens[kind]}})
        sent.append(await drain(c))

    logged = everything_logged(caplog)
    assert "refused" in logged  # the failures were logged, with their reasons
    answered = "\n".join(sent)
    for secret in (SECRET, WRONG_SECRET, good, *tokens.values()):
        assert secret not in logged
        assert secret not in answered
    for token in (good, *tokens.values()):
        for part in token.split("."):
            if len(part) > 16:  # header, payload or signature of any token
                assert part not in logged
