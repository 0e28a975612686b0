"""`/metrics`: Prometheus text format with the node's figures."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from wsfan.node import Node

from tests.conftest import TIMEOUT_SCALE


async def scrape(http_port: int) -> dict[str, float]:
    """Every sample of /metrics, keyed by name and labels."""
    response = await AsyncHTTPClient().fetch(f"http://127.0.0.1:{http_port}/metrics")
    assert response.headers["Content-Type"].startswith("text/plain")
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(response.body.decode()):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return samples


@pytest.mark.gen_test
async def test_metrics_count_connections_subscriptions_and_commands(client, http_port: int):
    c = await client()
    await c.result("subscribe", {"channel": "news"})
    await c.result("publish", {"channel": "news", "data": {"n": 1}})
    await c.push("pub", "news")
    assert (await c.call("subscribe", {"channel": "news"}))["error"]["code"] == 105
    m = await scrape(http_port)
    assert m["wsfan_connections"] == 1
    assert m["wsfan_subscriptions"] == 1
    assert m["wsfan_channels"] == 1
    assert m["wsfan_commands_total{method=subscribe}"] == 2
    assert m["wsfan_commands_total{method=publish}"] == 1
    assert m["wsfan_command_errors_total{code=105,method=subscribe}"] == 1
    assert m["wsfan_messages_in_total"] == 4
    assert m["wsfan_messages_out_total"] >= 5  # 4 replies and the publication
    assert m["wsfan_bytes_in_total"] > 0 and m["wsfan_bytes_out_total"] > 0
    assert m["wsfan_fanout_seconds_count"] == 1
    assert m["wsfan_broker_publish_seconds_count"] == 1


@pytest.mark.gen_test
async def test_unknown_methods_share_one_label(client, http_port: int):
    c = await client()
    for name in ("nope", "other"):
        await c.send({"id": c.next_id(), name: {}})
    await c.reply(c._next_id)
    m = await scrape(http_port)
    assert m["wsfan_commands_total{method=unknown}"] == 2
    assert m["wsfan_command_errors_total{code=104,method=unknown}"] == 2


@pytest.mark.settings(client={"stale_timeout": 0.1})
@pytest.mark.gen_test
async def test_server_disconnects_are_counted_by_code(client, http_port: int, node: Node):
    c = await client(connect=False)
    assert (await c.closed())[0] == 3502
    m = await scrape(http_port)
    assert m["wsfan_disconnects_total{code=3502}"] == 1
    assert m["wsfan_connections"] == 0


@pytest.mark.gen_test
async def test_broker_reconnects_are_counted(http_server, http_port: int, node: Node):
    node.handle_broker_reconnect()
    m = await scrape(http_port)
    assert m["wsfan_broker_reconnects_total"] == 1


@pytest.mark.gen_test
async def test_connections_are_counted_by_transport(client, http_port: int):
    await client()
    body = b'{"id":1,"connect":{}}'
    request = HTTPRequest(
        f"http://127.0.0.1:{http_port}/connection/http_stream",
        method="POST",
        body=body,
        streaming_callback=lambda chunk: None,
        request_timeout=30,
    )
    streaming = AsyncHTTPClient().fetch(request, raise_error=False)
    m = await scrape(http_port)
    deadline = 50
    while m.get("wsfan_transport_connections{transport=http_stream}") != 1 and deadline:
        deadline -= 1
        await asyncio.sleep(0.05 * TIMEOUT_SCALE)
        m = await scrape(http_port)
    assert m["wsfan_transport_connections{transport=websocket}"] == 1
    assert m["wsfan_transport_connections{transport=http_stream}"] == 1
    assert m["wsfan_transport_connects_total{transport=http_stream}"] == 1
    assert m["wsfan_connections"] == 2
    AsyncHTTPClient().close()
    streaming.cancel()
