"""The capacity model's arithmetic (bench/capacity.py `project`) over made-up figures."""

from __future__ import annotations

from typing import Any

from bench.capacity import UTILISATION, Workload, project

MEASURED: dict[str, Any] = {
    "redis_us_per_publication": 10.0,
    "redis_us_per_node_delivery": 2.0,
    "redis_us_per_presence_entry": 8.0,
    "redis_us_per_presence_entry_pipelined": 2.0,
}
NODE = {"node_us_per_delivery": 10.0, "connections_per_core": 10_000}


def test_deliveries_are_publications_times_subscribers_per_channel() -> None:
    row = project(Workload("w", 1000, 2, 100, 50), MEASURED, NODE)
    assert row["subscribers_per_channel"] == 20
    assert row["deliveries_per_second"] == 50 * 20


def test_node_cores_follow_the_busier_of_deliveries_and_connections() -> None:
    busy = project(Workload("busy", 10_000, 1, 1, 600), MEASURED, NODE)
    assert busy["bound_by"] == "deliveries"
    assert busy["node_cores"] == round(10_000 * 600 * 10.0 / 1e6 / UTILISATION)
    idle = project(Workload("idle", 50_000, 1, 50_000, 1), MEASURED, NODE)
    assert (idle["bound_by"], idle["node_cores"]) == ("connections", 5)


def test_a_publication_reaches_at_most_every_node_and_at_most_its_subscribers() -> None:
    row = project(Workload("w", 200_000, 1, 100_000, 1000), MEASURED, NODE)
    assert row["nodes_per_publication"] <= min(row["node_cores"], 2)


def test_presence_adds_its_refreshes_to_valkeys_load() -> None:
    without = project(Workload("w", 100_000, 5, 1000, 100), MEASURED, NODE)
    with_presence = project(Workload("w", 100_000, 5, 1000, 100, presence=True), MEASURED, NODE)
    refreshes = 100_000 * 5 / 25.0 * 2.0 / 1e6  # pipelined, per second
    assert abs(with_presence["redis_cores"] - without["redis_cores"] - refreshes) < 0.002


def test_shards_keep_each_valkey_under_the_planned_utilisation() -> None:
    row = project(Workload("w", 1_000_000, 5, 200_000, 100_000), MEASURED, NODE)
    assert row["redis_cores"] / row["shards"] <= UTILISATION
    assert (row["redis_cores"] / (row["shards"] - 1)) > UTILISATION
