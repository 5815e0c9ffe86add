"""Kafka security settings -> aiokafka arguments, and the pass-through client pool's bounds."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer

from gateway.config import ConfigError, from_properties
from gateway.kafka import kafka_kwargs
from gateway.kafka_pool import PrincipalKafka
from gateway.kafka_security import StaticToken, parse_jaas, security_kwargs
from gateway.security.principal import Principal

PLAIN = 'org.apache.kafka.common.security.plain.PlainLoginModule required username="u" password="p\\"w;x";'
SCRAM = (
    'org.apache.kafka.common.security.scram.ScramLoginModule required username="s" password="t";'
)


def test_jaas_line_is_parsed_with_quotes_and_escapes() -> None:
    module, options = parse_jaas(PLAIN, key="k")
    assert module.endswith("PlainLoginModule")
    assert options == {"username": "u", "password": 'p"w;x'}


def test_sasl_settings_reach_every_client_kind() -> None:
    settings = {"security.protocol": "SASL_PLAINTEXT", "sasl.jaas.config": PLAIN}
    out = kafka_kwargs(settings, AIOKafkaConsumer, source="consumer")
    assert out == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "PLAIN",  # inferred from the login module
        "sasl_plain_username": "u",
        "sasl_plain_password": 'p"w;x',
    }


def test_scram_needs_its_mechanism_named() -> None:
    with pytest.raises(ConfigError, match=r"sasl\.mechanism"):
        security_kwargs({"security.protocol": "SASL_SSL", "sasl.jaas.config": SCRAM}, source="c")
    out = security_kwargs(
        {
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.jaas.config": SCRAM,
        },
        source="c",
    )
    assert out["sasl_mechanism"] == "SCRAM-SHA-512" and out["sasl_plain_username"] == "s"


def test_a_bad_jaas_line_is_reported_without_its_secret() -> None:
    bad = 'org.apache.kafka.common.security.plain.PlainLoginModule required username="u" password="hunter2'
    with pytest.raises(ConfigError) as info:
        security_kwargs(
            {"security.protocol": "SASL_PLAINTEXT", "sasl.jaas.config": bad}, source="c"
        )
    assert "hunter2" not in str(info.value)


def test_jks_is_refused_with_a_way_out(tmp_path: object) -> None:
    settings = {
        "security.protocol": "SSL",
        "ssl.truststore.location": "/nonexistent.jks",
        "ssl.truststore.type": "JKS",
    }
    with pytest.raises(ConfigError, match="PEM"):
        security_kwargs(settings, source="client")


def test_ssl_without_files_uses_system_cas_and_can_skip_host_names() -> None:
    out = security_kwargs(
        {"security.protocol": "SSL", "ssl.endpoint.identification.algorithm": ""}, source="c"
    )
    assert out["security_protocol"] == "SSL"
    assert out["ssl_context"].check_hostname is False


def _pool(**props: str) -> PrincipalKafka:
    cfg = from_properties(
        {
            "client.security.protocol": "SASL_PLAINTEXT",
            "client.sasl.jaas.config": PLAIN,
            "kafka.credentials": "principal",
            **props,
        }
    )
    return PrincipalKafka(cfg)


def test_pass_through_needs_a_sasl_listener() -> None:
    with pytest.raises(ConfigError, match=r"kafka\.credentials"):
        PrincipalKafka(from_properties({"kafka.credentials": "principal"}))


async def test_pool_is_bounded_lru_and_never_closes_busy_clients() -> None:
    pool = _pool(**{"kafka.principal.clients.max": "2"})
    a = pool.acquire(Principal("a", method="basic", secret="pa"))
    b = pool.acquire(Principal("b", method="basic", secret="pb"))
    with pytest.raises(Exception, match=r"kafka\.principal\.clients\.max"):
        pool.acquire(Principal("c", method="basic", secret="pc"))  # both busy: 503
    pool.release(a)
    pool.release(b)
    again = pool.acquire(Principal("a", method="basic", secret="pa"))
    assert again is a  # reused, and now the most recently used
    pool.release(again)
    pool.acquire(Principal("c", method="basic", secret="pc"))  # evicts b, the LRU idle one
    assert len(pool) == 2
    assert pool.acquire(Principal("b", method="basic", secret="pb")) is not b  # evicts a
    await pool.stop()


async def test_a_new_password_is_a_new_identity_and_tokens_renew_in_place() -> None:
    pool = _pool()
    first = pool.acquire(Principal("a", method="basic", secret="old"))
    assert pool.acquire(Principal("a", method="basic", secret="new")) is not first
    t1 = pool.acquire(Principal("j", method="bearer", secret="token-1"))
    t2 = pool.acquire(Principal("j", method="bearer", secret="token-2"))
    assert t1 is t2
    assert isinstance(t2.token, StaticToken) and await t2.token.token() == "token-2"
    await pool.stop()


async def test_idle_clients_expire() -> None:
    pool = _pool(**{"kafka.principal.clients.idle.ms": "1000"})
    entry = pool.acquire(Principal("a", method="basic", secret="p"))
    assert pool.expire(now=entry.last_used + 5) == 0  # busy: kept
    pool.release(entry)
    assert pool.expire(now=entry.last_used + 5) == 1
    assert len(pool) == 0
    await pool.stop()


def test_callers_without_a_secret_are_not_passed_through() -> None:
    from gateway.errors import GatewayError

    with pytest.raises(GatewayError) as info:
        _pool().credentials(Principal("cn=x", method="mtls"))
    assert info.value.status == 401
