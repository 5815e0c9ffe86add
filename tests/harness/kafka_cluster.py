"""A real three-node Kafka (KRaft) cluster on one machine, for leader-failover tests.

The single test broker (:mod:`tests.harness.kafka`) cannot show what users meet when a broker
dies: a partition leader moving to another replica while produce requests and fetches are in
flight. This starts ``n`` nodes from the same jars and the same ``server.properties.in``
template, each a combined broker and controller (``process.roles=broker,controller``): the
fastest layout to start (``n`` JVMs, not ``n`` brokers plus a controller quorum) and one where
killing a node kills a partition leader *and* a controller, as a crashed machine does. The
quorum of three survives one node.

Sized for a shared 2-core machine: small heaps, serial GC, a handful of ``__consumer_offsets``
partitions, and failure detection in seconds rather than Kafka's production defaults (a
killed broker is fenced, and its partitions get new leaders, ~3 s after its last heartbeat).

Nodes are numbered 1..n (their Kafka ``node.id``). ``kill(node)`` is SIGKILL: the broker runs
no shutdown code, gives up no leadership, and the cluster notices only by missed heartbeats.
``restart(node)`` starts it again on its ports and data, as an operator restarts a crashed
broker; ``wait_healthy()`` then waits until every replica is back in sync.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any, Self

from tests.harness import process
from tests.harness.kafka import (
    KAFKA_DEPLOY,
    KafkaStartError,
    _override,
    ensure_jars,
    java_executable,
    new_cluster_id,
    run_async,
)
from tests.harness.ports import free_ports, port_open


def cluster_overrides(n: int) -> dict[str, str]:
    """server.properties keys every node of an ``n``-node cluster shares (template + these)."""
    rf = str(min(n, 3))
    isr = str(min(n - 1, 2) or 1)
    return {
        # Internal topics replicated like a production cluster's, so the group coordinator
        # and transaction state move too when their leader dies.
        "offsets.topic.replication.factor": rf,
        "offsets.topic.num.partitions": "3",  # creating 50 (the default) costs seconds
        "transaction.state.log.replication.factor": rf,
        "transaction.state.log.min.isr": isr,
        "transaction.state.log.num.partitions": "3",
        "share.coordinator.state.topic.replication.factor": rf,
        "share.coordinator.state.topic.min.isr": isr,
        "default.replication.factor": rf,
        "min.insync.replicas": isr,
        # Fence a silent broker after 3 s (default 9 s) so its partitions move quickly; the
        # heartbeat interval must stay well below it.
        "broker.heartbeat.interval.ms": "500",
        "broker.session.timeout.ms": "3000",
        # Clean elections only: a failover test must never lose acknowledged records to an
        # out-of-sync replica taking over.
        "unclean.leader.election.enable": "false",
    }


@dataclass
class Node:
    node_id: int
    port: int
    controller_port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "kafka.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class KafkaCluster:
    """``n`` combined broker+controller nodes on free loopback ports, data in a temp folder.

    ``start()`` and ``stop()`` are synchronous (for module fixtures); what a test does while
    its own event loop runs (``restart``, ``leader_of``, ``wait_healthy``) is async.
    """

    def __init__(
        self,
        n: int = 3,
        *,
        jars: Path | None = None,
        heap: str = "384m",
        start_timeout: float = 90.0,
        overrides: Mapping[str, str] | None = None,
    ) -> None:
        if n < 1:
            raise ValueError("a cluster needs at least one node")
        self.n = n
        self.jars = jars
        self.heap = heap
        self.start_timeout = start_timeout
        self.overrides = {**cluster_overrides(n), **(overrides or {})}
        self.keep_dir = bool(os.environ.get("EVENT_GATEWAY_KEEP_TEST_DIRS"))
        self.workdir: Path | None = None
        self.nodes: dict[int, Node] = {}
        self.startup_seconds = 0.0
        self._java = ""
        self._jar_dir: Path | None = None

    # --- addresses ---------------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """Every node's client address: clients survive any one node being down."""
        return ",".join(node.address for node in self.nodes.values())

    def node_of(self, address: str) -> int:
        """The node id listening at ``host:port``."""
        for node in self.nodes.values():
            if node.address == address:
                return node.node_id
        raise KeyError(address)

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> str:
        """Format and start every node; return the bootstrap once all ``n`` brokers serve.

        All nodes format and start in parallel (a JVM start is most of the time). Ready
        means: metadata lists every broker and the group coordinator answers, so
        ``__consumer_offsets`` exists with all its replicas before the first test.
        """
        if self.nodes:
            raise RuntimeError("already started")
        began = time.monotonic()
        self._jar_dir = self.jars or ensure_jars()
        self._java = java_executable()
        self.workdir = Path(tempfile.mkdtemp(prefix="eg-kafka-cluster-"))
        try:
            for attempt in range(3):
                ports = free_ports(2 * self.n)
                self.nodes = {
                    i: Node(i, ports[2 * i - 2], ports[2 * i - 1], self.workdir / f"node-{i}")
                    for i in range(1, self.n + 1)
                }
                self._format_all()
                for node in self.nodes.values():
                    self._spawn(node)
                try:
                    self._wait_ready(began + self.start_timeout)
                    break
                except KafkaStartError:
                    logs = "".join(process.tail(n.log_path, 200) for n in self.nodes.values())
                    self._stop_nodes(grace=5)
                    if "Address already in use" not in logs or attempt == 2:
                        raise
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self.bootstrap

    def stop(self) -> None:
        """Stop every node (SIGTERM, SIGKILL after 10 s) and delete the data."""
        self._stop_nodes(grace=10)
        if self.workdir is not None and not self.keep_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _stop_nodes(self, grace: float) -> None:
        running = [n.process for n in self.nodes.values() if n.running]
        for proc in running:
            assert proc is not None
            proc.terminate()  # all at once: a lone survivor would wait for its lost quorum
        for node in self.nodes.values():
            process.stop(node.process, grace)
            node.process = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- failures ----------------------------------------------------------------------------

    def kill(self, node_id: int) -> None:
        """SIGKILL node ``node_id`` (broker and controller at once) and reap it."""
        node = self.nodes[node_id]
        if node.process is None or node.process.poll() is not None:
            raise RuntimeError(f"node {node_id} is not running")
        node.process.kill()
        node.process.wait(10)

    async def restart(self, node_id: int, timeout: float = 60.0) -> float:  # noqa: ASYNC109
        """Start a killed node again on its ports and data; return once it serves metadata
        as a registered broker (seconds taken). Its replicas may still be catching up: call
        :meth:`wait_healthy` for that."""
        node = self.nodes[node_id]
        if node.running:
            raise RuntimeError(f"node {node_id} is still running; kill() it first")
        began = time.monotonic()
        # Spawned from the event loop's (main) thread: the parent-death signal is per thread.
        self._spawn(node)
        deadline = began + timeout
        last = "not listening yet"
        while time.monotonic() < deadline:
            if node.process is not None and node.process.poll() is not None:
                raise KafkaStartError(
                    f"node {node_id} exited with {node.process.returncode} on restart:\n"
                    f"{process.tail(node.log_path)}"
                )
            if port_open("127.0.0.1", node.port):
                try:
                    if node_id in await self.live_brokers():
                        return time.monotonic() - began
                    last = "not registered (or still fenced)"
                except Exception as exc:
                    last = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(0.3)
        raise KafkaStartError(
            f"node {node_id} not back within {timeout:.0f} s (last: {last}):\n"
            f"{process.tail(node.log_path)}"
        )

    # --- views -------------------------------------------------------------------------------

    async def live_brokers(self) -> set[int]:
        """Node ids the cluster's metadata lists as brokers (registered, not fenced)."""
        cluster = await self._admin_call(lambda admin: admin.describe_cluster())
        return {b["node_id"] for b in cluster["brokers"]}

    async def partitions(self, topic: str) -> dict[int, dict[str, Any]]:
        """Partition id -> ``{"leader", "replicas", "isr"}`` as the metadata shows them now."""
        (info,) = await self._admin_call(lambda admin: admin.describe_topics([topic]))
        if info["error_code"]:
            raise RuntimeError(f"metadata of {topic}: error {info['error_code']}")
        return {
            p["partition"]: {"leader": p["leader"], "replicas": p["replicas"], "isr": p["isr"]}
            for p in info["partitions"]
        }

    async def leader_of(self, topic: str, partition: int) -> int:
        """The node id leading ``topic``/``partition`` (-1 while it has none)."""
        leader: int = (await self.partitions(topic))[partition]["leader"]
        return leader

    async def wait_leader_moved(
        self,
        topic: str,
        partition: int,
        away_from: int,
        timeout: float = 60.0,  # noqa: ASYNC109
    ) -> tuple[int, float]:
        """Wait until the partition is led by a node other than ``away_from``; return
        (new leader, seconds waited)."""
        began = time.monotonic()
        last: object = None
        while time.monotonic() - began < timeout:
            try:
                last = await self.leader_of(topic, partition)
                if last not in (away_from, -1):
                    return int(str(last)), time.monotonic() - began
            except Exception as exc:  # the admin may have asked the dead node
                last = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(0.2)
        raise AssertionError(
            f"{topic}/{partition} still led by {away_from} after {timeout:.0f} s ({last})"
        )

    async def wait_healthy(
        self,
        topics: Sequence[str] = (),
        timeout: float = 90.0,  # noqa: ASYNC109
    ) -> float:
        """Wait until every node is a live broker and every partition of ``topics`` (and of
        ``__consumer_offsets``) has a leader and all its replicas in sync; return seconds."""
        began = time.monotonic()
        last = "not checked yet"
        names = [*topics, "__consumer_offsets"]
        while time.monotonic() - began < timeout:
            try:
                live = await self.live_brokers()
                if live != set(self.nodes):
                    last = f"live brokers {sorted(live)}"
                else:
                    lagging = [
                        f"{name}/{p}: leader {info['leader']} isr {info['isr']}"
                        for name in names
                        for p, info in (await self.partitions(name)).items()
                        if info["leader"] < 0 or sorted(info["isr"]) != sorted(info["replicas"])
                    ]
                    if not lagging:
                        return time.monotonic() - began
                    last = "; ".join(lagging[:5])
            except Exception as exc:
                last = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(0.3)
        raise AssertionError(f"cluster not healthy after {timeout:.0f} s: {last}")

    # --- internals ---------------------------------------------------------------------------

    async def _admin_call(self, call: Any) -> Any:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
        try:
            await asyncio.wait_for(admin.start(), 10)
            return await asyncio.wait_for(call(admin), 10)
        finally:
            await admin.close()

    def _properties(self, node: Node) -> str:
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes.values())
        template = Template((KAFKA_DEPLOY / "server.properties.in").read_text())
        text = template.substitute(
            port=node.port, controller_port=node.controller_port, log_dir=node.workdir / "data"
        )
        return _override(
            text,
            {"node.id": str(node.node_id), "controller.quorum.voters": voters, **self.overrides},
        )

    def _format_all(self) -> None:
        """``StorageTool format`` every node with one cluster id, in parallel."""
        cluster_id = new_cluster_id()
        for node in self.nodes.values():
            shutil.rmtree(node.workdir, ignore_errors=True)
            node.workdir.mkdir(parents=True)
            (node.workdir / "server.properties").write_text(self._properties(node))
        with ThreadPoolExecutor(self.n) as pool:
            results = list(
                pool.map(lambda node: self._format(node, cluster_id), self.nodes.values())
            )
        failed = [r for r in results if r]
        if failed:
            raise KafkaStartError("\n".join(failed))

    def _format(self, node: Node, cluster_id: str) -> str:
        result = subprocess.run(
            [
                self._java,
                "-Xmx128m",
                "-XX:TieredStopAtLevel=1",
                f"-Dlog4j2.configurationFile={KAFKA_DEPLOY / 'log4j2.properties'}",
                "-cp",
                f"{self._jar_dir}/*",
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(node.workdir / "server.properties"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode == 0:
            return ""
        return (
            f"node {node.node_id}: StorageTool format exited {result.returncode}:\n"
            f"{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        )

    def _spawn(self, node: Node) -> None:
        node.process = process.spawn(
            [
                self._java,
                "-Xms128m",
                f"-Xmx{self.heap}",
                "-XX:+UseSerialGC",
                f"-Dlog4j2.configurationFile={KAFKA_DEPLOY / 'log4j2.properties'}",
                "-cp",
                f"{self._jar_dir}/*",
                "kafka.Kafka",
                str(node.workdir / "server.properties"),
            ],
            node.log_path,
            cwd=node.workdir,
        )

    def _wait_ready(self, deadline: float) -> None:
        last = "never listened"
        while time.monotonic() < deadline:
            for node in self.nodes.values():
                assert node.process is not None
                if (code := node.process.poll()) is not None:
                    raise KafkaStartError(
                        f"node {node.node_id} exited with {code} during start-up; its log "
                        f"ends:\n{process.tail(node.log_path)}"
                    )
            if all(port_open("127.0.0.1", n.port) for n in self.nodes.values()):
                try:
                    run_async(self._probe, timeout=30)
                    return
                except Exception as exc:
                    last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.3)
        tails = "\n".join(
            f"--- node {n.node_id}:\n{process.tail(n.log_path, 30)}" for n in self.nodes.values()
        )
        raise KafkaStartError(
            f"Kafka cluster {self.bootstrap} not ready within {self.start_timeout:.0f} s "
            f"(last check: {last}); logs end:\n{tails}"
        )

    async def _probe(self) -> None:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
        await admin.start()
        try:
            cluster = await admin.describe_cluster()
            live = {b["node_id"] for b in cluster.get("brokers", [])}
            if live != set(self.nodes):
                raise KafkaStartError(f"metadata lists brokers {sorted(live)} only")
            await admin.find_coordinator("event-gateway-harness-warmup")
        finally:
            await admin.close()
