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

Bounded: a fixed seed, ``MAX_EXAMPLES`` per operation in the fuzzing phase, short Kafka waits.
The counts (operations, cases, failures) are printed at the end of the run
(tests/integration/conftest.py) and recorded as test properties.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import hashlib
import os
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis
import hypothesis.errors
import pytest
import requests
import schemathesis
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
    session: requests.Session = field(default_factory=requests.Session)

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
        assigned both partitions (or, for a subscribe, has neither subscription nor assignment)."""
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


@dataclass
class Counts:
    """What the fuzzer did, per operation: calls made and calls whose checks failed (a failing
    case is counted again each time Hypothesis replays it while shrinking)."""

    calls: collections.Counter[str] = field(default_factory=collections.Counter)
    failures: collections.Counter[str] = field(default_factory=collections.Counter)
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
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
    try:
        topic = asyncio.run(_make_topic(kafka_bootstrap))
        live = LiveGateway(
            url=url,
            log=log,
            topic=topic,
            group=f"fuzz-{uuid.uuid4().hex[:6]}",
            instances={"fz-binary": "binary", "fz-json": "json"},
            subject=f"{topic}-value",
            schema_id=0,
            registry_topic=registry_topic,
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
        yield live
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
                "groups": {"values": [live.group]},
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


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    """schemathesis 4.32 renames the test node per operation through ``Node._nodeid``, which
    pytest 9.2 no longer has (it keeps the id elsewhere); giving it the attribute back lets it
    work, and pytest's own reporting ignores it."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


def _call_and_check(case: Case, accept: str, counts: Counts) -> None:
    label = case.operation.label
    counts.calls[label] += 1
    headers = {"Accept": accept, "Authorization": AUTHORIZATION}
    try:
        response = case.call(headers=headers)
        counts.statuses[response.status_code] += 1
        case.validate_response(response, headers=headers)
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
    _call_and_check(case, _accept(case), recorded)


@dataclass(frozen=True)
class Step:
    method: str
    path: str  # the operation's template
    params: dict[str, Any] = field(default_factory=dict)
    body: Any = None
    query: dict[str, Any] | None = None
    accept: str = "*/*"


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
            operation = fuzz_schema[step.path][step.method]
            case = operation.Case(
                path_parameters=step.params,
                query=step.query,
                **({"body": step.body, "media_type": V2} if step.body is not None else {}),
            )
            live_gateway.reset(case)
            _call_and_check(case, step.accept, recorded)
        passed = True
    finally:
        recorded.corpus.append((title, passed))


def test_stateful_links(fuzz_schema: BaseSchema, recorded: Counts) -> None:
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
