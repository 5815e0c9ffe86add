"""With no replica ready, the balancer's own answer is still the gateway's retriable 503.

HAProxy answers a request itself when every server is down (all draining, or all cut off from
Kafka or Redis at once, as a failover of either can do for a second or two). Its default page
is HTML without ``Retry-After``, which clients written for the gateway's
``{"error_code", "message"}`` answers choke on. ``deploy/haproxy.cfg`` (and the test harness's
copy of it) replace it with the gateway's shape and ``Retry-After: 1``.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.harness.api import MakeClusterFn

ROOT = Path(__file__).resolve().parents[2]
_HTTP_ERROR = re.compile(r"^\s*http-error status 503 .*$", re.MULTILINE)


def test_deployed_config_and_harness_answer_alike() -> None:
    deployed = _HTTP_ERROR.findall((ROOT / "deploy/haproxy.cfg").read_text())
    harness = _HTTP_ERROR.findall(
        (ROOT / "tests/harness/cluster.py")
        .read_text()
        .replace("{{", "{")
        .replace("}}", "}")
        .replace("\\\\", "\\")
    )
    assert len(deployed) == 1
    assert [h.strip() for h in harness] == [deployed[0].strip()]


@pytest.mark.asyncio
async def test_no_ready_replica_is_a_json_503_with_retry_after(make_cluster: MakeClusterFn) -> None:
    cluster = await make_cluster(n=2)
    for i in range(2):
        cluster.pause(i)
    try:
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as http:
            while True:
                # Until the health checks mark both down, a request may hang on a frozen one.
                seen: object = "no answer"
                try:
                    async with http.get(
                        cluster.lb_url + "/topics", timeout=aiohttp.ClientTimeout(total=3)
                    ) as resp:
                        body = await resp.read()
                        seen = (resp.status, body[:200])
                        if resp.status == 503 and resp.headers.get("Retry-After") == "1":
                            break
                except TimeoutError:
                    pass
                assert time.monotonic() < deadline, seen
                await asyncio.sleep(0.2)
        assert resp.content_type == "application/json"
        answer = orjson.loads(body)
        assert answer["error_code"] == 503
        assert "no gateway replica is ready" in answer["message"]
    finally:
        for i in range(2):
            cluster.resume(i)
