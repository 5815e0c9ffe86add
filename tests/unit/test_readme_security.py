"""The README's complete security configuration is one the gateway accepts, key by key.

Its files (certificates, users, rules) are the operator's, so this checks what can be checked
without them: every key exists, every value parses, the cross-key rules hold (https needs a
certificate, MTLS needs client certificates, BASIC a users file, BEARER a key source), and the
Kafka security keys translate into aiokafka arguments without leaking the password.
"""

from __future__ import annotations

import re
from pathlib import Path

from gateway.config import Listener, from_properties, parse_properties

README = Path(__file__).resolve().parents[2] / "README.md"


def security_example() -> str:
    text = README.read_text()
    section = text[text.index("## Security") :]
    match = re.search(r"```properties\n(.*?)```", section, re.S)
    assert match, "the Security section has no ```properties example"
    return match.group(1)


def test_the_complete_security_example_is_accepted() -> None:
    props = parse_properties(security_example())
    config = from_properties(props)
    assert config.unknown_keys == ()
    assert config.listener == Listener("https", "0.0.0.0", 8443)
    assert config.authentication_method == ("BASIC", "BEARER", "MTLS")
    assert config.authorization_rules_file == "/etc/gateway/rules.json"
    assert config.quota_requests_per_second > 0
    assert config.session_store_url.startswith("rediss://")
    assert config.log_format == "json"


def test_its_kafka_identity_reaches_the_clients(tmp_path: Path) -> None:
    from aiokafka import AIOKafkaProducer

    from gateway.kafka import kafka_kwargs
    from tests.support.certs import TestCA

    # The Kafka CA file is read when the clients are built: stand a real one in for it.
    ca = TestCA().write(tmp_path / "kafka-ca.pem")
    text = security_example().replace("/etc/gateway/tls/kafka-ca.pem", str(ca))
    config = from_properties(parse_properties(text))
    kwargs = kafka_kwargs(config.producer_settings(), AIOKafkaProducer, source="producer")
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kwargs["sasl_plain_username"] == "event-gateway"
    assert kwargs["sasl_plain_password"] == "change-me"
    assert kwargs["ssl_context"] is not None
