"""Deltas from server/protocol/fossil.py are applied by the vendored JavaScript
SDK (static/vendor/centrifuge/centrifuge.js, 5.8.0) to give the target, byte-exact.

No server: the page loads the SDK and hands each publication, as the JSON
protocol carries it (`{"data": "<delta as a string>", "delta": true}`), to the
SDK's own JSON codec method `applyDeltaIfNeeded(publication, previousBytes)`,
the one a subscription with `delta: "fossil"` calls (a private member of the
bundle, so an SDK upgrade may have to touch this test).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from wsfan.protocol.fossil import create

SDK = Path(__file__).resolve().parents[2] / "static" / "vendor" / "centrifuge" / "centrifuge.js"

APPLY = """([previous, wire]) => {
    const client = new Centrifuge("ws://127.0.0.1:9/connection/websocket");
    const result = client._codec.applyDeltaIfNeeded(
        JSON.parse(wire), new TextEncoder().encode(previous));
    return {isDelta: result.isDelta, bytes: Array.from(result.newPrevValue), data: result.newData};
}"""


def document(items: int) -> dict[str, Any]:
    """About 58 bytes of JSON per item."""
    return {
        "items": [
            {
                "id": i,
                "name": f"item-{i}",
                "price": (i * 37 + 3) % 1000 / 10,
                "tags": ["a", "b"],
            }
            for i in range(items)
        ],
        "ts": 1700000000,
    }


def compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def changed(doc: dict[str, Any]) -> dict[str, Any]:
    """`doc` with three values changed: about 1% of a 2 KB document."""
    out = json.loads(json.dumps(doc))
    out["items"][5]["price"] = 12.34
    out["items"][17]["name"] = "changed"
    out["ts"] += 1
    return out


DOC = document(36)  # 2053 bytes
CYRILLIC = {"имя": "Алиса", "статус": "в сети 😀", "заметка": "съешь же ещё этих мягких булок"}
CASES = {
    "empty source": (b"", compact({"a": 1})),
    "identical": (compact(DOC), compact(DOC)),
    "one percent of 2 KB": (compact(DOC), compact(changed(DOC))),
    "appended": (compact(DOC), compact({**DOC, "more": ["appended"] * 20})),
    "cyrillic and emoji": (
        compact(CYRILLIC),
        compact({**CYRILLIC, "статус": "не в сети 🚀😀", "ещё": "👋🏽 да выпей чаю"}),
    ),
    "completely different": (
        compact(DOC),
        compact({"log": [f"event {n * 7919 % 10007} at node Ж-{n}" for n in range(60)]}),
    ),
}


@pytest.fixture
def sdk_page(open_page: Any) -> Any:
    page = open_page("about:blank")
    page.add_script_tag(content=SDK.read_text())
    return page


@pytest.mark.parametrize(("source", "target"), CASES.values(), ids=list(CASES))
def test_the_sdk_applies_a_utf8_safe_delta_to_give_the_target(
    sdk_page: Any, source: bytes, target: bytes
) -> None:
    delta = create(source, target, utf8_safe=True)
    wire = json.dumps({"data": delta.decode(), "delta": True})
    result = sdk_page.evaluate(APPLY, [source.decode(), wire])
    assert result["isDelta"] is True
    assert bytes(result["bytes"]) == target
    assert result["data"] == json.loads(target)


def test_the_sdk_refuses_a_delta_applied_to_another_source(sdk_page: Any) -> None:
    source, target = CASES["one percent of 2 KB"]
    wire = json.dumps({"data": create(source, target).decode(), "delta": True})
    other = source.replace(b'"item-1"', b'"item-X"')
    with pytest.raises(Exception, match="bad checksum"):
        sdk_page.evaluate(APPLY, [other.decode(), wire])
