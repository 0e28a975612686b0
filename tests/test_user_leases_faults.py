"""The cluster-wide per-user cap fails closed: a connect while Redis cannot be
reached is answered with the temporary error (100), and the SDK retries."""

from __future__ import annotations

import pytest
from wsfan.auth.cli import mint
from wsfan.embedded import EmbeddedServer
from wsfan.node import Node
from wsfan.protocol import Encoding

from tests.conftest import TIMEOUT_SCALE


@pytest.fixture
def broker_type() -> str:
    return "redis"


@pytest.fixture
def redis_url(embedded_redis: EmbeddedServer) -> str:
    """A Valkey of the test's own, to stop."""
    return embedded_redis.url


@pytest.mark.settings(
    client={"max_connections_per_user": 2, "max_connections_per_user_scope": "cluster"},
    redis={"command_timeout": 0.5, "connect_timeout": 0.5},
)
@pytest.mark.gen_test(timeout=15 * TIMEOUT_SCALE)
async def test_a_connect_while_redis_is_down_answers_the_temporary_error(
    open_client, node: Node, embedded_redis: EmbeddedServer
):
    embedded_redis.stop()
    client = await open_client(Encoding.JSON)
    answer = await client.call("connect", {"token": mint(node.settings.auth.hmac_secret, "alice")})
    assert answer["error"]["code"] == 100
    assert answer["error"].get("temporary") is True
    assert node.hub.num_clients == 0
