"""Settings (server/config.py): layering, environment, validation and channel options.

Every test passes an explicit `env` so the machine's environment never leaks in.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from wsfan.config import DEFAULT_CONFIG, ChannelOptions, ConfigError, Settings, load_settings

PRODUCTION_EXAMPLE = DEFAULT_CONFIG.parent / "production.example.toml"


@pytest.fixture
def write_toml(tmp_path: Path):
    """Writes a TOML file under the test's tmp dir and returns its path."""
    counter = iter(range(1000))

    def write(text: str) -> Path:
        path = tmp_path / f"config{next(counter)}.toml"
        path.write_text(text, encoding="utf-8")
        return path

    return write


def _error(**kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(**kwargs)
    return str(info.value)


# ---------------------------------------------------------------------------
# Shipped defaults


def test_shipped_defaults_let_anonymous_clients_connect() -> None:
    assert load_settings(env={}).client.allow_anonymous is True


def test_shipped_defaults_open_the_default_namespace() -> None:
    channels = load_settings(env={}).channels
    assert channels.allow_anonymous is True
    assert channels.allow_publish is True
    assert channels.history_size > 0
    assert channels.recovery is True
    assert channels.recoverable is True


def test_shipped_defaults_declare_an_open_chat_namespace() -> None:
    chat = load_settings(env={}).namespaces["chat"]
    assert chat.allow_anonymous is True
    assert chat.allow_publish is True
    assert chat.recoverable is True
    assert chat.presence is True


def test_shipped_defaults_run_a_cluster_on_embedded_servers() -> None:
    settings = load_settings(env={})
    assert settings.broker.type == "redis"
    assert settings.server.workers == 0  # one per core
    assert settings.embedded.enabled is True
    assert settings.redis.url == ""
    assert settings.mongo.url == ""


def test_dataclass_defaults_alone_are_closed() -> None:
    settings = load_settings(env={}, defaults_file=None)
    assert settings == Settings()
    assert settings.channels.allow_anonymous is False
    assert settings.channels.allow_publish is False
    assert settings.namespaces == {}


# ---------------------------------------------------------------------------
# Production example


def test_production_example_loads() -> None:
    settings = load_settings(PRODUCTION_EXAMPLE, env={})
    assert settings.server.port == 8000
    assert settings.embedded.enabled is False
    assert settings.redis.url.startswith("redis://")
    assert settings.mongo.url.startswith("mongodb://")
    assert settings.log.level == "warning"


def test_production_example_requires_a_token_to_connect() -> None:
    assert load_settings(PRODUCTION_EXAMPLE, env={}).client.allow_anonymous is False


def test_production_example_closes_the_default_namespace() -> None:
    channels = load_settings(PRODUCTION_EXAMPLE, env={}).channels
    assert channels.allow_anonymous is False
    assert channels.allow_publish is False
    assert channels.history_size == 0


def test_production_example_allows_no_anonymous_user_in_any_namespace() -> None:
    settings = load_settings(PRODUCTION_EXAMPLE, env={})
    open_namespaces = [ns for ns, o in settings.namespaces.items() if o.allow_anonymous]
    assert open_namespaces == []


# ---------------------------------------------------------------------------
# Layering: dataclass defaults < defaults file < config file < env < flags


def test_defaults_file_overrides_dataclass_defaults(write_toml) -> None:
    defaults = write_toml("[server]\nport = 7001\n")
    assert load_settings(env={}, defaults_file=defaults).server.port == 7001


def test_config_file_overrides_defaults_file(write_toml) -> None:
    defaults = write_toml("[server]\nport = 7001\nhost = 'a'\n")
    config = write_toml("[server]\nport = 7002\n")
    settings = load_settings(config, env={}, defaults_file=defaults)
    assert settings.server.port == 7002
    assert settings.server.host == "a"


def test_env_overrides_config_file(write_toml) -> None:
    config = write_toml("[server]\nport = 7002\n")
    settings = load_settings(config, env={"WSFAN_SERVER__PORT": "7003"})
    assert settings.server.port == 7003


def test_flags_override_env(write_toml) -> None:
    config = write_toml("[server]\nport = 7002\n")
    settings = load_settings(
        config, env={"WSFAN_SERVER__PORT": "7003"}, flags={"server": {"port": 7004}}
    )
    assert settings.server.port == 7004


def test_empty_flag_sections_change_nothing() -> None:
    assert load_settings(env={}, flags={"server": {}}) == load_settings(env={})


def test_a_layer_changes_only_the_keys_it_names(write_toml) -> None:
    config = write_toml("[client]\nmax_channels = 5\n")
    settings = load_settings(config, env={})
    assert settings.client.max_channels == 5
    assert settings.client.ping_interval == 25.0
    assert settings.server == load_settings(env={}).server


def test_a_config_file_without_channel_options_leaves_every_channel_closed(write_toml) -> None:
    settings = load_settings(write_toml("[client]\nmax_channels = 5\n"), env={})
    assert settings.channels == ChannelOptions() and dict(settings.namespaces) == {}


def test_integer_given_for_a_float_key_becomes_a_float(write_toml) -> None:
    config = write_toml("[client]\nping_interval = 5\n")
    value = load_settings(config, env={}).client.ping_interval
    assert value == 5.0 and type(value) is float


def test_settings_are_frozen() -> None:
    settings = load_settings(env={})
    with pytest.raises(AttributeError):
        settings.server.port = 1  # type: ignore[misc]


# ---------------------------------------------------------------------------
# Environment


def test_redis_url_env_sets_the_redis_url() -> None:
    settings = load_settings(env={"REDIS_URL": "redis://cache:6379/2"})
    assert settings.redis.url == "redis://cache:6379/2"


def test_mongo_url_env_sets_the_mongo_url() -> None:
    settings = load_settings(env={"MONGO_URL": "mongodb://db:27017/"})
    assert settings.mongo.url == "mongodb://db:27017/"


def test_env_value_is_read_as_toml_when_it_parses() -> None:
    settings = load_settings(
        env={"WSFAN_CLIENT__ALLOW_ANONYMOUS": "false", "WSFAN_CLIENT__PING_INTERVAL": "2.5"}
    )
    assert settings.client.allow_anonymous is False
    assert settings.client.ping_interval == 2.5


def test_env_value_is_read_as_a_string_when_it_is_not_toml() -> None:
    settings = load_settings(env={"WSFAN_SERVER__HOST": "0.0.0.0", "WSFAN_LOG__LEVEL": "debug"})
    assert settings.server.host == "0.0.0.0"
    assert settings.log.level == "debug"


def test_env_variables_without_the_prefix_are_ignored() -> None:
    assert load_settings(env={"PORT": "1", "HOME": "/root"}) == load_settings(env={})


def test_env_creates_a_namespace_with_closed_defaults() -> None:
    settings = load_settings(env={"WSFAN_NAMESPACES__X__PRESENCE": "true"})
    assert settings.namespaces["x"] == ChannelOptions(presence=True)


def test_env_changes_one_key_of_an_existing_namespace() -> None:
    before = load_settings(env={}).namespaces["chat"]
    after = load_settings(env={"WSFAN_NAMESPACES__CHAT__PRESENCE": "false"}).namespaces["chat"]
    assert after.presence is False
    assert after.history_size == before.history_size
    assert after.allow_publish == before.allow_publish


# ---------------------------------------------------------------------------
# Errors name the key


def test_unknown_key_names_it(write_toml) -> None:
    message = _error(config_file=write_toml("[server]\nprot = 1\n"), env={})
    assert "server.prot" in message
    assert "unknown key" in message


def test_unknown_key_in_a_namespace_names_it(write_toml) -> None:
    message = _error(config_file=write_toml("[namespaces.chat]\nhistory = 1\n"), env={})
    assert "namespaces.chat.history" in message


def test_unknown_section_names_it(write_toml) -> None:
    message = _error(config_file=write_toml("[servre]\nport = 1\n"), env={})
    assert "servre" in message
    assert "unknown section" in message


def test_bool_given_for_an_int_names_the_key(write_toml) -> None:
    message = _error(config_file=write_toml("[server]\nport = true\n"), env={})
    assert message.startswith("server.port:")
    assert "integer" in message


def test_float_given_for_an_int_names_the_key(write_toml) -> None:
    message = _error(config_file=write_toml("[client]\nmax_channels = 2.5\n"), env={})
    assert message.startswith("client.max_channels:")


def test_string_given_for_a_bool_names_the_key(write_toml) -> None:
    message = _error(config_file=write_toml("[channels]\npresence = 'yes'\n"), env={})
    assert message.startswith("channels.presence:")
    assert "boolean" in message


def test_string_given_for_a_bool_in_env_names_the_key() -> None:
    message = _error(env={"WSFAN_CLIENT__ALLOW_ANONYMOUS": "yes"})
    assert message.startswith("client.allow_anonymous:")


def test_number_given_for_a_string_names_the_key(write_toml) -> None:
    message = _error(config_file=write_toml("[server]\nhost = 127\n"), env={})
    assert message.startswith("server.host:")


@pytest.mark.parametrize("port", [0, 65536, -1])
def test_out_of_range_port_names_the_key_and_the_range(write_toml, port: int) -> None:
    message = _error(config_file=write_toml(f"[server]\nport = {port}\n"), env={})
    assert message.startswith("server.port:")
    assert "from 1 to 65535" in message


@pytest.mark.parametrize("port", [1, 65535])
def test_port_at_the_ends_of_the_range_is_accepted(write_toml, port: int) -> None:
    assert load_settings(write_toml(f"[server]\nport = {port}\n"), env={}).server.port == port


def test_negative_history_size_names_the_key(write_toml) -> None:
    message = _error(config_file=write_toml("[namespaces.a]\nhistory_size = -1\n"), env={})
    assert message.startswith("namespaces.a.history_size:")


def test_bad_choice_names_the_key_and_the_choices(write_toml) -> None:
    message = _error(config_file=write_toml("[log]\nlevel = 'verbose'\n"), env={})
    assert message.startswith("log.level:")
    assert "'debug'" in message and "'error'" in message


def test_unknown_broker_type_names_the_key() -> None:
    assert _error(env={"WSFAN_BROKER__TYPE": "kafka"}).startswith("broker.type:")


def test_section_that_is_not_a_table_names_it(write_toml) -> None:
    message = _error(config_file=write_toml("server = 1\n"), env={})
    assert message.startswith("server:")


def test_malformed_toml_file_names_the_file(write_toml) -> None:
    path = write_toml("[server\nport = 1\n")
    message = _error(config_file=path, env={})
    assert str(path) in message


def test_missing_config_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    message = _error(config_file=path, env={})
    assert str(path) in message
    assert "not found" in message


@pytest.mark.parametrize("name", ["bad name", "a:b", "ü", "a/b"])
def test_bad_namespace_name_names_it(write_toml, name: str) -> None:
    message = _error(config_file=write_toml(f'[namespaces."{name}"]\npresence = true\n'), env={})
    assert message.startswith(f"namespaces.{name}:")


def test_namespaces_that_is_not_a_table_is_rejected(write_toml) -> None:
    assert _error(config_file=write_toml("namespaces = 1\n"), env={}).startswith("namespaces:")


@pytest.mark.parametrize("name", ["WSFAN_PORT", "WSFAN_SERVER__", "WSFAN___PORT"])
def test_env_variable_without_section_and_key_names_the_variable(name: str) -> None:
    message = _error(env={name: "1"})
    assert message.startswith(f"{name}:")
    assert "WSFAN_<SECTION>__<KEY>" in message


def test_env_variable_for_an_unknown_section_names_it() -> None:
    assert "bogus" in _error(env={"WSFAN_BOGUS__KEY": "1"})


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


# ---------------------------------------------------------------------------
# Channel options


def test_channel_without_namespace_uses_the_default_options() -> None:
    settings = load_settings(env={})
    assert settings.channel_options("news") is settings.channels


def test_channel_in_a_declared_namespace_uses_its_options() -> None:
    settings = load_settings(env={})
    assert settings.channel_options("chat:1") is settings.namespaces["chat"]


def test_channel_in_an_unknown_namespace_has_no_options() -> None:
    assert load_settings(env={}).channel_options("nope:1") is None


def test_only_the_first_separator_selects_the_namespace() -> None:
    settings = load_settings(env={})
    assert settings.channel_options("chat:room:1") is settings.namespaces["chat"]


def test_recoverable_needs_both_recovery_and_history() -> None:
    assert ChannelOptions(history_size=10).recoverable is True
    assert ChannelOptions(history_size=0).recoverable is False
    assert ChannelOptions(history_size=10, recovery=False).recoverable is False


# ---------------------------------------------------------------------------
# with_overrides


def test_with_overrides_replaces_the_named_keys_only() -> None:
    base = load_settings(env={})
    settings = base.with_overrides(client={"max_channels": 2})
    assert settings.client.max_channels == 2
    assert settings.client.ping_interval == base.client.ping_interval
    assert base.client.max_channels == 128


def test_with_overrides_can_add_a_namespace() -> None:
    settings = load_settings(env={}).with_overrides(namespaces={"x": {"history_size": 3}})
    assert settings.namespaces["x"].history_size == 3
    assert "chat" in settings.namespaces


def test_with_overrides_validates_values() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env={}).with_overrides(server={"port": 0})
    assert str(info.value).startswith("server.port:")


def test_with_overrides_rejects_unknown_keys() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env={}).with_overrides(client={"max_chanels": 2})
    assert "client.max_chanels" in str(info.value)


def test_env_value_for_a_string_key_may_be_bare_or_quoted() -> None:
    for raw in ("memory", '"memory"'):
        assert load_settings(env={"WSFAN_BROKER__TYPE": raw}).broker.type == "memory"


def test_persist_without_history_is_refused():
    with pytest.raises(ConfigError, match=r"namespaces.x.persist: needs history_size > 0"):
        load_settings(env={}).with_overrides(namespaces={"x": {"persist": True}})


def test_retained_without_persist_is_refused():
    with pytest.raises(ConfigError, match=r"channels.retained: needs persist = true"):
        load_settings(env={}).with_overrides(channels={"history_size": 1, "retained": True})


def test_the_demo_chat_namespace_is_logged_to_mongodb():
    chat = load_settings(env={}).channel_options("chat:lobby")
    assert chat is not None and chat.persist and chat.persist_ttl == 7 * 86400


# ---------------------------------------------------------------------------
# Lists of strings, [auth] and the token defaults


def test_list_of_strings_is_read_from_a_file(write_toml) -> None:
    path = write_toml('[client]\nallowed_origins = ["https://a.test", "https://*.b.test"]\n')
    origins = load_settings(path, env={}).client.allowed_origins
    assert origins == ("https://a.test", "https://*.b.test")


def test_list_of_strings_from_env_may_be_toml_or_comma_separated() -> None:
    for raw in ('["https://a.test", "https://b.test"]', "https://a.test, https://b.test"):
        settings = load_settings(env={"WSFAN_CLIENT__ALLOWED_ORIGINS": raw})
        assert settings.client.allowed_origins == ("https://a.test", "https://b.test")


@pytest.mark.parametrize("value", ['"https://a.test"', "[1, 2]", '["a", 1]', "true"])
def test_list_of_strings_of_the_wrong_type_names_the_key(write_toml, value: str) -> None:
    message = _error(config_file=write_toml(f"[client]\nallowed_origins = {value}\n"), env={})
    assert message.startswith("client.allowed_origins: expected a list of strings")


def test_shipped_defaults_carry_a_labelled_development_secret() -> None:
    secret = load_settings(env={}).auth.hmac_secret
    assert "development" in secret and len(secret) >= 32
    assert "DEVELOPMENT ONLY" in DEFAULT_CONFIG.read_text()


def test_production_example_has_no_secret_in_the_file() -> None:
    auth = load_settings(PRODUCTION_EXAMPLE, env={}).auth
    assert auth.hmac_secret == ""
    assert "WSFAN_AUTH__HMAC_SECRET" in PRODUCTION_EXAMPLE.read_text()


def test_hmac_secret_comes_from_the_environment() -> None:
    env = {"WSFAN_AUTH__HMAC_SECRET": "from-the-environment-and-long-enough-to-use"}
    settings = load_settings(PRODUCTION_EXAMPLE, env=env)
    assert settings.auth.hmac_secret == "from-the-environment-and-long-enough-to-use"


def test_production_example_declares_a_private_namespace() -> None:
    private = load_settings(PRODUCTION_EXAMPLE, env={}).namespaces["private"]
    assert private.require_sub_token is True


# Rules across sections: load_settings itself refuses the combination ---------------


def test_several_workers_on_the_memory_broker_are_refused() -> None:
    env = {"WSFAN_BROKER__TYPE": "memory", "WSFAN_SERVER__WORKERS": "2"}
    with pytest.raises(ConfigError, match=r"^server\.workers: "):
        load_settings(env=env)


def test_redis_cluster_and_client_side_shards_together_are_refused() -> None:
    env = {"WSFAN_REDIS__CLUSTER": "true", "WSFAN_REDIS__SHARDS": '["redis://a:6379/0"]'}
    with pytest.raises(ConfigError, match=r"^redis\.shards: excludes redis\.cluster"):
        load_settings(env=env)


def test_client_side_shards_stand_in_for_a_redis_url() -> None:
    env = {
        "WSFAN_EMBEDDED__ENABLED": "false",
        "WSFAN_REDIS__SHARDS": '["redis://a:6379/0", "redis://b:6379/0"]',
    }
    assert load_settings(env=env).redis.shards == ("redis://a:6379/0", "redis://b:6379/0")


def test_one_worker_on_the_memory_broker_is_accepted() -> None:
    env = {"WSFAN_BROKER__TYPE": "memory", "WSFAN_SERVER__WORKERS": "1"}
    assert load_settings(env=env).server.workers == 1


def test_a_shutdown_timeout_not_above_drain_and_log_flush_is_refused() -> None:
    env = {"WSFAN_SERVER__SHUTDOWN_TIMEOUT": "5.5", "WSFAN_SERVER__DRAIN_DELAY": "0.5"}
    with pytest.raises(ConfigError, match=r"^server\.shutdown_timeout: "):
        load_settings(env=env)  # persist.shutdown_timeout is 5 s: 0.5 + 5 is not below 5.5


def test_a_shutdown_timeout_just_above_drain_and_log_flush_is_accepted() -> None:
    env = {"WSFAN_SERVER__SHUTDOWN_TIMEOUT": "5.6", "WSFAN_SERVER__DRAIN_DELAY": "0.5"}
    assert load_settings(env=env).server.shutdown_timeout == 5.6


def test_the_redis_broker_without_a_url_or_embedded_servers_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^redis\.url: "):
        load_settings(env={"WSFAN_EMBEDDED__ENABLED": "false"})


def test_shipped_defaults_keep_presence_and_join_leave_to_the_chat_namespace() -> None:
    # As Centrifugo ships: N subscribers of a channel with join/leave cost N*N pushes.
    settings = load_settings(env={})
    news, chat = settings.channel_options("news"), settings.channel_options("chat:lobby")
    assert news is not None and chat is not None
    assert (news.presence, news.join_leave) == (False, False)
    assert (chat.presence, chat.join_leave) == (True, True)
