"""Faults of Valkey under full publish load, with SDK subscribers: no acknowledged
publication is lost, history pages over every offset, and every subscriber gets each
acknowledged publication exactly once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import TIMEOUT_SCALE
from tests.faults import run_scenario

TEST_TIMEOUT = 90 * TIMEOUT_SCALE
pytestmark = pytest.mark.filterwarnings(
    "ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning"
)


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_valkey_stopped_longer_than_the_command_timeout_loses_no_acknowledged_publication(
    tmp_path: Path,
):
    # Publishes that time out may still run in Redis once it continues: the log must
    # hold them anyway, or history and recovery cannot page over their offsets.
    (await run_scenario("valkey_stall", tmp_path)).assert_no_loss()


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_valkey_killed_and_restarted_with_its_aof_loses_no_acknowledged_publication(
    tmp_path: Path,
):
    (await run_scenario("valkey_kill", tmp_path)).assert_no_loss()


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_valkey_losing_the_tail_of_its_aof_never_reuses_a_position_for_other_data(
    tmp_path: Path,
):
    # With appendfsync everysec a crash may lose the last second: the channel's offsets
    # roll back. Publications acknowledged in that second may be gone (a new epoch says
    # so), but no (epoch, offset) may then stand for another publication.
    (await run_scenario("valkey_tail_lost", tmp_path)).assert_positions_unique()
