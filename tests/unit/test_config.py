"""Configuration: Confluent-style properties, precedence, validation messages."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.config import (
    ENV_PREFIX,
    KEYS,
    Config,
    ConfigError,
    Key,
    Listener,
    env_key,
    from_properties,
    load,
    parse_properties,
    render_value,
)


def test_properties_syntax_matches_java() -> None:
    text = "# comment\n! also\nbootstrap.servers = k1:9092,\\\n   k2:9092\nid: proxy-1\nempty\n"
    assert parse_properties(text) == {
        "bootstrap.servers": "k1:9092,k2:9092",
        "id": "proxy-1",
        "empty": "",
    }


def test_defaults_match_confluent() -> None:
    cfg = from_properties({})
    assert cfg.listener == Listener("http", "0.0.0.0", 8082)
    assert cfg.consumer_instance_timeout_ms == 300_000
    assert cfg.consumer_request_timeout_ms == 1_000
    assert cfg.consumer_request_max_bytes == 67_108_864
    assert cfg.fetch_min_bytes == -1
    assert cfg.session_store_url == "memory://"


def test_precedence_file_env_set(tmp_path) -> None:
    f = tmp_path / "gw.properties"
    f.write_text("bootstrap.servers=file:9092\nid=file\nconsumer.request.timeout.ms=5\n")
    env = {"EVENT_GATEWAY_ID": "env", "EVENT_GATEWAY_CONSUMER_REQUEST_TIMEOUT_MS": "7"}
    cfg = load(f, environ=env, overrides=["consumer.request.timeout.ms=9"])
    assert (cfg.bootstrap_servers, cfg.id, cfg.consumer_request_timeout_ms) == (
        "file:9092",
        "env",
        9,
    )


def test_pass_through_prefixes_and_unknown_keys() -> None:
    cfg = from_properties(
        {
            "producer.linger.ms": "5",
            "client.client.id": "x",
            "rest.servlet.initializor.classes": "y",
        }
    )
    assert cfg.producer_settings() == {"linger.ms": "5", "client.id": "x"}
    assert cfg.unknown_keys == ("rest.servlet.initializor.classes",)


def test_legacy_port_when_no_listeners() -> None:
    assert from_properties({"port": "9999"}).listener.port == 9999


@pytest.mark.parametrize(
    ("props", "key"),
    [
        ({"consumer.request.timeout.ms": "soon"}, "consumer.request.timeout.ms"),
        ({"listeners": "ftp://x:1"}, "listeners"),
        ({"fetch.min.bytes": "99999999"}, "fetch.min.bytes"),
        ({"session.store.url": "mysql://x"}, "session.store.url"),
        ({"session.store.url": "redis://r:6379/0"}, "cluster.secret"),
        ({"schema.registry.builtin": "yes"}, "schema.registry.builtin"),
    ],
)
def test_invalid_values_name_the_key(props: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        from_properties(props)


def test_self_url_for_wildcard_listener() -> None:
    assert from_properties({"listeners": "http://0.0.0.0:8090"}).self_url == "http://127.0.0.1:8090"
    assert from_properties({"node.url": "http://10.0.0.5:8082/"}).self_url == "http://10.0.0.5:8082"


def test_legacy_host_name_and_invalid_port() -> None:
    assert from_properties({"host.name": "10.0.0.1"}).listener == Listener("http", "10.0.0.1", 8082)
    with pytest.raises(ConfigError, match=r"^port: "):
        from_properties({"port": "0"})
    # Only read without `listeners`, so a bad legacy value is then harmless, as before.
    assert from_properties({"listeners": "http://h:1", "port": "x"}).listener.port == 1


def test_ignored_key_is_accepted_not_unknown() -> None:
    cfg = from_properties({"schema.registry.basic.auth.credentials.source": "USER_INFO"})
    assert cfg.unknown_keys == ()


# --- the declarations: one per key, everything else derived ----------------------------------

NOT_KEYS = {"producer", "consumer", "admin", "client", "unknown_keys"}


def test_every_config_field_is_declared_with_its_key() -> None:
    declared = {k.attr for k in KEYS.values() if k.attr is not None}
    fields = {f.name for f in dataclasses.fields(Config)}
    assert declared == fields - NOT_KEYS


@pytest.mark.parametrize("key", list(KEYS.values()), ids=lambda k: k.name)
def test_declared_default_is_the_default_and_renders_back(key: Key) -> None:
    if key.attr is not None:
        assert getattr(Config(), key.attr) == key.default
        assert getattr(from_properties({}), key.attr) == key.default
    # What the README shows as the default parses back to it.
    assert key.parse(render_value(key.default)) == key.default


@pytest.mark.parametrize("key", list(KEYS.values()), ids=lambda k: k.name)
def test_every_key_can_come_from_the_environment(key: Key) -> None:
    assert env_key(ENV_PREFIX + key.name.upper().replace(".", "_")) == key.name


def test_environment_sets_a_declared_key() -> None:
    cfg = load(environ={"EVENT_GATEWAY_SCHEMA_REGISTRY_TOPIC": "_gw_schemas"})
    assert cfg.schema_registry_topic == "_gw_schemas"


@pytest.mark.parametrize(
    ("props", "key"),
    [
        ({"node.lease.ms": "999"}, "node.lease.ms"),
        ({"consumer.iterator.backoff.ms": "-1"}, "consumer.iterator.backoff.ms"),
        ({"node.url": "redis://x"}, "node.url"),
        ({"advertised.listeners": "http://[::1"}, "advertised.listeners"),
    ],
)
def test_more_invalid_values_name_the_key(props: dict, key: str) -> None:
    with pytest.raises(ConfigError, match="^" + key.replace(".", r"\.") + ": "):
        from_properties(props)
