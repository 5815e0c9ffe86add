"""Fixtures for cluster tests: real gateway processes behind a real HAProxy.

Cluster tests prove what in-process tests cannot: that any replica serves any instance over
real sockets, and that what clients see through a plain round-robin load balancer is the v2
contract. They share the session's Kafka broker and Redis (tests use unique group and topic
names, so clusters of different tests never see each other's instances).
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Generator, Mapping

import pytest

from tests.harness.api import MakeClusterFn
from tests.harness.cluster import GatewayCluster

DEFAULT_PROPS = {
    # Product defaults wait 10 s for Kafka; a cluster test that hits one should fail in seconds.
    "kafka.timeout.ms": "5000",
    "producer.max.block.ms": "3000",
    # The harness's HAProxy notices a replica that turned not-ready within fall x inter = 1 s;
    # waiting the product's 2 s (sized for slower production checks) only slows every teardown.
    "shutdown.readiness.delay.ms": "1200",
}

_CALL_REPORT = pytest.StashKey[pytest.TestReport]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # Remembered so make_cluster's teardown knows whether the test failed.
    report = yield
    if report.when == "call":
        item.stash[_CALL_REPORT] = report
    return report


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "both_worker_modes: run the test with workers=1 and again with workers=2 (replicas of"
        " two worker processes each, see gateway/workers)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("both_worker_modes"):
        metafunc.parametrize("cluster_workers", [1, 2], ids=["1worker", "2workers"])


@pytest.fixture
def cluster_workers() -> int:
    """Worker processes per replica in clusters made by :func:`make_cluster`."""
    return 1


@pytest.fixture
async def make_cluster(
    request: pytest.FixtureRequest, kafka_bootstrap: str, redis_url: str, cluster_workers: int
) -> AsyncIterator[MakeClusterFn]:
    """``cluster = await make_cluster(n=3, props={...})``: started and ready, LB included.

    ``props`` (Confluent-style keys) override :data:`DEFAULT_PROPS` on every replica. Every
    cluster made is stopped at teardown; when the test failed, the end of each replica's log
    and of HAProxy's is printed first (pytest shows it under "Captured stderr teardown").
    """
    clusters: list[GatewayCluster] = []

    async def make(n: int = 3, props: Mapping[str, str] | None = None) -> GatewayCluster:
        cluster = GatewayCluster(
            n,
            bootstrap_servers=kafka_bootstrap,
            redis_url=redis_url,
            props={**DEFAULT_PROPS, "workers": str(cluster_workers), **(props or {})},
        )
        clusters.append(cluster)  # before start(): a failed start still gets cleaned up
        await cluster.start()
        return cluster

    yield make
    report = request.node.stash.get(_CALL_REPORT, None)
    failed = report is not None and report.failed
    errors: list[BaseException] = []
    for cluster in reversed(clusters):
        if failed:
            print(cluster.logs(80), file=sys.stderr)
        try:
            await cluster.stop()
        except Exception as exc:
            errors.append(exc)
    if errors:
        raise errors[0]
