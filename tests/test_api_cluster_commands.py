"""The API's commands aimed at users, as one node runs them, and the channel survey
(server/api/cluster_commands.py)."""

from __future__ import annotations

import pytest
from wsfan.api.cluster_commands import COMMANDS, ClusterCommands
from wsfan.node import Node


@pytest.mark.gen_test
async def test_server_unsubscribe_pushes_unsubscribe_and_stops_delivery(client, node: Node):
    a, b = await client(), await client()
    for c in (a, b):
        await c.result("subscribe", {"channel": "news"})
    assert await ClusterCommands(node).unsubscribe_here("news", client_id=a.client_id) == 1
    unsubscribe = await a.push("unsubscribe", "news")
    assert unsubscribe["unsubscribe"] == {"code": 2000, "reason": "server unsubscribe"}
    await node.publish("news", "only b")
    assert (await b.push("pub", "news"))["pub"]["data"] == "only b"
    await a.result("subscribe", {"channel": "other"})
    await node.publish("other", "a is still connected")
    assert (await a.push("pub"))["channel"] == "other"


@pytest.mark.gen_test
async def test_server_unsubscribe_of_a_user_reaches_all_their_connections(client, node: Node):
    a, b = await client(), await client()
    for c in (a, b):
        await c.result("subscribe", {"channel": "news"})
    assert await ClusterCommands(node).unsubscribe_here("news", user="") == 2
    assert await ClusterCommands(node).unsubscribe_here("news", user="") == 0


@pytest.mark.gen_test
async def test_a_command_sent_to_the_cluster_runs_on_this_node_too(client, node: Node):
    a = await client()
    await a.result("subscribe", {"channel": "news"})
    await ClusterCommands(node).send("unsubscribe", {"user": "", "client": "", "channel": "news"})
    assert (await a.push("unsubscribe", "news"))["unsubscribe"]["code"] == 2000


@pytest.mark.gen_test
async def test_the_channels_survey_counts_this_nodes_subscribers_matching_the_pattern(
    client, node: Node
):
    for channel in ("news", "news", "chat:a"):
        await (await client()).result("subscribe", {"channel": channel})
    commands = ClusterCommands(node)
    assert await commands.channels() == {"news": 2, "chat:a": 1}
    assert await commands.channels("chat:*") == {"chat:a": 1}


def test_the_command_table_holds_every_command_the_api_sends():
    assert set(COMMANDS) == {"subscribe", "unsubscribe", "disconnect", "refresh"}
