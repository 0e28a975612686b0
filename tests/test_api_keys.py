"""Which API keys the server API accepts: configured keys and a pluggable lookup."""

from __future__ import annotations

import logging

import pytest
from wsfan.api.keys import DEVELOPMENT_KEY, ApiKeyChecker


@pytest.mark.gen_test
async def test_a_configured_key_is_accepted() -> None:
    assert await ApiKeyChecker(["k1", "k2"]).check("k2") is True


@pytest.mark.gen_test
async def test_a_wrong_key_is_refused() -> None:
    assert await ApiKeyChecker(["k1"]).check("k11") is False


@pytest.mark.gen_test
async def test_an_empty_key_is_refused_even_if_empty_keys_are_configured() -> None:
    checker = ApiKeyChecker(["", "k1"])
    assert await checker.check("") is False


@pytest.mark.gen_test
async def test_without_keys_or_lookup_nothing_is_accepted() -> None:
    checker = ApiKeyChecker([])
    assert checker.configured is False
    assert await checker.check("anything") is False


@pytest.mark.gen_test
async def test_non_ascii_keys_compare_without_error() -> None:
    assert await ApiKeyChecker(["ключ"]).check("ключ") is True
    assert await ApiKeyChecker(["ключ"]).check("\udcff") is False


@pytest.mark.gen_test
async def test_the_lookup_answers_for_keys_not_configured() -> None:
    asked: list[str] = []

    async def lookup(key: str) -> bool:
        asked.append(key)
        return key == "stored"

    checker = ApiKeyChecker(["k1"], lookup)
    assert checker.configured is True
    assert await checker.check("stored") is True
    assert await checker.check("other") is False
    assert await checker.check("k1") is True
    assert asked == ["stored", "other"]


@pytest.mark.gen_test
async def test_a_failing_lookup_raises() -> None:
    async def lookup(key: str) -> bool:
        raise ConnectionError("store down")

    with pytest.raises(ConnectionError):
        await ApiKeyChecker([], lookup).check("x")


def test_the_development_key_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="wsfan.api.keys"):
        ApiKeyChecker([DEVELOPMENT_KEY])
    assert "development key" in caplog.text
    assert DEVELOPMENT_KEY not in caplog.text
