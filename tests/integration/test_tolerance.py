"""Tolerant where real clients are sloppy, strict where it matters.

``Accept: application/json`` works on every v2 endpoint that answers JSON (kafka-mcp, a real
client on PyPI, sends it on ``POST …/subscription`` and got a bare 406), every 406 and 415
explains itself in Confluent's error shape, and no secret from the configuration reaches the
logs. Everything runs against a real Kafka broker (and, for the secrets, a real Redis that
requires a password).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.config import redact
from tests.harness.api import MakeGatewayFn, NewTopicFn
from tests.harness.ports import free_port
from tests.harness.redis import RedisServer
from tests.harness.topics import unique_topic_name
from tests.support.v2 import BINARY, JSON, V2, V2_JSON

Client = TestClient[web.Request, web.Application]

PLAIN = "application/json"
AVRO = "application/vnd.kafka.avro.v2+json"
ROOT = Path(__file__).resolve().parents[2]


def group_name() -> str:
    return "tol-" + uuid.uuid4().hex[:10]


def plain_json(headers: dict[str, str]) -> bool:
    return headers["Content-Type"].split(";")[0].strip() == PLAIN


# --- Accept: application/json -----------------------------------------------------------------


async def test_plain_json_accept_on_metadata_and_produce(gateway: Client, new_topic: NewTopicFn):
    api = V2(gateway)
    topic = await new_topic(partitions=1)
    record = {"records": [{"value": "eA=="}]}
    for n, path in enumerate([f"/topics/{topic}", f"/topics/{topic}/partitions/0"]):
        status, body, headers = await api.call("POST", path, record, ctype=BINARY, accept=PLAIN)
        assert status == 200, body
        assert plain_json(headers), headers
        assert body["offsets"] == [{"partition": 0, "offset": n, "error_code": None, "error": None}]

    status, body, headers = await api.call("POST", "/", {}, ctype=V2_JSON, accept=PLAIN)
    assert (status, body, plain_json(headers)) == (200, {}, True)
    for path in [
        "/",
        "/topics",
        f"/topics/{topic}",
        f"/topics/{topic}/partitions",
        f"/topics/{topic}/partitions/0",
        f"/topics/{topic}/partitions/0/offsets",
        "/brokers",
    ]:
        native = await api.call("GET", path)
        plain = await api.call("GET", path, accept=PLAIN)
        assert native[0] == plain[0] == 200, (path, native, plain)
        assert plain[1] == native[1], path  # the same body ...
        assert native[2]["Content-Type"] == V2_JSON, path
        assert plain_json(plain[2]), (path, plain[2])  # ... as the type the client asked for
    assert (await api.call("GET", f"/topics/{topic}/partitions/0/offsets", accept=PLAIN))[1] == {
        "beginning_offset": 0,
        "end_offset": 2,
    }


async def test_plain_json_accept_on_every_consumer_operation(
    gateway: Client, new_topic: NewTopicFn
):
    """The kafka-mcp flow and the rest of the instance API, all with Accept: application/json."""
    api = V2(gateway)
    topic = await new_topic(partitions=1)
    status, body, _ = await api.call(
        "POST", f"/topics/{topic}", {"records": [{"value": "eA=="}]}, ctype=BINARY
    )
    assert status == 200, body
    group = group_name()
    inst = ""

    async def call(method: str, suffix: str, body: Any = None) -> tuple[int, Any]:
        status, got, headers = await api.call(method, inst + suffix, body, accept=PLAIN)
        if got is not None:
            assert plain_json(headers), (method, suffix, headers)
        return status, got

    for name in ("sub", "assigned"):
        status, body, headers = await api.call(
            "POST",
            f"/consumers/{group}",
            {"name": name, "format": "binary", "auto.offset.reset": "earliest"},
            accept=PLAIN,
        )
        assert (status, body["instance_id"], plain_json(headers)) == (200, name, True), body

    inst = api.inst(group, "sub")
    assert await call("POST", "/subscription", {"topics": [topic]}) == (204, None)
    assert await call("GET", "/subscription") == (200, {"topics": [topic]})
    assert await call("DELETE", "/subscription") == (204, None)
    assert await call("DELETE", "") == (204, None)

    inst = api.inst(group, "assigned")
    partitions = {"partitions": [{"topic": topic, "partition": 0}]}
    assert await call("POST", "/assignments", partitions) == (204, None)
    assert await call("GET", "/assignments") == (200, partitions)
    assert await call("POST", "/positions/end", partitions) == (204, None)
    assert await call("POST", "/positions/beginning", partitions) == (204, None)
    seek = {"offsets": [{"topic": topic, "partition": 0, "offset": 0}]}
    assert await call("POST", "/positions", seek) == (204, None)
    got: list[dict[str, Any]] = []
    for _ in range(20):
        status, records = await call("GET", "/records")
        assert status == 200, records
        got += records
        if got:
            break
    assert [(r["topic"], r["value"], r["offset"]) for r in got] == [(topic, "eA==", 0)]
    commit = {"offsets": [{"topic": topic, "partition": 0, "offset": 0}]}
    assert await call("POST", "/offsets", commit) == (200, [])
    assert await call("GET", "/offsets", partitions) == (
        200,
        {"offsets": [{"topic": topic, "partition": 0, "offset": 1, "metadata": ""}]},
    )
    assert await call("DELETE", "") == (204, None)


async def _produce(api: V2, topic: str, fmt: str) -> None:
    if fmt == "binary":
        body: dict[str, Any] = {"records": [{"key": "aw==", "value": "dg=="}, {"value": "AP8="}]}
        ctype = BINARY
    elif fmt == "json":
        body = {"records": [{"key": "k", "value": {"a": [1, "é"]}}, {"value": None, "key": 7}]}
        ctype = JSON
    else:
        body = {
            "value_schema": orjson.dumps(
                {"type": "record", "name": "R", "fields": [{"name": "n", "type": "long"}]}
            ).decode(),
            "records": [{"value": {"n": 1}}, {"value": {"n": 2}}],
        }
        ctype = AVRO
    status, answer, _ = await api.call("POST", f"/topics/{topic}", body, ctype=ctype)
    assert status == 200 and all(o["error_code"] is None for o in answer["offsets"]), answer


async def _read(api: V2, group: str, topic: str, fmt: str, accept: str) -> list[dict[str, Any]]:
    """Both records, through a fresh instance assigned the topic's one partition."""
    status, body, _ = await api.call(
        "POST", f"/consumers/{group}", {"name": "r", "format": fmt, "auto.offset.reset": "earliest"}
    )
    assert status == 200, body
    partitions = {"partitions": [{"topic": topic, "partition": 0}]}
    status, _, _ = await api.call("POST", api.inst(group, "r") + "/assignments", partitions)
    assert status == 204
    got: list[dict[str, Any]] = []
    for _ in range(30):
        status, body, headers = await api.records(group, "r", accept)
        assert status == 200, body
        assert headers["Content-Type"].split(";")[0] == accept, headers
        got += body
        if len(got) >= 2:
            break
    assert await api.delete(group, "r") == 204
    return got


@pytest.mark.parametrize(
    ("fmt", "native"), [("binary", BINARY), ("json", JSON), ("avro", AVRO)], ids=str
)
async def test_plain_json_reads_records_in_the_instance_format(
    make_gateway: MakeGatewayFn, new_topic: NewTopicFn, fmt: str, native: str
):
    """Accept: application/json names no embedded format, so a read answers exactly what the
    instance's own format's Accept would (a bare Accept would pick binary and 406 a json
    instance)."""
    registry_topic = await new_topic(
        1, unique_topic_name("_schemas-"), {"cleanup.policy": "compact"}
    )
    client = await make_gateway(
        {
            "schema.registry.builtin": "true",
            "schema.registry.topic": registry_topic,
            "consumer.request.timeout.ms": "500",
        }
    )
    api = V2(client)
    topic = await new_topic(partitions=1)
    await _produce(api, topic, fmt)
    expected = await _read(api, group_name(), topic, fmt, native)
    assert len(expected) == 2
    assert await _read(api, group_name(), topic, fmt, PLAIN) == expected


# --- 406 and 415 explain themselves -----------------------------------------------------------


async def test_every_406_and_415_carries_a_confluent_error_body(
    gateway: Client, new_topic: NewTopicFn
):
    api = V2(gateway)
    topic = await new_topic(partitions=1)
    group = group_name()
    inst = api.inst(group, "c")
    record = {"records": [{"value": "eA=="}]}
    requests: list[tuple[str, str, Any, str | None]] = [
        ("GET", "/", None, None),
        ("POST", "/", {}, V2_JSON),
        ("GET", "/topics", None, None),
        ("GET", f"/topics/{topic}", None, None),
        ("GET", f"/topics/{topic}/partitions/0/offsets", None, None),
        ("GET", "/brokers", None, None),
        ("POST", f"/topics/{topic}", record, BINARY),
        ("POST", f"/consumers/{group}", {"name": "c"}, V2_JSON),
        ("POST", inst + "/subscription", {"topics": [topic]}, V2_JSON),
        ("GET", inst + "/records", None, None),
        ("POST", inst + "/offsets", {}, V2_JSON),
    ]
    for method, path, body, ctype in requests:
        status, got, headers = await api.call(method, path, body, ctype=ctype, accept="text/html")
        assert (status, got) == (406, {"error_code": 406, "message": "HTTP 406 Not Acceptable"}), (
            method,
            path,
        )
        assert plain_json(headers), (method, path, headers)

    for method, path, _, _ in requests:
        if path in ("/brokers", inst + "/records"):
            continue  # Confluent's brokers and records resources take any Content-Type
        status, got, headers = await api.call(method, path, raw=b"{}", ctype="text/plain")
        assert (status, got) == (
            415,
            {"error_code": 415, "message": "HTTP 415 Unsupported Media Type"},
        ), (method, path)
        assert plain_json(headers), (method, path, headers)
    # Refused before anything happened: no instance was created.
    status, got, _ = await api.call("GET", inst + "/subscription")
    assert (status, got["error_code"]) == (404, 40403)


# --- secrets stay out of the logs -------------------------------------------------------------


def test_redact_masks_passwords_and_secret_parameters() -> None:
    assert redact("redis://:pw@host:6379/0") == "redis://:***@host:6379/0"
    assert redact("rediss://default:p%40ss@h:6380/1") == "rediss://default:***@h:6380/1"
    assert redact("http://user:p:w@@reg:8081/x") == "http://user:***@reg:8081/x"
    assert redact("http://token@reg") == "http://***@reg"
    assert redact("redis:/:typo@host") == "redis:/:***@host"  # a mistyped URL too
    assert redact("redis://h/0?db=1&password=pw") == "redis://h/0?db=1&password=***"
    for plain in ("memory://", "redis://host:6379/0", "kafka1:9092,kafka2:9092", ""):
        assert redact(plain) == plain


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("EVENT_GATEWAY_")}


def _require_password(redis: RedisServer, password: str) -> None:
    with socket.create_connection(("127.0.0.1", redis.port), timeout=5) as sock:
        sock.sendall(f"CONFIG SET requirepass {password}\r\n".encode())
        assert sock.recv(64).startswith(b"+OK")


async def test_secrets_never_reach_the_logs(
    kafka_bootstrap: str, redis_server: RedisServer, tmp_path: Path
):
    """A real start-up against a Redis that needs its password, logging at DEBUG: the password
    works (an instance is created through Redis) and appears nowhere in the output."""
    secrets = {
        "redis": "redis-" + uuid.uuid4().hex,
        "registry": "registry-" + uuid.uuid4().hex,
        "basic": "basic-" + uuid.uuid4().hex,
        "cluster": "cluster-" + uuid.uuid4().hex,
    }
    _require_password(redis_server, secrets["redis"])
    port = free_port()
    log = tmp_path / "gateway.log"
    settings = {
        "bootstrap.servers": kafka_bootstrap,
        "listeners": f"http://127.0.0.1:{port}",
        "session.store.url": f"redis://:{secrets['redis']}@127.0.0.1:{redis_server.port}/0",
        "cluster.secret": secrets["cluster"],
        "schema.registry.url": f"http://reg:{secrets['registry']}@127.0.0.1:9",
        "schema.registry.basic.auth.user.info": f"user:{secrets['basic']}",
        "shutdown.readiness.delay.ms": "0",
    }
    args = [a for k, v in settings.items() for a in ("--set", f"{k}={v}")]
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway.cli",
            "serve",
            "--log-level",
            "DEBUG",
            *args,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_env(),
            cwd=ROOT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 30
            while True:
                try:
                    async with session.get(base + "/") as resp:
                        assert resp.status == 200
                        break
                except aiohttp.ClientConnectionError:
                    assert proc.returncode is None, log.read_text()
                    assert time.monotonic() < deadline, log.read_text()
                    await asyncio.sleep(0.2)
            group = group_name()
            async with session.post(
                f"{base}/consumers/{group}",
                data=b'{"name": "c"}',
                headers={"Content-Type": V2_JSON},
            ) as resp:
                assert resp.status == 200, await resp.text()
            async with session.delete(f"{base}/consumers/{group}/instances/c") as resp:
                assert resp.status == 204, await resp.text()
    finally:
        if proc.returncode is None:
            proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 30) == 0, log.read_text()
    text = log.read_text()
    assert f"redis://:***@127.0.0.1:{redis_server.port}/0" in text, text[-3000:]
    assert "http://reg:***@127.0.0.1:9" in text, text[-3000:]
    leaked = [name for name, secret in secrets.items() if secret in text]
    assert leaked == [], leaked


def test_an_invalid_url_is_reported_without_its_password() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "serve",
            "--set",
            "session.store.url=redis:/:hunter2-secret@host/0",
            "--set",
            "cluster.secret=x",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env=_env(),
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 2
    assert "session.store.url" in result.stderr and ":***@host" in result.stderr, result.stderr
    assert "hunter2" not in result.stdout + result.stderr
