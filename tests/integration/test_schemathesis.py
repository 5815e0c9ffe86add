"""schemathesis against a live gateway on real Kafka and Redis, driven by gateway/openapi/openapi.json.

Every operation the gateway serves (the document it serves lists exactly those, see
test_openapi.py) is called with generated requests, valid and invalid, and every response must
keep the document's promises:

* ``not_a_server_error``: a client mistake is a 4xx, never a 5xx (and with Kafka and Redis up,
  nothing else is a 5xx either);
* ``status_code_conformance``, ``content_type_conformance``, ``response_schema_conformance``
  (including the Confluent error shape), ``response_headers_conformance`` (``Retry-After`` on a
  503): the document tells the truth;
* ``unsupported_method``: a method the document does not list is a 405;
* no hang: every request has a timeout (``REQUEST_TIMEOUT_S``) well above the longest wait the
  gateway is configured for here, and a timeout fails the test.

``negative_data_rejection`` and ``positive_data_acceptance`` are not run: the gateway coerces
scalars the way Confluent's Jackson does (``"5"`` for an int, ``false`` for a string), so a
request the schema calls invalid is often rightly accepted; and a valid request for an unknown
instance is rightly a 404.

The gateway is ``python -m gateway.cli serve`` on a free port, a separate process: the fuzzer's
client is synchronous and must not share an event loop with the server it waits on. A topic,
consumer instances (one binary, one json) and a registry subject are made up front, and the
fuzzer draws names from them often (``dictionaries``/``parameters`` below), so instance, topic
and registry operations are exercised past their 404s; each instance is reset before a case
that targets it, so a case does not depend on the cases before it (Hypothesis replays a failing
case to shrink it). The stateful test follows the document's links (create a consumer, then
use its instance) for sequences the per-operation run cannot reach.

The v3 operations get the real cluster id, broker id, topic, and a consumer group with committed
offsets and a live member (an aiokafka consumer polling in a thread, :class:`KafkaSide`), so they
get past their 404s too. Their destructive cases are pointed at throw-away names before they are
sent (:meth:`LiveGateway.guard_v3`): a topic delete deletes a topic made for that case, topic
config writes and partition increases hit a scratch topic, a created topic gets a fresh name (and
is only validated when it asks for many partitions), broker config writes name a config no broker
has, and ACL writes and deletes name a scratch principal and resource. The broker is shared with
every other test, so nothing the fuzzer does may change what they see.

Bounded: a fixed seed, ``MAX_EXAMPLES`` per operation in the fuzzing phase, short Kafka waits.
The counts (operations, cases, failures) are printed at the end of the run
(tests/integration/conftest.py) and recorded as test properties.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import hashlib
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis
import hypothesis.errors
import pytest
import requests
import schemathesis
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from schemathesis import BaseSchema, Case

from gateway.security.basic import add_user
from tests.harness import process, topics
from tests.harness.cluster import child_env, properties_text
from tests.harness.ports import free_port
from tests.integration.conftest import FUZZ_SUMMARY

REPO = Path(__file__).resolve().parents[2]

SEED = int(os.environ.get("EVENT_GATEWAY_FUZZ_SEED", "20240610"))
MAX_EXAMPLES = int(os.environ.get("EVENT_GATEWAY_FUZZ_EXAMPLES", "25"))
STATEFUL_EXAMPLES = int(os.environ.get("EVENT_GATEWAY_FUZZ_STATEFUL", "25"))
STATEFUL_BUDGET_S = 60.0
ONLY_TAG = os.environ.get("EVENT_GATEWAY_FUZZ_TAG")
# Longest legitimate wait here: a seek right after subscribing (5 s), Kafka calls (5 s).
REQUEST_TIMEOUT_S = 15.0

V2 = "application/vnd.kafka.v2+json"
BINARY = "application/vnd.kafka.binary.v2+json"
JSON_V2 = "application/vnd.kafka.json.v2+json"
AVRO = "application/vnd.kafka.avro.v2+json"
SR = "application/vnd.schemaregistry.v1+json"
JSON = "application/json"
# What real clients send; the first is what most send.
ACCEPTS = ["*/*", JSON, V2, BINARY, JSON_V2, AVRO, SR, "text/plain"]

AVRO_RECORD = (
    '{"type":"record","name":"Fuzz","fields":[{"name":"id","type":"int"},'
    '{"name":"note","type":["null","string"],"default":null}]}'
)
SCHEMAS = ['"string"', '"int"', AVRO_RECORD, '{"type":"array","items":"long"}']
# Values that broke gateways before (issue 10): Java int/long edges, names that get
# percent-encoded or are reserved, patterns that backtrack exponentially in a naive engine.
EDGE_INTS = [2**31 - 1, 2**31, -(2**31) - 1, 2**63 - 1, 2**63, -(2**63) - 1, 10**30, -1, 0]
EDGE_NUMBERS = [1.7976931348623157e308, -1.7976931348623157e308, 1e300, 9.3e15, -0.5, 5e-324]
REDOS = ["([\\w.-]|[\\w.-])*!", "(a+)+$", "(.*a){20}", "fz-.*", ".*"]
# v3: config names that exist (reads only; writes are pointed at SCRATCH_CONFIG), and the
# names every ACL write is pointed at.
CONFIG_NAMES = ["cleanup.policy", "retention.ms", "compression.type", "log.retention.hours"]
CONFIG_VALUES = ["delete", "compact", "86400000", "gzip", "producer"]  # valid for some names
SCRATCH_CONFIG = "fz.scratch.config"
SCRATCH_ACL_NAME = "fz-acl-scratch"
SCRATCH_PRINCIPAL = "User:fz-acl-scratch"
# A created topic or a partition increase asking for more is bounded (validated only, or
# clamped): the session broker is shared, and 10 000 partitions would slow every other test.
# Above Kafka's own limit (10 000 records per admin operation) Kafka refuses the request by
# itself, so such counts are sent as generated: how the gateway answers that refusal is tested.
MAX_NEW_PARTITIONS = 8
KAFKA_MAX_RECORDS_PER_OP = 10_000


class KafkaSide:
    """An event loop in a thread for the fixtures' own Kafka clients: an admin client, and a
    consumer-group member that keeps polling (so the v3 group has a member, a coordinator and
    committed offsets for the whole run), next to the fuzzer's synchronous client."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.member: AIOKafkaConsumer | None = None
        self.poller: asyncio.Task[None] | None = None
        self.admin: AIOKafkaAdminClient = self.run(self._admin())

    async def _admin(self) -> AIOKafkaAdminClient:
        # aiokafka clients bind to the running loop when made: made on the thread's loop.
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=10_000)
        await admin.start()
        return admin

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def join_group(self, group: str, topic: str, committed: dict[int, int]) -> str:
        """A member of ``group`` on ``topic`` that has committed ``committed``; its member id."""
        self.member = AIOKafkaConsumer(
            topic,
            bootstrap_servers=self.bootstrap,
            group_id=group,
            client_id="fz-member",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_interval_ms=3_600_000,
        )
        await self.member.start()
        deadline = time.monotonic() + 30
        while not self.member.assignment():
            assert time.monotonic() < deadline, "fuzz member got no assignment in 30 s"
            await self.member.getmany(timeout_ms=200)
        await self.member.commit({TopicPartition(topic, p): o for p, o in committed.items()})
        self.poller = asyncio.create_task(self._poll())
        (described,) = await self.admin.describe_consumer_groups([group])
        [member] = described.to_object()["groups"][0]["members"]
        return str(member["member_id"])

    async def _poll(self) -> None:
        assert self.member is not None
        while True:
            await self.member.getmany(timeout_ms=500)

    async def _close(self) -> None:
        if self.poller is not None:
            self.poller.cancel()
        if self.member is not None:
            await self.member.stop()
        await self.admin.close()

    def close(self) -> None:
        try:
            self.run(self._close(), timeout=30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


def _path_params(template: str) -> dict[str, str]:
    """``{segment before: parameter name}`` of a path template, e.g. ``topics -> topic``."""
    parts = template.split("/")
    return {
        parts[i - 1]: part[1:-1]
        for i, part in enumerate(parts)
        if i and part.startswith("{") and part.endswith("}")
    }


@dataclass
class LiveGateway:
    """One gateway process and what was made on it for the fuzzer to find."""

    url: str
    log: Path
    topic: str
    group: str
    instances: dict[str, str]  # name -> format
    subject: str
    schema_id: int
    registry_topic: str
    kafka: KafkaSide
    cluster_id: str = ""
    broker_id: int = 1
    v3_group: str = ""
    member_id: str = ""
    scratch_topic: str = ""
    session: requests.Session = field(default_factory=requests.Session)
    # Topics made or named for the case being run, deleted after it.
    throwaway: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.session.headers["Authorization"] = AUTHORIZATION

    def call(self, method: str, path: str, body: Any = None) -> requests.Response:
        headers = {"Content-Type": V2} if body is not None else {}
        return self.session.request(
            method, self.url + path, json=body, headers=headers, timeout=REQUEST_TIMEOUT_S
        )

    def expect(
        self, status: int | tuple[int, ...], method: str, path: str, body: Any = None
    ) -> None:
        wanted = (status,) if isinstance(status, int) else status
        response = self.call(method, path, body)
        assert response.status_code in wanted, (
            f"setup {method} {path} {body!r}: {response.status_code} {response.text[:300]}\n"
            f"--- gateway log ---\n{process.tail(self.log)}"
        )

    def create_instance(self, name: str) -> None:
        self.expect(
            (200, 409),
            "POST",
            f"/consumers/{self.group}",
            {
                "name": name,
                "format": self.instances[name],
                "auto.offset.reset": "earliest",
                "auto.commit.enable": "false",
                "consumer.request.timeout.ms": 300,
            },
        )

    def reset(self, case: Case) -> None:
        """Put a pre-made instance the case targets back in its known state: it exists and is
        assigned both partitions (or, for a subscribe, has neither subscription nor assignment).
        A destructive v3 case is pointed at throw-away names first, and a stream is bounded."""
        self.guard_v3(case)
        bound_stream(case)
        params = case.path_parameters or {}
        name = params.get("instance")
        if params.get("group") != self.group or name not in self.instances:
            return
        base = f"/consumers/{self.group}/instances/{name}"
        self.create_instance(name)
        self.expect(204, "DELETE", base + "/subscription")
        if not (case.method.upper() == "POST" and case.path.endswith("/subscription")):
            partitions = [{"topic": self.topic, "partition": p} for p in (0, 1)]
            self.expect(204, "POST", base + "/assignments", {"partitions": partitions})

    def guard_v3(self, case: Case) -> None:
        """Point a destructive v3 case at throw-away names (see the module docstring). Reads
        and produce (which only appends) are sent as generated."""
        template = case.operation.path
        method = case.method.upper()
        if not template.startswith("/v3/") or method in ("GET", "HEAD"):
            return
        if template.endswith(("/records", "/records:batch")):
            return
        names = _path_params(template)
        params = case.path_parameters if case.path_parameters is not None else {}
        body = case.body
        if template.endswith(("/acls", "/acls:batch")):
            for entry in _entries(body) if "acls:" in template else [body]:
                if isinstance(entry, dict):
                    for key, value in (
                        ("resource_name", SCRATCH_ACL_NAME),
                        ("principal", SCRATCH_PRINCIPAL),
                    ):
                        if key in entry:
                            entry[key] = value
            if method == "DELETE":
                # An absent filter matches every ACL: always narrowed to the scratch ones.
                query = dict(case.query or {})
                query.update(resource_name=SCRATCH_ACL_NAME, principal=SCRATCH_PRINCIPAL)
                case.query = query
            return
        if "/brokers/" in template or "/broker-configs" in template:
            if "name" in params:
                params["name"] = SCRATCH_CONFIG
            self._scratch_config_names(body)
            return
        if template.endswith("/topics") and method == "POST":
            if isinstance(body, dict):
                if isinstance(body.get("topic_name"), str):
                    body["topic_name"] = topics.unique_topic_name("fz-new-")
                    self.throwaway.append(body["topic_name"])
                if _too_many(body.get("partitions_count")) or _too_many(
                    len(body.get("replicas_assignments") or ())
                ):
                    body["validate_only"] = True
            return
        topic = names.get("topics")
        if topic is None:
            return
        if params.get(topic) == "-" and template.endswith("/configs:alter"):
            # topics/-/configs:alter: the topics are named in the body.
            for entry in _entries(body):
                if isinstance(entry, dict) and "topic_name" in entry:
                    entry["topic_name"] = self.scratch_topic
            return
        if method == "DELETE" and template.endswith("/{" + topic + "}"):
            params[topic] = self.kafka.run(
                topics.create_topic(self.kafka.admin, 1, topics.unique_topic_name("fz-del-"))
            )
            self.throwaway.append(params[topic])
        else:
            params[topic] = self.scratch_topic
            if method == "PATCH" and isinstance(body, dict):
                if _too_many(body.get("partitions_count")):
                    body["partitions_count"] = MAX_NEW_PARTITIONS
        case.path_parameters = params

    def _scratch_config_names(self, body: Any) -> None:
        for entry in _entries(body):
            if isinstance(entry, dict) and "name" in entry:
                entry["name"] = SCRATCH_CONFIG

    def after(self) -> None:
        """Delete what the case made (best effort: a name it never created is simply absent)."""
        made, self.throwaway[:] = list(self.throwaway), []
        if made:
            with contextlib.suppress(Exception):  # unknown topics are the common case
                self.kafka.run(self.kafka.admin.delete_topics(made), timeout=30)


# A topic stream (GET /topics/{topic}/events) is open until the client leaves; the fuzzer's
# client reads a response to its end, so every stream it opens is given an end.
STREAM_DURATION_MS = 300


def bound_stream(case: Case) -> None:
    """A generated ``duration_ms`` that is valid is lowered to :data:`STREAM_DURATION_MS`, an
    absent one set to it; an invalid one is sent as generated (it is answered 400 at once)."""
    if case.operation.path != "/topics/{topic}/events":
        return
    query = dict(case.query or {})
    duration = query.get("duration_ms")
    if duration is None or (
        isinstance(duration, int) and not isinstance(duration, bool) and duration >= 1
    ):
        query["duration_ms"] = min(duration or STREAM_DURATION_MS, STREAM_DURATION_MS)
        case.query = query


def _entries(body: Any) -> list[Any]:
    """A generated body's ``data`` list, or nothing when it has none (or something else)."""
    data = body.get("data") if isinstance(body, dict) else None
    return data if isinstance(data, list) else []


def _too_many(count: Any) -> bool:
    """More partitions than a fuzz case may make, yet few enough for Kafka to make them."""
    if not isinstance(count, int) or isinstance(count, bool):
        return False
    return MAX_NEW_PARTITIONS < count <= KAFKA_MAX_RECORDS_PER_OP


@dataclass
class Counts:
    """What the fuzzer did, per operation: calls made and calls whose checks failed (a failing
    case is counted again each time Hypothesis replays it while shrinking)."""

    calls: collections.Counter[str] = field(default_factory=collections.Counter)
    failures: collections.Counter[str] = field(default_factory=collections.Counter)
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    successes: collections.Counter[str] = field(default_factory=collections.Counter)  # 2xx
    scenarios: int = 0
    steps: int = 0
    step_failures: int = 0
    flaky_restarts: int = 0
    corpus: list[tuple[str, bool]] = field(default_factory=list)  # (title, passed)


# Every fuzzed operation is an authenticated one (issue 11): BASIC with a user the real
# users-file code wrote. Refusals (401) are covered in tests/integration/test_authentication.py.
FUZZ_USER = ("fuzz", "fuzz-password")
AUTHORIZATION = "Basic " + base64.b64encode(":".join(FUZZ_USER).encode()).decode()


def _start_gateway(
    kafka_bootstrap: str, redis_url: str, registry_topic: str, workdir: Path
) -> tuple[str, Path, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    users = workdir / "users.txt"
    add_user(users, FUZZ_USER[0], FUZZ_USER[1], [])
    props = {
        "authentication.method": "BASIC",
        "authentication.basic.users.file": str(users),
        "bootstrap.servers": kafka_bootstrap,
        "listeners": url,
        "session.store.url": redis_url,
        "cluster.secret": uuid.uuid4().hex,
        "schema.registry.builtin": "true",
        # Its own registry topic: the session broker is shared with other tests.
        "schema.registry.topic": registry_topic,
        "kafka.timeout.ms": "5000",
        "producer.max.block.ms": "1000",
        "consumer.request.timeout.ms": "300",
        # A created instance may ask for any wait up to this; REQUEST_TIMEOUT_S must exceed it,
        # or a read honouring a generated 299999 ms would look like a hang.
        "consumer.request.timeout.max.ms": "3000",
    }
    config = workdir / "gateway.properties"
    config.write_text(properties_text(props))
    log = workdir / "gateway.log"
    proc = process.spawn(
        [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)],
        log,
        cwd=REPO,
        env=child_env(),
    )
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            pytest.fail(f"gateway exited with {proc.returncode}:\n{process.tail(log)}")
        try:
            if requests.get(url + "/readyz", timeout=1).status_code == 200:
                return url, log, proc
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            process.stop(proc, grace=5)
            pytest.fail(f"gateway not ready within 60 s:\n{process.tail(log)}")
        time.sleep(0.2)


async def _make_topic(kafka_bootstrap: str) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        return await topics.create_topic(admin, partitions=2, name=topics.unique_topic_name("fz-"))
    finally:
        await admin.close()


@pytest.fixture(scope="module")
def live_gateway(
    kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveGateway]:
    registry_topic = f"_schemas-fuzz-{uuid.uuid4().hex[:8]}"
    url, log, proc = _start_gateway(
        kafka_bootstrap, redis_url, registry_topic, tmp_path_factory.mktemp("fuzz")
    )
    kafka = KafkaSide(kafka_bootstrap)
    scratch: list[str] = []
    try:
        topic = asyncio.run(_make_topic(kafka_bootstrap))
        described = kafka.run(kafka.admin.describe_cluster())
        scratch.append(
            kafka.run(topics.create_topic(kafka.admin, 2, topics.unique_topic_name("fz-scratch-")))
        )
        live = LiveGateway(
            url=url,
            log=log,
            topic=topic,
            group=f"fuzz-{uuid.uuid4().hex[:6]}",
            instances={"fz-binary": "binary", "fz-json": "json"},
            subject=f"{topic}-value",
            schema_id=0,
            registry_topic=registry_topic,
            kafka=kafka,
            cluster_id=str(described["cluster_id"]),
            broker_id=int(described["brokers"][0]["node_id"]),
            v3_group=f"fuzz-v3-{uuid.uuid4().hex[:6]}",
            scratch_topic=scratch[0],
        )
        # Records for reads to return: binary ones (base64 "hello") and JSON ones.
        for ctype, value in ((BINARY, "aGVsbG8="), (JSON_V2, {"n": 1})):
            response = live.session.post(
                f"{url}/topics/{topic}",
                json={"records": [{"value": value, "partition": p} for p in (0, 1)]},
                headers={"Content-Type": ctype},
                timeout=REQUEST_TIMEOUT_S,
            )
            assert response.status_code == 200, response.text
            assert all(o["error_code"] is None for o in response.json()["offsets"])
        registered = live.session.post(
            f"{url}/subjects/{live.subject}/versions",
            json={"schema": AVRO_RECORD},
            headers={"Content-Type": SR},
            timeout=REQUEST_TIMEOUT_S,
        )
        assert registered.status_code == 200, registered.text
        live.schema_id = registered.json()["id"]
        for name in live.instances:
            live.create_instance(name)
        # v3 lags: the group is 1 record behind on partition 0 and 2 on partition 1 (4 records
        # were written above, 2 per partition).
        live.member_id = kafka.run(kafka.join_group(live.v3_group, topic, {0: 1, 1: 0}))
        yield live
        # A cluster-wide default KRaft may have accepted for the scratch name: gone again.
        live.session.delete(
            f"{url}/v3/clusters/{live.cluster_id}/broker-configs/{SCRATCH_CONFIG}",
            timeout=REQUEST_TIMEOUT_S,
        )
    finally:
        try:
            if scratch:
                with contextlib.suppress(Exception):
                    kafka.run(kafka.admin.delete_topics(scratch))
            kafka.close()
        finally:
            process.stop(proc, grace=10)


def _config(live: LiveGateway) -> schemathesis.Config:
    topic_fields = ("offsets", "partitions", "timestamps")
    return schemathesis.Config.from_dict(
        {
            "base-url": live.url,
            "seed": SEED,
            "request-timeout": REQUEST_TIMEOUT_S,
            "suppress-health-check": ["too_slow", "filter_too_much", "data_too_large"],
            "generation": {
                "mode": "all",
                "max-examples": MAX_EXAMPLES,
                "database": "none",
                # Every integer and string field sometimes gets one of these instead.
                "dictionaries": {
                    "integer": {"dictionary": "edge_ints", "probability": 0.1},
                    "number": {"dictionary": "edge_numbers", "probability": 0.1},
                    "string": {"dictionary": "edge_strings", "probability": 0.05},
                },
            },
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": True},
                "fuzzing": {"enabled": True},
            },
            "checks": {
                "enabled": False,
                "not_a_server_error": {"enabled": True},
                "status_code_conformance": {"enabled": True},
                "content_type_conformance": {"enabled": True},
                "response_schema_conformance": {"enabled": True},
                "response_headers_conformance": {"enabled": True},
                "unsupported_method": {"enabled": True},
            },
            "dictionaries": {
                "topics": {"values": [live.topic, live.topic, live.registry_topic]},
                "groups": {"values": [live.group, live.v3_group, live.v3_group]},
                "clusters": {"values": [live.cluster_id]},
                "brokers": {"values": [live.broker_id]},
                "members": {"values": [live.member_id]},
                "config_names": {"values": CONFIG_NAMES},
                "config_values": {"values": CONFIG_VALUES},
                "instances": {"values": list(live.instances)},
                "partitions": {"values": [0, 1]},
                "subjects": {"values": [live.subject]},
                "schema_ids": {"values": [live.schema_id]},
                "schemas": {"values": SCHEMAS},
                "edge_ints": {"values": EDGE_INTS},
                "edge_numbers": {"values": EDGE_NUMBERS},
                "edge_strings": {
                    "values": [
                        "~",
                        "%7E",
                        "a b",
                        "ü",
                        "_schemas",
                        "__consumer_offsets",
                        live.registry_topic,
                        ".",
                        "..",
                        "x" * 300,
                    ]
                },
                "patterns": {"values": REDOS},
            },
            "parameters": {
                "path.topic": {"dictionary": "topics", "probability": 0.5},
                "body.topic_pattern": {"dictionary": "patterns", "probability": 0.5},
                "body.timestamps[*].timestamp": {"dictionary": "edge_numbers", "probability": 0.2},
                "path.partition": {"dictionary": "partitions", "probability": 0.5},
                "path.group": {"dictionary": "groups", "probability": 0.8},
                # v3: the real cluster, broker, member and config names, past their 404s.
                "path.cluster_id": {"dictionary": "clusters", "probability": 0.9},
                "path.broker_id": {"dictionary": "brokers", "probability": 0.8},
                "path.consumer": {"dictionary": "members", "probability": 0.8},
                "path.name": {"dictionary": "config_names", "probability": 0.6},
                "body.value": {"dictionary": "config_values", "probability": 0.6},
                "body.data[*].name": {"dictionary": "config_names", "probability": 0.6},
                "body.data[*].value": {"dictionary": "config_values", "probability": 0.6},
                "body.partition_id": {"dictionary": "partitions", "probability": 0.5},
                "body.entries[*].partition_id": {"dictionary": "partitions", "probability": 0.5},
                "path.instance": {"dictionary": "instances", "probability": 0.8},
                "path.subject": {"dictionary": "subjects", "probability": 0.5},
                "path.id": {"dictionary": "schema_ids", "probability": 0.5},
                "body.records[*].partition": {"dictionary": "partitions", "probability": 0.5},
                "body.topics[*]": {"dictionary": "topics", "probability": 0.5},
                "body.schema": {"dictionary": "schemas", "probability": 0.5},
                **{
                    f"body.{name}[*].topic": {"dictionary": "topics", "probability": 0.6}
                    for name in topic_fields
                },
                **{
                    f"body.{name}[*].partition": {"dictionary": "partitions", "probability": 0.6}
                    for name in topic_fields
                },
            },
        }
    )


@pytest.fixture(scope="module")
def fuzz_schema(live_gateway: LiveGateway) -> BaseSchema:
    # The document as this replica serves it: the fuzzer tests what a client would read.
    # Loaded as a dict, not with from_url, which would leave /openapi.json itself untested.
    served = requests.get(live_gateway.url + "/openapi.json", timeout=REQUEST_TIMEOUT_S)
    assert served.status_code == 200, served.text
    return schemathesis.openapi.from_dict(served.json(), config=_config(live_gateway))


@pytest.fixture(scope="module")
def counts(
    request: pytest.FixtureRequest, fuzz_schema: BaseSchema, live_gateway: LiveGateway
) -> Iterator[Counts]:
    counts = Counts()
    yield counts
    operations = [result.ok().label for result in fuzz_schema.get_all_operations()]
    failing = sorted(label for label, n in counts.failures.items() if n)
    lines = [
        f"operations: {len(operations)}, called: {len(counts.calls)}; cases: "
        f"{sum(counts.calls.values())}; failing cases: {sum(counts.failures.values())} "
        f"in {len(failing)} operations; seed {SEED}, {MAX_EXAMPLES} examples per operation",
        "statuses: " + ", ".join(f"{s}: {n}" for s, n in sorted(counts.statuses.items())),
        *(f"never called: {label}" for label in operations if label not in counts.calls),
        *(
            f"never a 2xx: {label}"
            for label in operations
            if label in counts.calls and not counts.successes[label]
        ),
        *(f"failing: {label} ({counts.failures[label]} cases)" for label in failing),
        f"stateful (links from create to every instance operation): {counts.scenarios} "
        f"scenarios, {counts.steps} steps, {counts.step_failures} failing steps, "
        f"{counts.flaky_restarts} restarts after a Flaky replay",
        f"corpus: {len(counts.corpus)} entries, "
        f"{sum(1 for _, passed in counts.corpus if not passed)} failing",
        *(f"failing corpus entry: {title}" for title, passed in counts.corpus if not passed),
    ]
    request.config.stash.setdefault(FUZZ_SUMMARY, []).extend(lines)
    print("\n".join(lines), file=sys.stderr)


@pytest.fixture
def recorded(counts: Counts, record_property: Any) -> Iterator[Counts]:
    """The counts so far as properties of the test (junit XML), also when it fails."""
    yield counts
    record_property("fuzz_operations_called", len(counts.calls))
    record_property("fuzz_cases", sum(counts.calls.values()))
    record_property("fuzz_failing_cases", sum(counts.failures.values()))
    record_property("fuzz_stateful_steps", counts.steps)
    record_property("fuzz_stateful_failing_steps", counts.step_failures)


schema = schemathesis.pytest.from_fixture("fuzz_schema")
if ONLY_TAG:
    # EVENT_GATEWAY_FUZZ_TAG=v3 (say) fuzzes one tag's operations only, for a quick local run.
    schema = schema.include(tag=ONLY_TAG)


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    """schemathesis 4.32 renames the test node per operation through ``Node._nodeid``, which
    pytest 9.2 no longer has (it keeps the id elsewhere); giving it the attribute back lets it
    work, and pytest's own reporting ignores it."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


def _call_and_check(case: Case, accept: str, counts: Counts, expect: int | None = None) -> None:
    """Call and check the document's promises (and ``expect``, the status, when given)."""
    label = case.operation.label
    counts.calls[label] += 1
    headers = {"Accept": accept, "Authorization": AUTHORIZATION}
    try:
        response = case.call(headers=headers)
        counts.statuses[response.status_code] += 1
        if 200 <= response.status_code < 300:
            counts.successes[label] += 1
        case.validate_response(response, headers=headers)
        assert expect in (None, response.status_code), f"{label}: {response.text[:300]}"
    except BaseException:
        counts.failures[label] += 1
        raise


def _accept(case: Case) -> str:
    """The Accept header for a case: ``*/*`` for half of them (what most clients send), one of
    the others for the rest. Derived from the case itself, not drawn, so that a case Hypothesis
    replays (to shrink it) is sent exactly as before; schemathesis refuses ``given`` alongside
    the document's examples."""
    data = repr((case.method, case.path, case.path_parameters, case.query, case.body))
    digest = hashlib.sha256(data.encode()).digest()
    if digest[0] < 128:
        return ACCEPTS[0]
    return ACCEPTS[1 + digest[1] % (len(ACCEPTS) - 1)]


@schema.parametrize()
def test_every_operation(case: Case, live_gateway: LiveGateway, recorded: Counts) -> None:
    live_gateway.reset(case)
    try:
        _call_and_check(case, _accept(case), recorded)
    finally:
        live_gateway.after()


@dataclass(frozen=True)
class Step:
    method: str
    path: str  # the operation's template, or "#<operationId>" (v3: params by position)
    params: dict[str, Any] = field(default_factory=dict)
    body: Any = None
    query: dict[str, Any] | None = None
    accept: str = "*/*"
    content_type: str = V2
    args: tuple[Any, ...] = ()  # the path parameters in order, for a "#<operationId>" path
    expect: int | None = None  # the status, beyond the document's promises


def _v3(op_id: str, *args: Any, expect: int, body: Any = None, method: str = "GET") -> Step:
    """A v3 step by operationId: its path parameters are named as the routes name them."""
    return Step(method, "#" + op_id, body=body, content_type=JSON, args=args, expect=expect)


def _corpus(live: LiveGateway, title: str) -> list[Step]:
    """The steps of one corpus entry, with the live gateway's names filled in."""
    inst = "/consumers/{group}/instances/{instance}"
    binary = {"group": live.group, "instance": "fz-binary"}
    fresh = {"group": live.group, "instance": f"fz-corpus-{uuid.uuid4().hex[:8]}"}
    create = Step("POST", "/consumers/{group}", {"group": live.group}, {"name": fresh["instance"]})

    def seek_to(timestamp: float) -> Step:
        ts = [{"topic": live.topic, "partition": 0, "timestamp": timestamp}]
        return Step("POST", inst + "/positions", binary, {"timestamps": ts})

    entries = {
        "seek to a timestamp past the float range": [seek_to(1.7976931348623157e308)],
        "seek to a timestamp before the float range": [seek_to(-1.7976931348623157e308)],
        "partition 2^31 in a path": [
            Step(
                "GET",
                "/topics/{topic}/partitions/{partition}/offsets",
                {"topic": live.topic, "partition": 2**31},
            )
        ],
        "instance wait of 1e300": [
            Step(
                "POST",
                "/consumers/{group}",
                {"group": live.group},
                {"name": fresh["instance"], "consumer.request.timeout.ms": 1e300},
            )
        ],
        "backtracking topic_pattern, then read": [
            create,
            Step("POST", inst + "/subscription", fresh, {"topic_pattern": REDOS[0]}),
            Step("GET", "/topics"),
            Step("GET", inst + "/records", fresh, query={"timeout": 200}),
            Step("DELETE", inst, fresh),
        ],
        "Accept: application/json on a subscribe": [
            create,
            Step("POST", inst + "/subscription", fresh, {"topics": [live.topic]}, accept=JSON),
            Step("GET", inst + "/subscription", fresh, accept=JSON),
            Step("DELETE", inst, fresh, accept=JSON),
        ],
        "names that are percent-encoded": [
            Step("GET", inst + "/subscription", {"group": "a b~ü", "instance": "%7E x"})
        ],
        "v3: partition 2^31 and -1 in a path": [
            _v3("getKafkaPartition", live.cluster_id, live.topic, 2**31, expect=404),
            _v3("getKafkaPartitionOffsets", live.cluster_id, live.topic, -1, expect=404),
            _v3(
                "getKafkaConsumerLag", live.cluster_id, live.v3_group, live.topic, 2**31, expect=404
            ),
        ],
        "v3: names that are percent-encoded": [
            _v3("getKafkaConsumerGroupLagSummary", live.cluster_id, "a b~ü", expect=404),
            _v3("listKafkaConsumers", live.cluster_id, "%7E x", expect=404),
            _v3("getKafkaTopicConfig", live.cluster_id, live.topic, "a b~ü", expect=404),
        ],
        "v3: produce to the registry's topic and to a Kafka-internal one": [
            _v3(
                "produceRecord",
                live.cluster_id,
                topic,
                method="POST",
                body={"value": {"type": "STRING", "data": "not a schema"}},
                expect=403,  # reserved, as in v2
            )
            for topic in (live.registry_topic, "__consumer_offsets")
        ],
        "v3: a partition increase Kafka refuses (over its 10 000 records per operation)": [
            _v3(
                "updatePartitionCountKafkaTopic",
                live.cluster_id,
                live.scratch_topic,
                method="PATCH",
                body={"partitions_count": 73730},
                expect=400,
            ),
        ],
        "v3: a topic Kafka refuses to create (2^31-1 partitions)": [
            _v3(
                "createKafkaTopic",
                live.cluster_id,
                method="POST",
                body={"topic_name": "fz-huge", "partitions_count": 2**31 - 1},
                expect=400,
            ),
        ],
        "v3: a batch of 11 entries": [
            _v3(
                "produceRecordsBatch",
                live.cluster_id,
                live.topic,
                method="POST",
                body={"entries": [{"id": str(i), "value": None} for i in range(11)]},
                expect=422,  # api.v3.produce.batch.maximum.entries is 10
            )
        ],
    }
    return entries[title]


CORPUS = [
    "seek to a timestamp past the float range",
    "seek to a timestamp before the float range",
    "partition 2^31 in a path",
    "instance wait of 1e300",
    "backtracking topic_pattern, then read",
    "Accept: application/json on a subscribe",
    "names that are percent-encoded",
    "v3: partition 2^31 and -1 in a path",
    "v3: names that are percent-encoded",
    "v3: produce to the registry's topic and to a Kafka-internal one",
    "v3: a partition increase Kafka refuses (over its 10 000 records per operation)",
    "v3: a topic Kafka refuses to create (2^31-1 partitions)",
    "v3: a batch of 11 entries",
]


@pytest.mark.parametrize("title", CORPUS)
def test_corpus(
    title: str, fuzz_schema: BaseSchema, live_gateway: LiveGateway, recorded: Counts
) -> None:
    """Requests the random run may not draw, under the same checks: inputs issue 10 names, and
    every failure an exploratory run (another seed, more examples) found, so that a bug found
    once keeps failing CI until it is fixed, not only when the dice fall that way."""
    passed = False
    try:
        for step in _corpus(live_gateway, title):
            if step.path.startswith("#"):
                operation = fuzz_schema.find_operation_by_id(step.path[1:])
                names = re.findall(r"{(\w+)}", operation.path)
                params = dict(zip(names, step.args, strict=True))
            else:
                operation = fuzz_schema[step.path][step.method]
                params = step.params
            body = {"body": step.body, "media_type": step.content_type}
            case = operation.Case(
                path_parameters=params,
                query=step.query,
                **(body if step.body is not None else {}),
            )
            live_gateway.reset(case)
            try:
                _call_and_check(case, step.accept, recorded, step.expect)
            finally:
                live_gateway.after()
        passed = True
    finally:
        recorded.corpus.append((title, passed))


def test_stateful_links(
    fuzz_schema: BaseSchema, live_gateway: LiveGateway, recorded: Counts
) -> None:
    """Sequences along the document's links: a consumer created with generated settings, then
    its own instance used (subscribe, assign, seek, read, commit, delete) with generated
    bodies, which the per-operation run, on pre-made instances, cannot reach.

    The server's state moves on between Hypothesis's runs of a scenario (a subject registered,
    an instance deleted), so a replay may take another path; Hypothesis reports that as
    ``Flaky``. As schemathesis's own runner does, that is not a failure in itself: every failing
    step is recorded when it happens, the run restarts with the next seed, and the test fails
    on what was recorded.
    """
    failed: list[str] = []

    class Workflow(fuzz_schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            recorded.scenarios += 1

        def before_call(self, case: Case) -> None:
            # A name created by an earlier run would be a 409 on a replay, and no link would be
            # followed: a unique suffix keeps every replay a fresh create.
            if case.operation.label == "POST /consumers/{group}" and isinstance(case.body, dict):
                for key in ("name", "id"):
                    if isinstance(case.body.get(key), str) and case.body[key]:
                        case.body[key] += f"-{uuid.uuid4().hex[:8]}"
            live_gateway.guard_v3(case)  # no v3 links today; harmless should one be added
            bound_stream(case)

        def after_call(self, response: Any, case: Case) -> None:
            live_gateway.after()
            super().after_call(response, case)

        def get_call_kwargs(self, case: Case) -> dict[str, Any]:
            return {"headers": {"Accept": _accept(case), "Authorization": AUTHORIZATION}}

        def step(self, input: Any) -> Any:
            recorded.steps += 1
            try:
                return super().step(input)
            except BaseException as exc:
                recorded.step_failures += 1
                failed.append(f"{input.case.operation.label}: {exc}")
                raise

    deadline = time.monotonic() + STATEFUL_BUDGET_S
    for attempt in range(STATEFUL_EXAMPLES):
        remaining = STATEFUL_EXAMPLES - recorded.scenarios
        if remaining <= 0 or failed or time.monotonic() > deadline:
            break
        machine = hypothesis.seed(SEED + attempt)(type(f"Workflow{attempt}", (Workflow,), {}))
        try:
            machine.run(
                settings=hypothesis.settings(
                    max_examples=remaining,
                    stateful_step_count=8,
                    deadline=None,
                    database=None,
                    suppress_health_check=list(hypothesis.HealthCheck),
                )
            )
        except hypothesis.errors.Flaky:
            recorded.flaky_restarts += 1
            continue
        break
    assert not failed, "\n\n".join(dict.fromkeys(failed))
