"""The cluster harness does what failure tests rely on: round-robin, and per-replica control.

If these fail, a failover test's verdict means nothing: it may have killed the wrong process,
or the load balancer may not have been balancing at all.
"""

from __future__ import annotations

import aiohttp
import pytest

from tests.harness.api import MakeClusterFn

pytestmark = pytest.mark.asyncio


async def get_all(http: aiohttp.ClientSession, url: str, n: int) -> list[int]:
    statuses = []
    for _ in range(n):
        async with http.get(url) as resp:
            statuses.append(resp.status)
    return statuses


async def test_haproxy_balances_every_request_and_follows_replica_controls(
    make_cluster: MakeClusterFn,
) -> None:
    cluster = await make_cluster(n=3)
    assert len(set(cluster.urls)) == 3 and cluster.lb_url not in cluster.urls
    async with aiohttp.ClientSession() as http:
        # One keep-alive client connection, yet every request goes to the next replica.
        before = {i: int(row["req_tot"]) for i, row in (await cluster.lb_stats()).items()}
        assert await get_all(http, cluster.lb_url + "/topics", 30) == [200] * 30
        after = {i: int(row["req_tot"]) for i, row in (await cluster.lb_stats()).items()}
        assert {i: after[i] - before[i] for i in after} == {0: 10, 1: 10, 2: 10}

        port = cluster.replicas[1].port
        cluster.kill(1)
        await cluster.wait_lb(down=[1], up=[0, 2])
        assert await get_all(http, cluster.lb_url + "/readyz", 6) == [200] * 6
        await cluster.restart(1)
        assert cluster.replicas[1].port == port
        async with http.get(cluster.urls[1] + "/readyz") as resp:
            assert resp.status == 200

        cluster.pause(2)
        await cluster.wait_lb(down=[2])
        assert await get_all(http, cluster.lb_url + "/readyz", 4) == [200] * 4
        cluster.resume(2)
        await cluster.wait_lb(up=[2])

        assert await cluster.terminate(0) == 0  # a clean drain exits 0
        await cluster.wait_lb(down=[0], up=[1, 2])
        assert await get_all(http, cluster.lb_url + "/readyz", 4) == [200] * 4
        await cluster.restart(0)
        await cluster.wait_lb(up=[0, 1, 2])
