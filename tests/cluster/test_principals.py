"""An instance belongs to whoever created it, whichever replica a request lands on.

Three real replicas behind HAProxy with BASIC authentication, one users file written by the
real CLI. alice's instance answers alice on every replica (directly, or through the signed
hop that carries her principal) and is invisible to bob everywhere: 404 40403, exactly what a
name that does not exist answers, so bob cannot even learn that it exists.
"""

from __future__ import annotations

import base64
import subprocess
import sys
import uuid
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from tests.harness.api import MakeClusterFn, NewTopicFn

V2 = "application/vnd.kafka.v2+json"
BINARY = "application/vnd.kafka.binary.v2+json"
CLI = [sys.executable, "-m", "gateway.cli"]


def auth(name: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{name}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    path = tmp_path / "users.txt"
    for name, password in [("alice", "alice-pw"), ("bob", "bob-pw")]:
        done = subprocess.run(
            [*CLI, "user", "add", "--users-file", str(path), name, "--password-stdin"],
            input=password + "\n",
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
    return path


async def test_instance_is_bound_to_its_creator_on_every_replica(
    make_cluster: MakeClusterFn,
    new_topic: NewTopicFn,
    kafka_bootstrap: str,
    users_file: Path,
) -> None:
    cluster = await make_cluster(
        3,
        props={
            "authentication.method": "BASIC",
            "authentication.basic.users.file": str(users_file),
        },
    )
    topic = await new_topic(partitions=1)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for i in range(3):
            await producer.send_and_wait(topic, str(i).encode(), partition=0)
    finally:
        await producer.stop()
    alice, bob = auth("alice", "alice-pw"), auth("bob", "bob-pw")
    group = "bound-" + uuid.uuid4().hex[:8]
    inst = f"/consumers/{group}/instances/a"
    owner = cluster.urls[0]

    async with aiohttp.ClientSession() as http:

        async def call(
            base: str, method: str, path: str, who: dict[str, str], body: object = None
        ) -> tuple[int, object]:
            headers = {**who, "Accept": BINARY if path.endswith("/records") else V2}
            data = None
            if body is not None:
                data, headers["Content-Type"] = orjson.dumps(body), V2
            async with http.request(method, base + path, data=data, headers=headers) as resp:
                raw = await resp.read()
                return resp.status, orjson.loads(raw) if raw else None

        status, body = await call(
            owner,
            "POST",
            f"/consumers/{group}",
            alice,
            {"name": "a", "auto.offset.reset": "earliest", "fetch.min.bytes": 1},
        )
        assert status == 200, body
        status, body = await call(owner, "POST", inst + "/subscription", alice, {"topics": [topic]})
        assert status == 204, body

        # bob: not found on every replica (the owner, the two that would forward, the LB),
        # for reads, writes and delete alike; and the same answer as a name that never was.
        never = f"/consumers/{group}/instances/never-created"
        for base in [*cluster.urls, cluster.lb_url]:
            for method, path, payload in [
                ("GET", inst + "/subscription", None),
                ("GET", inst + "/records", None),
                ("POST", inst + "/offsets", None),
                ("DELETE", inst, None),
            ]:
                status, body = await call(base, method, path, bob, payload)
                assert (status, body) == (
                    404,
                    {"error_code": 40403, "message": "Consumer instance not found."},
                ), (base, method, path, body)
            assert await call(base, "GET", never + "/subscription", bob) == (
                404,
                {"error_code": 40403, "message": "Consumer instance not found."},
            )

        # alice: usable through every replica, directly and through the load balancer.
        got: list[int] = []
        for base in [*cluster.urls, cluster.lb_url]:
            status, body = await call(base, "GET", inst + "/subscription", alice)
            assert (status, body) == (200, {"topics": [topic]}), base
        for _ in range(20):
            base = cluster.urls[len(got) % 3]
            status, body = await call(base, "GET", inst + "/records", alice)
            assert status == 200, body
            assert isinstance(body, list)
            got += [int(base64.b64decode(r["value"])) for r in body]
            if len(got) >= 3:
                break
        assert got == [0, 1, 2]
        # The instance survived bob's attempts (his DELETEs touched nothing); alice deletes it.
        status, _ = await call(cluster.urls[2], "DELETE", inst, alice)
        assert status == 204
        status, _ = await call(owner, "GET", inst + "/subscription", alice)
        assert status == 404
