"""A serving process's collector settings: frozen start-up, a rarer youngest generation."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from wsfan.config import ConfigError, load_settings
from wsfan.gc_tuning import tune


@pytest.fixture(autouse=True)
def restored_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_tuning_sets_the_youngest_generations_threshold_and_keeps_the_others():
    _, second, third = gc.get_threshold()
    tune(load_settings(env={}).with_overrides(server={"gc_threshold": 12345}).server)
    assert gc.get_threshold() == (12345, second, third)


def test_tuning_freezes_what_exists_after_start_up():
    tune(load_settings(env={}).server)
    assert gc.get_freeze_count() > 0


def test_zero_and_false_leave_pythons_collector_as_it_is():
    before = gc.get_threshold()
    tune(
        load_settings(env={}).with_overrides(server={"gc_threshold": 0, "gc_freeze": False}).server
    )
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


@pytest.mark.parametrize("value", [0, 10_000_000])
def test_the_threshold_takes_its_range_edges(value: int):
    settings = load_settings(env={"WSFAN_SERVER__GC_THRESHOLD": str(value)})
    assert settings.server.gc_threshold == value


@pytest.mark.parametrize("value", [-1, 10_000_001])
def test_a_threshold_out_of_range_names_the_key(value: int):
    with pytest.raises(ConfigError, match=r"server\.gc_threshold"):
        load_settings(env={"WSFAN_SERVER__GC_THRESHOLD": str(value)})
