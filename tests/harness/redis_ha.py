"""Replicated Redis for failover tests: Sentinel (a primary, two replicas, three sentinels) and
Redis Cluster (three primaries, one replica each), all from Debian's ``redis-server``.

Everything listens on free loopback ports, keeps no data on disk and fails over fast
(``down-after-milliseconds`` / ``cluster-node-timeout`` of 1 s), so a test can SIGKILL the
primary and see a replica promoted within a few seconds. Start-up waits until the deployment
is really ready for a failover (replicas linked, sentinels aware of each other and of both
replicas; every cluster slot covered and every primary with a linked replica), so a kill right
after ``start()`` is a fair test. ``stop()`` kills whatever is left and is safe at any point.

TLS (``tls=TLSFiles.create(folder)``): every server, replica link, cluster bus and sentinel
speaks TLS only (``--port 0``), demands a client certificate signed by the test CA, and the
deployment's ``url`` becomes the ``rediss…`` form with the CA and client certificate options.
:class:`RedisServer` is one such server (or a plain one) on its own.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlencode

import redis

from tests.harness import process
from tests.harness.ports import free_ports

SERVICE = "eg-primary"
# Failure detection and failover pacing for tests (production uses 5-30 s).
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 4000
NODE_TIMEOUT_MS = 1000


class RedisHAStartError(RuntimeError):
    """A server did not come up or the deployment did not settle; carries the logs' ends."""


@dataclass(frozen=True)
class TLSFiles:
    """A test CA, a server certificate for 127.0.0.1 (servers and sentinels also present it
    as clients, to each other) and a client certificate, as PEM files."""

    ca: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path
    auth_clients: bool = True  # servers demand a client certificate from the CA

    @classmethod
    def create(cls, directory: Path, *, auth_clients: bool = True) -> TLSFiles:
        from tests.support.certs import TestCA

        directory.mkdir(parents=True, exist_ok=True)
        ca = TestCA("event-gateway redis test CA")
        cert, key = ca.issue("127.0.0.1", ips=("127.0.0.1",)).write(directory, "server-")
        client_cert, client_key = ca.issue("event-gateway").write(directory, "client-")
        return cls(ca.write(directory / "ca.pem"), cert, key, client_cert, client_key, auth_clients)

    def server_options(self) -> list[tuple[str, str]]:
        """redis-server / sentinel options (the port itself is set by the caller)."""
        return [
            ("tls-cert-file", str(self.cert)),
            ("tls-key-file", str(self.key)),
            ("tls-ca-cert-file", str(self.ca)),
            ("tls-auth-clients", "yes" if self.auth_clients else "no"),
            ("tls-replication", "yes"),  # replicas and sentinels reach servers over TLS
        ]

    def client_kwargs(self) -> dict[str, Any]:
        """redis-py keyword arguments for a verifying client with the client certificate."""
        return {
            "ssl": True,
            "ssl_ca_certs": str(self.ca),
            "ssl_certfile": str(self.client_cert),
            "ssl_keyfile": str(self.client_key),
        }

    def url_options(self) -> str:
        """The ``session.store.url`` query for the CA and the client certificate."""
        return urlencode(
            {
                "ssl_ca_certs": str(self.ca),
                "ssl_certfile": str(self.client_cert),
                "ssl_keyfile": str(self.client_key),
                "ssl_cert_reqs": "required",
                "ssl_check_hostname": "true",
            }
        )


def _tls_client(tls: TLSFiles | None) -> dict[str, Any]:
    return tls.client_kwargs() if tls is not None else {}


@dataclass
class Node:
    name: str
    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    tls: TLSFiles | None = None  # set: the node listens on TLS only (on ``port``)

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def client(self, timeout: float = 1.0) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            **_tls_client(self.tls),
        )

    def query(self, *args: Any) -> Any:
        """One command on a fresh connection (never a pooled one to a killed server)."""
        c = self.client()
        try:
            return c.execute_command(*args)
        finally:
            c.close()

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, nothing not yet replicated survives."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def _binary() -> str:
    binary = shutil.which("redis-server")
    if not binary:
        raise RedisHAStartError("no `redis-server` on PATH (Debian: apt-get install redis-server)")
    return binary


def _wait(what: str, check: Callable[[], bool], deadline: float, logs: Callable[[], str]) -> None:
    last: object = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (redis.RedisError, OSError) as exc:
            last = exc
        time.sleep(0.05)
    raise RedisHAStartError(f"{what} did not happen in time (last error: {last})\n{logs()}")


class _Deployment:
    """Common lifecycle: a temporary folder, spawned nodes, logs for failure messages."""

    def __init__(self, prefix: str, start_timeout: float, tls: TLSFiles | None = None) -> None:
        self.start_timeout = start_timeout
        self.tls = tls
        self.workdir = Path(tempfile.mkdtemp(prefix=prefix))
        self.nodes: list[Node] = []

    def _node(self, name: str, port: int) -> Node:
        d = self.workdir / name
        d.mkdir()
        return Node(name, port, d, tls=self.tls)

    def _spawn(self, node: Node, args: list[str]) -> None:
        node.process = process.spawn([_binary(), *args], node.log_path, cwd=node.workdir)

    def _base_args(self, node: Node) -> list[str]:
        if node.tls is None:
            listen = ["--port", str(node.port)]
        else:  # TLS only: no plaintext port at all
            listen = ["--port", "0", "--tls-port", str(node.port)]
            for name, value in node.tls.server_options():
                listen += [f"--{name}", value]
        return [
            *listen,
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(node.workdir),
            # Replicas sync at once (the default waits 5 s for more replicas to share a sync).
            "--repl-diskless-sync-delay", "0",
        ]  # fmt: skip

    def logs(self, lines: int = 25) -> str:
        return "\n".join(
            f"--- {n.name} ({n.address}):\n{process.tail(n.log_path, lines)}" for n in self.nodes
        )

    def stop(self) -> None:
        for node in self.nodes:
            process.stop(node.process, 3)
            node.process = None
        if not os.environ.get("EVENT_GATEWAY_KEEP_TEST_DIRS"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()  # type: ignore[attr-defined]
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RedisServer(_Deployment):
    """One Redis server (no replica): ``rediss://`` with ``tls``, else ``redis://``."""

    def __init__(self, *, start_timeout: float = 10.0, tls: TLSFiles | None = None) -> None:
        super().__init__("eg-redis-", start_timeout, tls)

    @property
    def node(self) -> Node:
        return self.nodes[0]

    @property
    def url(self) -> str:
        if self.tls is None:
            return f"redis://{self.node.address}/0"
        return f"rediss://{self.node.address}/0?{self.tls.url_options()}"

    def start(self) -> str:
        deadline = time.monotonic() + self.start_timeout
        self.nodes = [self._node("redis", free_ports(1)[0])]
        try:
            self._spawn(self.node, self._base_args(self.node))
            _wait("the server answering", lambda: _pong(self.node), deadline, self.logs)
            return self.url
        except BaseException:
            self.stop()
            raise


class RedisSentinelSet(_Deployment):
    """A primary, two replicas and three sentinels (quorum 2) monitoring ``SERVICE``."""

    def __init__(
        self,
        *,
        start_timeout: float = 20.0,
        password: str | None = None,
        tls: TLSFiles | None = None,
    ) -> None:
        super().__init__("eg-sentinel-", start_timeout, tls)
        self.password = password
        self.servers: list[Node] = []
        self.sentinels: list[Node] = []

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        hosts = ",".join(s.address for s in self.sentinels)
        if self.tls is None:
            return f"redis+sentinel://{auth}{hosts}/{SERVICE}/0"
        return f"rediss+sentinel://{auth}{hosts}/{SERVICE}/0?{self.tls.url_options()}"

    def start(self) -> str:
        deadline = time.monotonic() + self.start_timeout
        ports = free_ports(6)
        for i, port in enumerate(ports[:3]):
            self.servers.append(self._node(f"redis-{i}", port))
        for i, port in enumerate(ports[3:]):
            self.sentinels.append(self._node(f"sentinel-{i}", port))
        self.nodes = [*self.servers, *self.sentinels]
        try:
            primary = self.servers[0]
            for node in self.servers:
                args = self._base_args(node)
                if self.password:
                    args += ["--requirepass", self.password, "--masterauth", self.password]
                if node is not primary:
                    args += ["--replicaof", "127.0.0.1", str(primary.port)]
                self._spawn(node, args)
            _wait(
                "both replicas linked to the primary",
                lambda: self._info(primary, "replication").get("connected_slaves") == 2,
                deadline,
                self.logs,
            )
            # Sentinels start once the replicas are linked: their first INFO of the primary
            # then lists both (later ones are only found at the next 10 s INFO).
            for node in self.sentinels:
                conf = node.workdir / "sentinel.conf"
                auth = f"sentinel auth-pass {SERVICE} {self.password}\n" if self.password else ""
                if self.tls is None:
                    listen = f"port {node.port}\n"
                else:  # TLS to clients, to the servers and to the other sentinels
                    options = [("port", "0"), ("tls-port", str(node.port))]
                    options += self.tls.server_options()
                    listen = "".join(f"{k} {v}\n" for k, v in options)
                conf.write_text(
                    f"{listen}bind 127.0.0.1\ndir {node.workdir}\n"
                    f"sentinel monitor {SERVICE} 127.0.0.1 {primary.port} 2\n"
                    f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
                    f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
                    f"sentinel parallel-syncs {SERVICE} 2\n{auth}"
                )
                self._spawn(node, [str(conf), "--sentinel"])
            _wait(
                "sentinels aware of each other and of both replicas",
                self._settled,
                deadline,
                self.logs,
            )
            return self.url
        except BaseException:
            self.stop()
            raise

    def _info(self, node: Node, section: str) -> dict[str, Any]:
        c = redis.Redis(
            host="127.0.0.1",
            port=node.port,
            password=self.password,
            socket_timeout=1.0,
            **_tls_client(self.tls),
        )
        try:
            return dict(c.info(section))
        finally:
            c.close()

    def _settled(self) -> bool:
        for s in self.sentinels:
            state = _pairs(s.query("SENTINEL", "MASTER", SERVICE))
            if state.get("num-slaves") != "2" or state.get("num-other-sentinels") != "2":
                return False
        return True

    def primary_port(self) -> int:
        """The primary the sentinels agree on now (asked of a live sentinel)."""
        for s in self.sentinels:
            if s.running:
                with contextlib.suppress(redis.RedisError, OSError):
                    _, port = s.query("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
                    return int(port)
        raise RuntimeError("no sentinel answers")

    def primary(self) -> Node:
        port = self.primary_port()
        return next(n for n in self.servers if n.port == port)

    def kill_primary(self) -> Node:
        node = self.primary()
        node.kill()
        return node

    def wait_failover(self, old_port: int, timeout: float = 60.0) -> int:
        """Wait until every sentinel names a new primary that answers as one; its port."""
        deadline = time.monotonic() + timeout
        found: list[int] = []

        def promoted() -> bool:
            ports = {self._ask(s) for s in self.sentinels if s.running}
            if len(ports) != 1 or old_port in ports or None in ports:
                return False
            (port,) = ports
            node = next(n for n in self.servers if n.port == port)
            if self._info(node, "replication").get("role") != "master":
                return False
            found.append(int(port))  # type: ignore[arg-type]
            return True

        _wait("a replica promoted by the sentinels", promoted, deadline, self.logs)
        return found[-1]

    def _ask(self, s: Node) -> int | None:
        try:
            _, port = s.query("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
            return int(port)
        except (redis.RedisError, OSError, TypeError, ValueError):
            return None


class RedisClusterSet(_Deployment):
    """Three primaries with one replica each (``redis-cli --cluster create``)."""

    def __init__(
        self, *, start_timeout: float = 30.0, replicas: int = 1, tls: TLSFiles | None = None
    ) -> None:
        super().__init__("eg-rcluster-", start_timeout, tls)
        self.replicas = replicas

    @property
    def url(self) -> str:
        hosts = ",".join(n.address for n in self.nodes[:3])
        if self.tls is None:
            return "redis+cluster://" + hosts
        return f"rediss+cluster://{hosts}?{self.tls.url_options()}"

    def start(self) -> str:
        deadline = time.monotonic() + self.start_timeout
        count = 3 * (1 + self.replicas)
        ports = free_ports(2 * count)  # each node's client port and its cluster bus port
        bus: dict[str, int] = {}
        for i, port in enumerate(ports[:count]):
            self.nodes.append(self._node(f"node-{i}", port))
            bus[f"node-{i}"] = ports[count + i]
        try:
            for node in self.nodes:
                self._spawn(
                    node,
                    [
                        *self._base_args(node),
                        "--cluster-enabled", "yes",
                        "--cluster-config-file", str(node.workdir / "nodes.conf"),
                        "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                        # Explicit: the default (port + 10000) is out of range for high ports.
                        "--cluster-port", str(bus[node.name]),
                        # A replica is promoted whatever its lag: the test measures what the
                        # gateway does about lag, so Redis must not refuse the failover.
                        "--cluster-replica-validity-factor", "0",
                        # Replication offsets move every second even with no writes, so
                        # replicas appear in CLUSTER SLOTS (offset 0 ones are left out).
                        "--repl-ping-replica-period", "1",
                        # TLS on the cluster bus too (and node addresses are the TLS ports).
                        *(["--tls-cluster", "yes"] if self.tls is not None else []),
                    ],
                )  # fmt: skip
            _wait(
                "every node answering",
                lambda: all(_pong(n) for n in self.nodes),
                deadline,
                self.logs,
            )
            cli = shutil.which("redis-cli")
            if not cli:
                raise RedisHAStartError(
                    "no `redis-cli` on PATH (Debian: apt-get install redis-tools)"
                )
            tls_args = []
            if self.tls is not None:
                tls_args = [
                    "--tls", "--cacert", str(self.tls.ca),
                    "--cert", str(self.tls.client_cert), "--key", str(self.tls.client_key),
                ]  # fmt: skip
            out = subprocess.run(
                [
                    cli, *tls_args, "--cluster", "create", *(n.address for n in self.nodes),
                    "--cluster-replicas", str(self.replicas), "--cluster-yes",
                ],
                capture_output=True, text=True, timeout=max(5.0, deadline - time.monotonic()),
                check=False,
            )  # fmt: skip
            if out.returncode != 0:
                raise RedisHAStartError(
                    f"redis-cli --cluster create failed:\n{out.stdout}{out.stderr}"
                )
            _wait("the cluster settled", self._settled, deadline, self.logs)
            return self.url
        except BaseException:
            self.stop()
            raise

    def _settled(self) -> bool:
        for node in self.nodes:
            info = node.query("CLUSTER", "INFO").decode()
            if (
                "cluster_state:ok" not in info
                or f"cluster_known_nodes:{len(self.nodes)}" not in info
            ):
                return False
        primaries = [n for n in self._view() if "master" in n["flags"]]
        if len(primaries) != 3:
            return False
        linked = [n for n in self._view() if "slave" in n["flags"] and n["link"] == "connected"]
        if len(linked) < 3 * self.replicas:
            return False
        for node in self.nodes:
            role = node.query("ROLE")
            if role[0] == b"master" and len(role[2]) < self.replicas:
                return False  # a primary whose replica has not finished its sync yet
        # Clients learn replicas from CLUSTER SLOTS: each range lists its replicas there.
        slots = self.nodes[0].query("CLUSTER", "SLOTS")
        return len(slots) == 3 and all(len(entry) >= 3 + self.replicas for entry in slots)

    def _view(self, via: Node | None = None) -> list[dict[str, Any]]:
        asker = via or next(n for n in self.nodes if n.running)
        out = []
        for line in asker.query("CLUSTER", "NODES").decode().splitlines():
            parts = line.split()
            out.append(
                {
                    "id": parts[0],
                    "port": int(parts[1].split("@")[0].rsplit(":", 1)[1]),
                    "flags": parts[2].split(","),
                    "primary": parts[3],
                    "link": parts[7],
                    "slots": parts[8:],
                }
            )
        return out

    def owner_port(self, key: str) -> int:
        """The port of the primary serving ``key``'s slot now (as a live node sees it)."""
        asker = next(n for n in self.nodes if n.running)
        slot = int(asker.query("CLUSTER", "KEYSLOT", key))
        for entry in asker.query("CLUSTER", "SLOTS"):
            if entry[0] <= slot <= entry[1]:
                return int(entry[2][1])
        raise RuntimeError(f"slot {slot} is not covered")

    def kill_owner(self, key: str) -> Node:
        """SIGKILL the primary serving ``key``."""
        port = self.owner_port(key)
        node = next(n for n in self.nodes if n.port == port)
        node.kill()
        return node

    def wait_failover(self, key: str, old_port: int, timeout: float = 60.0) -> int:
        """Wait until a replica took over ``key``'s slot and the cluster is ok; its port."""
        deadline = time.monotonic() + timeout
        found: list[int] = []

        def promoted() -> bool:
            live = [n for n in self.nodes if n.running]
            if not all("cluster_state:ok" in n.query("CLUSTER", "INFO").decode() for n in live):
                return False
            port = self.owner_port(key)
            if port == old_port:
                return False
            found.append(port)
            return True

        _wait("a replica promoted in the cluster", promoted, deadline, self.logs)
        return found[-1]


def _pong(node: Node) -> bool:
    return bool(node.query("PING"))


def _pairs(flat: Any) -> dict[str, str]:
    if isinstance(flat, dict):
        return {_text(k): _text(v) for k, v in flat.items()}
    items = [_text(x) for x in flat]
    return dict(zip(items[::2], items[1::2], strict=False))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
