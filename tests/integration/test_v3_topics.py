"""v3 topics against a real broker: every change is read back with an independent admin client.

Create, get, list, grow and delete go through the gateway; what Kafka then holds (partitions,
replication factor, a config set at create time, the topic's absence) is checked with
``kafka_admin``, which shares no code with the gateway, and polled where KRaft applies a change
a moment after answering it. Links are checked against the Host the client used.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from tests.harness.api import MakeGatewayFn, NewTopicFn
from tests.harness.topics import unique_topic_name, wait_topic_ready

Client = TestClient[web.Request, web.Application]
HOST = "lb.example:8082"
JSON = {"Content-Type": "application/json", "Host": HOST}
# Every topic operation Kafka grants when the broker has no authoriser (the test broker's case).
ALL_TOPIC_OPERATIONS = [
    "READ",
    "WRITE",
    "CREATE",
    "DELETE",
    "ALTER",
    "DESCRIBE",
    "DESCRIBE_CONFIGS",
    "ALTER_CONFIGS",
]


async def _cluster_id(kafka_admin: AIOKafkaAdminClient) -> str:
    return str((await kafka_admin.describe_cluster())["cluster_id"])


async def _call(
    client: Client, method: str, path: str, body: Any = None, **kw: Any
) -> tuple[int, Any, Any]:
    """(status, decoded body or None, headers)."""
    headers = dict(JSON) if body is not None else {"Host": HOST}
    headers.update(kw.pop("headers", {}))
    data = body if isinstance(body, str | bytes) or body is None else json.dumps(body)
    async with client.request(method, path, data=data, headers=headers, **kw) as resp:
        raw = await resp.read()
        return resp.status, (json.loads(raw) if raw else None), resp.headers


async def _until(check: Callable[[], Awaitable[bool]], what: str, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        await asyncio.sleep(0.1)


async def _kafka_topic(kafka_admin: AIOKafkaAdminClient, name: str) -> dict[str, Any]:
    (meta,) = await kafka_admin.describe_topics([name])
    return dict(meta)


async def _absent(kafka_admin: AIOKafkaAdminClient, name: str) -> bool:
    return name not in await kafka_admin.list_topics()


async def _ensure_internal_topic(kafka_admin: AIOKafkaAdminClient) -> None:
    """Make Kafka create ``__consumer_offsets`` (a group coordinator lookup does), so the
    list's "no internal topics" rule has one to hide."""

    async def exists() -> bool:
        with contextlib.suppress(KafkaError):
            await kafka_admin.find_coordinator("v3-topics-internal-probe")
        return "__consumer_offsets" in await kafka_admin.list_topics()

    await _until(exists, "Kafka has created __consumer_offsets")


async def _kafka_config(kafka_admin: AIOKafkaAdminClient, topic: str, name: str) -> str | None:
    [response] = await kafka_admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic)]
    )
    [resource] = response.to_object()["resources"]
    assert resource["error_code"] == 0, resource
    values = {e["config_names"]: e["config_value"] for e in resource["config_entries"]}
    return values.get(name)


def _expected(
    cid: str, name: str, rf: int, count: int, ops: list[str] | None = None
) -> dict[str, Any]:
    base = f"http://{HOST}/v3/clusters/{cid}/topics/{name}"
    return {
        "kind": "KafkaTopic",
        "metadata": {"self": base, "resource_name": f"crn:///kafka={cid}/topic={name}"},
        "cluster_id": cid,
        "topic_name": name,
        "is_internal": False,
        "replication_factor": rf,
        "partitions_count": count,
        "partitions": {"related": f"{base}/partitions"},
        "configs": {"related": f"{base}/configs"},
        "partition_reassignments": {"related": f"{base}/partitions/-/reassignment"},
        "authorized_operations": ops or [],
    }


async def test_create_get_list_grow_delete_round_trip(
    gateway: Client, kafka_admin: AIOKafkaAdminClient
) -> None:
    cid = await _cluster_id(kafka_admin)
    topics = f"/v3/clusters/{cid}/topics"
    name = unique_topic_name("v3t-")
    request = {
        "topic_name": name,
        "partitions_count": 2,
        "replication_factor": 1,
        "configs": [{"name": "cleanup.policy", "value": "compact"}],
    }
    try:
        status, body, headers = await _call(gateway, "POST", topics, request)
        assert status == 201, body
        assert body == _expected(cid, name, 1, 2)
        assert headers["Location"] == body["metadata"]["self"]

        # Kafka holds what was asked: 2 partitions, 1 replica each, the config set.
        meta = await wait_topic_ready(kafka_admin, name, 2)
        assert all(len(p["replicas"]) == 1 for p in meta["partitions"])
        assert await _kafka_config(kafka_admin, name, "cleanup.policy") == "compact"

        async def served() -> bool:
            return (await _call(gateway, "GET", f"{topics}/{name}"))[0] == 200

        await _until(served, "the new topic is served")
        status, body, _ = await _call(gateway, "GET", f"{topics}/{name}")
        assert (status, body) == (200, _expected(cid, name, 1, 2))

        await _ensure_internal_topic(kafka_admin)
        status, listed, _ = await _call(gateway, "GET", topics)
        assert status == 200
        assert listed["kind"] == "KafkaTopicList"
        assert listed["metadata"] == {"self": f"http://{HOST}{topics}", "next": None}
        names = [t["topic_name"] for t in listed["data"]]
        assert names == sorted(names)
        assert not [n for n in names if n.startswith("__")]
        assert [t for t in listed["data"] if t["topic_name"] == name] == [
            _expected(cid, name, 1, 2)
        ]
        # Every topic Kafka lists (bar internal ones) is listed, as Kafka describes it.
        kafka_names = {
            t["topic"]
            for t in await kafka_admin.describe_topics()
            if not t["is_internal"] and t["error_code"] == 0
        }
        assert name in kafka_names and kafka_names <= set(names) | {name}

        # Grow to 3: the answer and Kafka both show 3.
        status, body, _ = await _call(gateway, "PATCH", f"{topics}/{name}", {"partitions_count": 3})
        assert (status, body) == (200, _expected(cid, name, 1, 3))
        await wait_topic_ready(kafka_admin, name, 3)
        # Same or fewer: Kafka's refusal, 400/40002, nothing changed.
        for count in (3, 2):
            status, body, _ = await _call(
                gateway, "PATCH", f"{topics}/{name}", {"partitions_count": count}
            )
            assert status == 400 and body["error_code"] == 40002 and body["message"], body
        assert len((await _kafka_topic(kafka_admin, name))["partitions"]) == 3

        status, body, _ = await _call(gateway, "DELETE", f"{topics}/{name}")
        assert (status, body) == (204, None)
        await _until(lambda: _absent(kafka_admin, name), "Kafka no longer lists the topic")

        async def gone() -> bool:
            return (await _call(gateway, "GET", f"{topics}/{name}"))[0] == 404

        await _until(gone, "the deleted topic is 404")
        unknown = {
            "error_code": 40403,
            "message": "This server does not host this topic-partition.",
        }
        assert (await _call(gateway, "GET", f"{topics}/{name}"))[:2] == (404, unknown)
        assert (await _call(gateway, "DELETE", f"{topics}/{name}"))[:2] == (404, unknown)
    finally:
        if not await _absent(kafka_admin, name):
            await kafka_admin.delete_topics([name])


async def test_create_with_broker_defaults_answers_what_kafka_created(
    gateway: Client, kafka_admin: AIOKafkaAdminClient
) -> None:
    cid = await _cluster_id(kafka_admin)
    name = unique_topic_name("v3d-")
    try:
        status, body, _ = await _call(
            gateway, "POST", f"/v3/clusters/{cid}/topics", {"topic_name": name}
        )
        assert status == 201, body
        await _until(lambda: _present(kafka_admin, name), "Kafka lists the topic")
        meta = await _kafka_topic(kafka_admin, name)
        count = len(meta["partitions"])
        replicas = len(meta["partitions"][0]["replicas"])
        assert count >= 1 and replicas >= 1  # the broker's defaults, not a stand-in 0
        assert body == _expected(cid, name, replicas, count)
    finally:
        await kafka_admin.delete_topics([name])


async def _present(kafka_admin: AIOKafkaAdminClient, name: str) -> bool:
    return not await _absent(kafka_admin, name)


async def test_create_with_replica_assignments(
    gateway: Client, kafka_admin: AIOKafkaAdminClient
) -> None:
    cid = await _cluster_id(kafka_admin)
    [broker] = [b["node_id"] for b in (await kafka_admin.describe_cluster())["brokers"]]
    name = unique_topic_name("v3a-")
    try:
        status, body, _ = await _call(
            gateway,
            "POST",
            f"/v3/clusters/{cid}/topics",
            # The counts are ignored when the assignments say it all (as Confluent, PR #767).
            {
                "topic_name": name,
                "partitions_count": 7,
                "replicas_assignments": {"0": [broker], "1": [broker], "2": [broker]},
            },
        )
        assert status == 201, body
        assert body == _expected(cid, name, 1, 3)
        meta = await wait_topic_ready(kafka_admin, name, 3)
        assert sorted(p["replicas"] for p in meta["partitions"]) == [[broker]] * 3
    finally:
        await kafka_admin.delete_topics([name])


async def test_validate_only_creates_nothing(
    gateway: Client, kafka_admin: AIOKafkaAdminClient
) -> None:
    cid = await _cluster_id(kafka_admin)
    name = unique_topic_name("v3v-")
    status, body, headers = await _call(
        gateway,
        "POST",
        f"/v3/clusters/{cid}/topics",
        {"topic_name": name, "partitions_count": 4, "validate_only": True},
    )
    assert status == 200, body
    assert body == _expected(cid, name, 1, 4)
    assert headers["Location"] == body["metadata"]["self"]
    # A dry run Kafka refuses is refused too.
    status, body, _ = await _call(
        gateway,
        "POST",
        f"/v3/clusters/{cid}/topics",
        {"topic_name": name, "replication_factor": 2, "validate_only": True},
    )
    assert status == 400 and body["error_code"] == 40002, body
    assert await _absent(kafka_admin, name)
    assert (await _call(gateway, "GET", f"/v3/clusters/{cid}/topics/{name}"))[0] == 404


async def test_create_refusals(
    gateway: Client, kafka_admin: AIOKafkaAdminClient, new_topic: NewTopicFn
) -> None:
    cid = await _cluster_id(kafka_admin)
    topics = f"/v3/clusters/{cid}/topics"
    existing = await new_topic(1)

    status, body, _ = await _call(gateway, "POST", topics, {"topic_name": existing})
    assert (status, body) == (
        400,
        {"error_code": 40002, "message": f"Topic '{existing}' already exists."},
    )

    invalid = {"error_code": 42206, "message": "Payload error. Invalid topic name."}
    for bad in ("bad name", "", ".", "..", "x" * 250, "é", None):
        status, body, _ = await _call(gateway, "POST", topics, {"topic_name": bad})
        assert (status, body) == (422, invalid), bad
    status, body, _ = await _call(gateway, "POST", topics, {"partitions_count": 1})
    assert (status, body) == (422, invalid)

    empty = {
        "error_code": 42206,
        "message": "Payload error. Request body is empty. Data is required.",
    }
    assert (await _call(gateway, "POST", topics, "", headers=JSON))[:2] == (422, empty)

    refused = unique_topic_name("v3r-")
    for request in (
        {"topic_name": refused, "replication_factor": 2},  # more than the one broker
        {"topic_name": refused, "partitions_count": 0},
        {"topic_name": refused, "configs": [{"name": "cleanup.policy", "value": "bogus"}]},
    ):
        status, body, _ = await _call(gateway, "POST", topics, request)
        assert status == 400 and body["error_code"] == 40002 and body["message"], (request, body)

    # Client mistakes in the body itself: Jackson's codes, never a 500.
    status, body, _ = await _call(gateway, "POST", topics, {"topic_name": refused, "x": 1})
    assert (status, body) == (422, {"error_code": 422, "message": "Unrecognized field: x"})
    for request in (
        {"topic_name": refused, "partitions_count": "many"},
        {"topic_name": refused, "replication_factor": 70000},
        {"topic_name": refused, "validate_only": "perhaps"},
        {"topic_name": refused, "configs": "cleanup.policy=compact"},
        {"topic_name": refused, "replicas_assignments": {"zero": [1]}},
    ):
        status, body, _ = await _call(gateway, "POST", topics, request)
        assert status == 400 and body["error_code"] == 400, (request, body)
    status, body, _ = await _call(
        gateway, "POST", topics, "{", headers={"Content-Type": "application/json"}
    )
    assert status == 400 and body["error_code"] == 400, body
    status, body, _ = await _call(
        gateway, "POST", topics, "{}", headers={"Content-Type": "text/plain"}
    )
    assert (status, body["error_code"]) == (415, 415)

    status, body, _ = await _call(
        gateway, "POST", "/v3/clusters/nope/topics", {"topic_name": refused}
    )
    assert (status, body) == (404, {"error_code": 404, "message": "Cluster nope cannot be found."})
    assert await _absent(kafka_admin, refused)


async def test_grow_and_delete_refusals(
    gateway: Client, kafka_admin: AIOKafkaAdminClient, new_topic: NewTopicFn
) -> None:
    cid = await _cluster_id(kafka_admin)
    topics = f"/v3/clusters/{cid}/topics"
    topic = await new_topic(1)
    missing = unique_topic_name("v3m-")
    unknown = {"error_code": 40403, "message": "This server does not host this topic-partition."}

    status, body, _ = await _call(gateway, "PATCH", f"{topics}/{missing}", {"partitions_count": 2})
    assert (status, body) == (404, unknown)
    assert (await _call(gateway, "DELETE", f"{topics}/{missing}"))[:2] == (404, unknown)
    assert (await _call(gateway, "GET", f"{topics}/{missing}"))[:2] == (404, unknown)
    assert await _absent(kafka_admin, missing)  # looking never creates it

    empty = "Payload error. Request body is empty. Partitions_count is required."
    status, body, _ = await _call(gateway, "PATCH", f"{topics}/{topic}", "", headers=JSON)
    assert (status, body) == (422, {"error_code": 42206, "message": empty})
    status, body, _ = await _call(gateway, "PATCH", f"{topics}/{topic}", {})
    assert (status, body) == (
        422,
        {"error_code": 42206, "message": "Payload error. Partitions_count is required."},
    )
    status, body, _ = await _call(
        gateway, "PATCH", f"{topics}/{topic}", {"partitions_count": 2, "replication_factor": 2}
    )
    assert (status, body) == (
        422,
        {"error_code": 422, "message": "Unrecognized field: replication_factor"},
    )
    assert len((await _kafka_topic(kafka_admin, topic))["partitions"]) == 1

    status, body, _ = await _call(gateway, "DELETE", f"/v3/clusters/nope/topics/{topic}")
    assert (status, body) == (404, {"error_code": 404, "message": "Cluster nope cannot be found."})
    assert not await _absent(kafka_admin, topic)


async def test_authorized_operations_are_kafkas_answer_when_asked(
    gateway: Client, kafka_admin: AIOKafkaAdminClient, new_topic: NewTopicFn
) -> None:
    cid = await _cluster_id(kafka_admin)
    topics = f"/v3/clusters/{cid}/topics"
    topic = await new_topic(1)

    # Not asked: always present, empty. Each endpoint has its own spelling (Confluent's).
    for path in (f"{topics}/{topic}", f"{topics}/{topic}?includeAuthorizedOperations=true"):
        assert (await _call(gateway, "GET", path))[1]["authorized_operations"] == []
    _, listed, _ = await _call(gateway, "GET", f"{topics}?include_authorized_operations=true")
    assert all(t["authorized_operations"] == [] for t in listed["data"])

    # Asked: the test broker has no authoriser, so Kafka grants every topic operation.
    _, body, _ = await _call(gateway, "GET", f"{topics}/{topic}?include_authorized_operations=true")
    assert body == _expected(cid, topic, 1, 1, ALL_TOPIC_OPERATIONS)
    _, listed, _ = await _call(gateway, "GET", f"{topics}?includeAuthorizedOperations=TRUE")
    [mine] = [t for t in listed["data"] if t["topic_name"] == topic]
    assert mine == _expected(cid, topic, 1, 1, ALL_TOPIC_OPERATIONS)


# --- with authorisation rules ------------------------------------------------------------------

PASSWORDS = {"alice": "alice-secret", "bob": "bob-pw"}


@pytest.fixture(scope="module")
def users_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("v3topics") / "users.txt"
    for name in PASSWORDS:
        cmd = [sys.executable, "-m", "gateway.cli", "user", "add", "--users-file", str(path)]
        done = subprocess.run(
            [*cmd, name, "--password-stdin"],
            input=PASSWORDS[name] + "\n",
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    return path


def _auth(user: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{PASSWORDS[user]}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def test_rules_decide_what_is_listed_and_allowed(
    make_gateway: MakeGatewayFn,
    kafka_admin: AIOKafkaAdminClient,
    new_topic: NewTopicFn,
    users_file: Path,
    tmp_path: Path,
) -> None:
    cid = await _cluster_id(kafka_admin)
    topics = f"/v3/clusters/{cid}/topics"
    prefix = unique_topic_name("v3z")
    seen, hidden = await new_topic(1, f"{prefix}-seen"), await new_topic(1, f"{prefix}-hidden")
    rules = [
        {"principal": "User:bob", "topic": seen, "allow": ["describe"]},
        {"principal": "User:alice", "topic": f"{prefix}-*", "allow": ["*"]},
    ]
    (tmp_path / "rules.json").write_text(json.dumps({"rules": rules}))
    client = await make_gateway(
        {
            "authentication.method": "BASIC",
            "authentication.basic.users.file": str(users_file),
            "authorization.rules.file": str(tmp_path / "rules.json"),
        }
    )
    bob, alice = _auth("bob"), _auth("alice")

    async def call(who: dict[str, str], method: str, path: str, body: Any = None) -> Any:
        return (await _call(client, method, path, body, headers=who))[:2]

    status, listed = await call(bob, "GET", f"{topics}?includeAuthorizedOperations=true")
    assert status == 200
    assert [t["topic_name"] for t in listed["data"]] == [seen]
    # Kafka grants all; the gateway's rules let bob only describe (metadata and configs).
    assert listed["data"][0]["authorized_operations"] == ["DESCRIBE", "DESCRIBE_CONFIGS"]
    status, body = await call(alice, "GET", f"{topics}/{seen}?include_authorized_operations=true")
    assert (status, body["authorized_operations"]) == (200, ALL_TOPIC_OPERATIONS)

    def denied(result: tuple[int, Any]) -> bool:
        return result[0] == 403 and result[1]["error_code"] == 40301

    missing = f"{prefix}-new"
    assert denied(await call(bob, "GET", f"{topics}/{hidden}"))
    assert denied(await call(bob, "GET", f"{topics}/{missing}"))  # same answer as for hidden
    assert denied(await call(bob, "POST", topics, {"topic_name": missing}))
    assert denied(await call(bob, "PATCH", f"{topics}/{seen}", {"partitions_count": 2}))
    assert denied(await call(bob, "DELETE", f"{topics}/{seen}"))
    assert await _absent(kafka_admin, missing)
    assert len((await _kafka_topic(kafka_admin, seen))["partitions"]) == 1
    assert not await _absent(kafka_admin, seen)

    # alice may do all of it on her prefix.
    status, body = await call(alice, "PATCH", f"{topics}/{hidden}", {"partitions_count": 2})
    assert (status, body["partitions_count"]) == (200, 2)
    status, body = await call(alice, "POST", topics, {"topic_name": missing, "validate_only": True})
    assert status == 200, body
    assert (await call(alice, "DELETE", f"{topics}/{hidden}"))[0] == 204
    await _until(lambda: _absent(kafka_admin, hidden), "alice's delete reached Kafka")
