"""SecantusDB (the MongoDB log) stopped and restarted under full publish load: no
acknowledged publication is lost, and history reaches every one through the log."""

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
async def test_secantusdb_stopped_and_restarted_loses_no_acknowledged_publication(
    tmp_path: Path,
):
    (await run_scenario("mongo_restart", tmp_path)).assert_no_loss()
