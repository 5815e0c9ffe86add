"""Configuration: Confluent-style properties, precedence, validation messages."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, Listener, from_properties, load, parse_properties


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
