"""The `[api]` settings: keys as a list of strings, limits with ranges, and the
development key staying in the development configuration."""

from __future__ import annotations

from pathlib import Path

import pytest
from wsfan.api.keys import DEVELOPMENT_KEY
from wsfan.config import ConfigError, load_settings


def test_the_shipped_defaults_carry_the_development_key() -> None:
    assert load_settings(env={}).api.keys == (DEVELOPMENT_KEY,)


def test_a_config_file_does_not_inherit_the_development_key(tmp_path: Path) -> None:
    config = tmp_path / "prod.toml"
    config.write_text("[server]\nport = 9000\n")
    assert load_settings(config, env={}).api.keys == ()


def test_a_config_file_sets_its_own_keys(tmp_path: Path) -> None:
    config = tmp_path / "prod.toml"
    config.write_text('[api]\nkeys = ["k1", "k2"]\n')
    assert load_settings(config, env={}).api.keys == ("k1", "k2")


def test_the_production_example_has_no_key() -> None:
    example = Path(__file__).resolve().parents[1] / "config" / "production.example.toml"
    assert load_settings(example, env={}).api.keys == ()


@pytest.mark.parametrize(
    ("raw", "keys"),
    [
        ("single-key", ("single-key",)),
        ("k1, k2", ("k1", "k2")),
        ('["k1", "k,2"]', ("k1", "k,2")),
    ],
)
def test_keys_from_the_environment(raw: str, keys: tuple[str, ...]) -> None:
    assert load_settings(env={"WSFAN_API__KEYS": raw}).api.keys == keys


@pytest.mark.parametrize("value", ["key", ["k", 1], 5])
def test_keys_that_are_not_a_list_of_strings_are_refused(value: object) -> None:
    with pytest.raises(ConfigError, match=r"api\.keys: expected a list of strings"):
        load_settings(env={}).with_overrides(api={"keys": value})


@pytest.mark.parametrize(
    ("key", "bad"),
    [
        ("max_body_bytes", 63),
        ("max_batch_commands", 0),
        ("max_broadcast_channels", 0),
        ("idempotency_window", 0),
        ("survey_timeout", 0),
        ("node_info_interval", 0),
    ],
)
def test_api_limits_out_of_range_are_refused_naming_the_key(key: str, bad: float) -> None:
    with pytest.raises(ConfigError, match=rf"api\.{key}: expected"):
        load_settings(env={}).with_overrides(api={key: bad})


def test_unknown_api_key_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"api\.secret: unknown key"):
        load_settings(env={}).with_overrides(api={"secret": 1})
