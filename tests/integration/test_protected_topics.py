"""The schema registry's topic and Kafka's ``__*`` topics are not client topics: producing to
them, subscribing to them and assigning them through the REST API is refused with 403/40301
before anything is sent, unless ``topics.internal.allowed`` names them. Metadata stays open.

Checked on real Kafka by what the topics hold (their end offsets), not by the answers alone.
"""

from __future__ import annotations

from typing import Any
from unittest.mock import ANY

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from gateway.config import ConfigError, from_properties
from tests.harness.api import MakeGatewayFn, NewTopicFn
from tests.harness.topics import partitions_of, unique_topic_name, wait_topic_ready
from tests.support.v2 import BINARY, JSON, V2

REGISTRY_TOPIC = "_schemas"  # the default schema.registry.topic
AVRO = "application/vnd.kafka.avro.v2+json"
_TOPIC_EXISTS = 36
NOOP_KEY = b'{"keytype":"NOOP","magic":0}'  # a registry record type every registry ignores


def forbidden(status: int, body: Any) -> bool:
    assert isinstance(body, dict) and set(body) == {"error_code", "message"}, body
    return (status, body["error_code"]) == (403, 40301)


async def ensure_registry_topic(admin: AIOKafkaAdminClient) -> None:
    """``_schemas`` as the registry creates it; kept at teardown, other tests' registries
    use it too."""
    resp = await admin.create_topics(
        [NewTopic(REGISTRY_TOPIC, 1, 1, topic_configs={"cleanup.policy": "compact"})]
    )
    for err in resp.to_object()["topic_errors"]:
        assert err["error_code"] in (0, _TOPIC_EXISTS), err
    await wait_topic_ready(admin, REGISTRY_TOPIC, 1)


async def end_offsets(bootstrap: str, admin: AIOKafkaAdminClient, topic: str) -> dict[int, int]:
    tps = [TopicPartition(topic, p) for p in await partitions_of(admin, topic)]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        return {tp.partition: off for tp, off in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()


def produce_attempts(topic: str) -> list[tuple[str, str, dict[str, Any]]]:
    records = {"records": [{"key": "eA==", "value": "eQ=="}]}
    return [
        (f"/topics/{topic}", BINARY, records),
        (f"/topics/{topic}/partitions/0", BINARY, records),
        (f"/topics/{topic}", JSON, {"records": [{"value": {"keytype": "NOOP"}}]}),
    ]


async def test_produce_to_the_registry_topic_is_refused_and_writes_nothing(
    make_gateway: MakeGatewayFn, kafka_admin: AIOKafkaAdminClient, kafka_bootstrap: str
) -> None:
    await ensure_registry_topic(kafka_admin)
    # The built-in registry is off here: the topic is protected all the same.
    api = V2(await make_gateway())
    before = await end_offsets(kafka_bootstrap, kafka_admin, REGISTRY_TOPIC)
    for path, ctype, body in produce_attempts(REGISTRY_TOPIC):
        status, got, _ = await api.call("POST", path, body, ctype=ctype)
        assert forbidden(status, got), (path, ctype, status, got)
        assert REGISTRY_TOPIC in got["message"]
    assert await end_offsets(kafka_bootstrap, kafka_admin, REGISTRY_TOPIC) == before
    # Metadata is not content: it stays open.
    status, got, _ = await api.call("GET", f"/topics/{REGISTRY_TOPIC}")
    assert status == 200 and got["name"] == REGISTRY_TOPIC


async def test_the_configured_registry_topic_is_protected_before_any_schema_is_registered(
    make_gateway: MakeGatewayFn,
    new_topic: NewTopicFn,
    kafka_admin: AIOKafkaAdminClient,
    kafka_bootstrap: str,
) -> None:
    topic = await new_topic(1, unique_topic_name("_reg-"), {"cleanup.policy": "compact"})
    client = await make_gateway({"schema.registry.builtin": "true", "schema.registry.topic": topic})
    api = V2(client)
    before = await end_offsets(kafka_bootstrap, kafka_admin, topic)
    body = {"value_schema": '"string"', "records": [{"value": "hello"}]}
    status, got, _ = await api.call("POST", f"/topics/{topic}", body, ctype=AVRO)
    assert forbidden(status, got)
    # Refused before the value schema was registered as "<topic>-value".
    async with client.get("/subjects") as resp:
        assert (resp.status, await resp.json(content_type=None)) == (200, [])
    assert await end_offsets(kafka_bootstrap, kafka_admin, topic) == before


async def test_kafka_internal_topics_are_refused(make_gateway: MakeGatewayFn) -> None:
    api = V2(await make_gateway())
    for topic in ("__consumer_offsets", "__transaction_state", "__anything"):
        for path, ctype, body in produce_attempts(topic):
            status, got, _ = await api.call("POST", path, body, ctype=ctype)
            assert forbidden(status, got), (path, status, got)


async def test_subscribe_and_assign_are_refused(
    make_gateway: MakeGatewayFn, new_topic: NewTopicFn, kafka_admin: AIOKafkaAdminClient
) -> None:
    await ensure_registry_topic(kafka_admin)
    ok = await new_topic()
    api = V2(await make_gateway())
    group = unique_topic_name("g-")
    status, _ = await api.create(group, name="c", format="binary")
    assert status == 200
    inst = api.inst(group, "c")
    for topics in ([REGISTRY_TOPIC], [ok, "__consumer_offsets"], ["__transaction_state"]):
        status, got, _ = await api.call("POST", inst + "/subscription", {"topics": topics})
        assert forbidden(status, got), (topics, status, got)
        assert await api.call("GET", inst + "/subscription") == (200, {"topics": []}, ANY)
    for topic in (REGISTRY_TOPIC, "__consumer_offsets"):
        parts = {"partitions": [{"topic": ok, "partition": 0}, {"topic": topic, "partition": 0}]}
        status, got, _ = await api.call("POST", inst + "/assignments", parts)
        assert forbidden(status, got), (topic, status, got)
        assert await api.call("GET", inst + "/assignments") == (200, {"partitions": []}, ANY)
    # The same instance takes an ordinary topic as usual.
    assert await api.subscribe(group, "c", [ok]) == 204
    assert await api.call("GET", inst + "/subscription") == (200, {"topics": [ok]}, ANY)
    assert await api.delete(group, "c") == 204


async def test_a_pattern_never_matches_protected_topics(
    make_gateway: MakeGatewayFn, new_topic: NewTopicFn, producer: AIOKafkaProducer
) -> None:
    suffix = unique_topic_name("")
    ok = await new_topic(1, f"pt-{suffix}")
    registry = await new_topic(1, f"_pt-{suffix}", {"cleanup.policy": "compact"})
    for topic in (ok, registry):
        await producer.send_and_wait(topic, key=NOOP_KEY, value=b"{}", partition=0)
    api = V2(await make_gateway({"schema.registry.topic": registry}))
    group = unique_topic_name("g-")
    created = await api.create(
        group, name="p", format="binary", **{"auto.offset.reset": "earliest"}
    )
    assert created[0] == 200
    inst = api.inst(group, "p")
    pattern = {"topic_pattern": f"_?pt-{suffix}"}
    status, _, _ = await api.call("POST", inst + "/subscription", pattern)
    assert status == 204
    got = await api.drain(group, "p", 2, deadline_reads=15, timeout=1000)
    assert {r["topic"] for r in got} == {ok}
    assert await api.call("GET", inst + "/subscription") == (200, {"topics": [ok]}, ANY)


async def test_an_operator_may_allow_them(
    make_gateway: MakeGatewayFn, kafka_admin: AIOKafkaAdminClient, kafka_bootstrap: str
) -> None:
    await ensure_registry_topic(kafka_admin)
    api = V2(await make_gateway({"topics.internal.allowed": REGISTRY_TOPIC}))
    before = await end_offsets(kafka_bootstrap, kafka_admin, REGISTRY_TOPIC)
    # A NOOP record: registries reading this shared topic ignore it.
    body = {"records": [{"key": orjson.loads(NOOP_KEY), "value": {}}]}
    status, got, _ = await api.call("POST", f"/topics/{REGISTRY_TOPIC}", body, ctype=JSON)
    assert status == 200 and got["offsets"][0]["offset"] == before[0], got
    assert await end_offsets(kafka_bootstrap, kafka_admin, REGISTRY_TOPIC) == {0: before[0] + 1}
    # Only what is listed: Kafka's own topics stay refused.
    status, got, _ = await api.call("POST", "/topics/__consumer_offsets", body, ctype=JSON)
    assert forbidden(status, got)

    # "*": every protected topic, for consumers too.
    api = V2(await make_gateway({"topics.internal.allowed": "*"}))
    group = unique_topic_name("g-")
    assert (await api.create(group, name="a", format="binary"))[0] == 200
    inst = api.inst(group, "a")
    parts = {"partitions": [{"topic": REGISTRY_TOPIC, "partition": 0}]}
    assert (await api.call("POST", inst + "/assignments", parts))[0] == 204
    status, got, _ = await api.call(
        "POST",
        inst + "/positions",
        {"offsets": [{"topic": REGISTRY_TOPIC, "partition": 0, "offset": before[0]}]},
    )
    assert status == 204, got
    records = await api.drain(group, "a", 1, deadline_reads=10, timeout=1000)
    assert records and records[0]["offset"] == before[0]
    assert await api.delete(group, "a") == 204


def test_the_allow_list_is_names_not_a_boolean() -> None:
    cfg = from_properties({"topics.internal.allowed": " __consumer_offsets, _schemas ,"})
    assert cfg.topics_internal_allowed == ("__consumer_offsets", "_schemas")
    assert from_properties({}).topics_internal_allowed == ()
    with pytest.raises(ConfigError, match=r"topics\.internal\.allowed"):
        from_properties({"topics.internal.allowed": "true"})
