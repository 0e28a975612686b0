"""bench/delta.py in its quick mode: a real server, every delivery checked, and
the result file's shape (the README's delta figures come from it)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.delta import main


def test_the_quick_run_writes_bytes_per_delivery_with_and_without_delta(tmp_path: Path) -> None:
    main(["--quick", "--out", str(tmp_path)])
    result = json.loads((tmp_path / "delta.json").read_text())
    assert result["document_bytes"] > 1900 and result["patch_us"] > 0
    rows = {row["subscriber"]: row for row in result["subscribers"]}
    assert set(rows) == {"json", "json + delta", "msgpack", "msgpack + delta"}
    for encoding in ("json", "msgpack"):
        plain, delta = rows[encoding], rows[f"{encoding} + delta"]
        assert plain["patched"] == 0 and delta["patched"] == delta["deliveries"] - 1
        assert delta["bytes_per_delivery"] < plain["bytes_per_delivery"] / 4
        assert 0 < delta["saved_percent"] < 100
    assert "| json + delta |" in (tmp_path / "DELTA.md").read_text()
