"""N real gateway processes behind a real HAProxy: the production topology, on loopback.

In-process gateways (``make_gateway``) share one event loop and one Python heap, so they cannot
show what only separate processes show: forwarding over real sockets, a replica that dies
without running any code (SIGKILL), one that hangs (SIGSTOP), a load balancer that hands each
request to whichever replica is next. This harness starts exactly that: every replica is
``python -m gateway.cli serve`` on its own free port with its own log, all sharing one Redis
and one ``cluster.secret``, and HAProxy balances round-robin over them with no stickiness and
the same ``/readyz`` health check as deploy/haproxy.cfg (only much faster, so tests that kill
a replica do not wait seconds for the LB to notice).

Lifecycle is explicit: ``await cluster.start()`` ... ``await cluster.stop()``; ``stop()`` is
safe to call at any point, also after a failed ``start()``, and kills whatever is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from tests.harness import process
from tests.harness.ports import free_ports

REPO = Path(__file__).resolve().parents[2]
ENV_PREFIX = "EVENT_GATEWAY_"
START_MARK = "--- harness: starting replica at "


class ClusterStartError(RuntimeError):
    """A replica or HAProxy did not come up; the message carries the end of every log."""


@dataclass
class Replica:
    index: int
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    paused: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def properties_text(props: Mapping[str, str]) -> str:
    """``props`` as a Java .properties file the gateway's parser reads back unchanged."""

    def esc(text: str, *, key: bool) -> str:
        text = text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
        if key:
            for ch in "=: #!":
                text = text.replace(ch, "\\" + ch)
        elif text[:1].isspace():
            text = "\\" + text
        return text

    return "".join(f"{esc(k, key=True)}={esc(str(v), key=False)}\n" for k, v in props.items())


def child_env() -> dict[str, str]:
    """This environment minus ``EVENT_GATEWAY_*``: a developer's shell settings (or CI's) must
    not silently override the configuration a test asked for, since env beats the file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env["PYTHONUNBUFFERED"] = "1"  # log lines reach the file before a SIGKILL, not after
    return env


class GatewayCluster:
    """``n`` gateway replicas plus one HAProxy in front of them.

    ``props`` (Confluent-style keys) go to every replica through one shared properties file;
    the harness adds only what must differ per replica (``listeners``) and what must be shared
    for the cluster to be one (Redis, ``cluster.secret``, ``advertised.listeners`` = the LB).
    """

    def __init__(
        self,
        n: int,
        *,
        bootstrap_servers: str,
        redis_url: str,
        props: Mapping[str, str] | None = None,
        secret: str | None = None,
        start_timeout: float = 30.0,
        log_level: str = "INFO",
        replica_props: Mapping[int, Mapping[str, str]] | None = None,
    ) -> None:
        if n < 1:
            raise ValueError("a cluster needs at least one replica")
        self.n = n
        self.bootstrap_servers = bootstrap_servers
        self.redis_url = redis_url
        self.secret = secret or uuid.uuid4().hex
        self.extra_props = dict(props or {})
        # Per replica, on top of the shared file (e.g. one replica's own route to Redis).
        self.replica_props = {i: dict(p) for i, p in (replica_props or {}).items()}
        self.start_timeout = start_timeout
        self.log_level = log_level
        self.workdir: Path | None = None
        self.replicas: list[Replica] = []
        self.lb_port = 0
        self.stats_port = 0
        self.haproxy: subprocess.Popen[bytes] | None = None
        self._started = False

    # --- addresses ---------------------------------------------------------------------------

    @property
    def lb_url(self) -> str:
        """The HAProxy address; also every replica's ``advertised.listeners``."""
        return f"http://127.0.0.1:{self.lb_port}"

    @property
    def urls(self) -> list[str]:
        """Each replica's own base URL, in index order (stable across restarts)."""
        return [r.url for r in self.replicas]

    @property
    def haproxy_log(self) -> Path:
        assert self.workdir is not None, "not started"
        return self.workdir / "haproxy.log"

    @property
    def config_path(self) -> Path:
        assert self.workdir is not None, "not started"
        return self.workdir / "cluster.properties"

    def properties(self) -> dict[str, str]:
        """What every replica is started with (before its own ``listeners``)."""
        return {
            "bootstrap.servers": self.bootstrap_servers,
            "session.store.url": self.redis_url,
            "cluster.secret": self.secret,
            "advertised.listeners": self.lb_url,
            # One process per replica unless a test asks for workers: "auto" would make the
            # suite's behaviour depend on the machine's core count.
            "workers": "1",
            **self.extra_props,
        }

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start every replica, wait until all are ready, then HAProxy, and wait until it
        routes to all of them; bounded by ``start_timeout``, failing with every log's end."""
        if self._started:
            raise RuntimeError("already started")
        self._started = True
        try:
            await self._start(time.monotonic() + self.start_timeout)
        except BaseException:
            # Nothing may outlive a failed start; the error already carries every log's end.
            await self.stop(grace=2)
            raise

    async def _start(self, deadline: float) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="eg-cluster-"))
        ports = free_ports(self.n + 2)
        self.lb_port, self.stats_port = ports[-2:]
        self.replicas = [
            Replica(i, port, self.workdir / f"replica-{i}.log") for i, port in enumerate(ports)
        ][: self.n]
        self.config_path.write_text(properties_text(self.properties()))
        for r in self.replicas:
            self._spawn(r)
        await asyncio.gather(*(self._wait_first_start(r, deadline) for r in self.replicas))
        self._start_haproxy()
        await self.wait_lb(up=range(self.n), deadline=deadline)
        await self._wait_ok(self.lb_url + "/readyz", "HAProxy", deadline, self._check_haproxy_alive)

    async def stop(self, grace: float = 10.0) -> None:
        """SIGTERM everything (replicas drain), SIGKILL whatever outlives ``grace``."""
        procs = [r.process for r in self.replicas if r.process is not None]
        if self.haproxy is not None:
            procs.append(self.haproxy)
        for proc in procs:
            _signal(proc, signal.SIGCONT)  # a paused process acts on nothing else
            _signal(proc, signal.SIGTERM)
        await _wait_exited(procs, grace)
        for proc in procs:
            if proc.poll() is None:
                # Said out loud: a replica that cannot drain in time is worth a look.
                print(
                    f"cluster.stop: {proc.args[0]} pid {proc.pid} still running {grace:.0f} s "
                    "after SIGTERM; killed",
                    file=sys.stderr,
                )
                _signal(proc, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5)
        for r in self.replicas:
            r.process, r.paused = None, False
        self.haproxy = None
        if self.workdir is not None and not os.environ.get("EVENT_GATEWAY_KEEP_TEST_DIRS"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    # --- per-replica controls ----------------------------------------------------------------

    def kill(self, i: int) -> None:
        """SIGKILL: the replica runs no shutdown code at all (no drain, no lease release)."""
        r = self.replicas[i]
        if r.process is not None:
            _signal(r.process, signal.SIGKILL)
            r.process.wait(10)
        r.paused = False

    async def terminate(self, i: int, timeout: float = 30.0) -> int:  # noqa: ASYNC109
        """SIGTERM and wait for the exit (the replica drains); returns the exit code.

        A replica still running after ``timeout`` is killed and the call fails: a drain that
        hangs is a bug the test should see, not one that teardown quietly cleans up.
        """
        r = self.replicas[i]
        proc = r.process
        if proc is None:
            raise RuntimeError(f"replica {i} is not running")
        _signal(proc, signal.SIGCONT)
        _signal(proc, signal.SIGTERM)
        r.paused = False
        if not await _wait_exited([proc], timeout):
            self.kill(i)
            raise AssertionError(
                f"replica {i} did not exit within {timeout:.0f} s of SIGTERM; killed. "
                f"Its log ends:\n{process.tail(r.log_path, 60)}"
            )
        return proc.returncode

    def pause(self, i: int) -> None:
        """SIGSTOP: connections stay open but nothing answers (a hung or partitioned node)."""
        r = self.replicas[i]
        assert r.running, f"replica {i} is not running"
        if r.process is not None and r.process.poll() is None:
            # With workers, the replica is its parent and every worker: all of it hangs.
            for pid in process.descendants(r.process.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
            process.freeze(r.process)
        r.paused = True

    def worker_pids(self, i: int) -> list[int]:
        """The worker processes of replica ``i`` (empty when it runs as one process)."""
        r = self.replicas[i]
        return process.children(r.process.pid) if r.process is not None else []

    def resume(self, i: int) -> None:
        r = self.replicas[i]
        assert r.process is not None, f"replica {i} is not running"
        _signal(r.process, signal.SIGCONT)
        for pid in process.descendants(r.process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        r.paused = False

    async def restart(self, i: int, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Start replica ``i`` again on the same port and wait until it and the LB are ready.

        The replica must have been stopped first (kill / terminate): restarting a live one
        would hide which of those a test meant.
        """
        r = self.replicas[i]
        if r.running:
            raise RuntimeError(f"replica {i} is still running; kill() or terminate() it first")
        deadline = time.monotonic() + (timeout or self.start_timeout)
        self._spawn(r)
        await self._wait_ready(r, deadline)
        if self.haproxy is not None:
            await self.wait_lb(up=[i], deadline=deadline)

    # --- HAProxy -----------------------------------------------------------------------------

    def haproxy_config(self) -> str:
        servers = "\n".join(
            f"    server r{r.index} 127.0.0.1:{r.port} check" for r in self.replicas
        )
        return f"""\
# Generated by tests/harness/cluster.py: deploy/haproxy.cfg with test-speed health checks.
global
    maxconn 4096

defaults
    mode http
    timeout connect 2s
    # A long-poll read may wait tens of seconds (plus one forwarding hop).
    timeout client 60s
    timeout server 60s
    # Streams outlive these only by their heartbeat (stream.heartbeat.ms, 15 s, below both).
    timeout http-request 10s
    timeout http-keep-alive 10s
    timeout queue 10s
    retries 2
    option redispatch
    # A client that hangs up (e.g. gives up on a long poll) closes the replica's connection
    # too: the replica's response write then fails and it keeps the records for the next
    # read. Without this HAProxy reads the response for nobody and the records are lost.
    option abortonclose
    # As deploy/haproxy.cfg: the balancer's own 503 in the gateway's error shape.
    http-error status 503 content-type "application/json" string "{{\\"error_code\\":503,\\"message\\":\\"HTTP 503 Service Unavailable: no gateway replica is ready; retry shortly\\"}}" hdr "Retry-After" "1"

frontend rest
    bind 127.0.0.1:{self.lb_port}
    default_backend gateways

backend gateways
    # Round-robin per request and no stickiness: any replica must serve any instance.
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 500ms fall 2 rise 1
{servers}

listen stats
    bind 127.0.0.1:{self.stats_port}
    stats enable
    stats uri /stats
"""

    def _start_haproxy(self) -> None:
        binary = shutil.which("haproxy") or next(
            (p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if os.access(p, os.X_OK)),
            None,
        )
        if binary is None:
            raise ClusterStartError("no `haproxy` on PATH (Debian: apt-get install haproxy)")
        assert self.workdir is not None
        cfg = self.workdir / "haproxy.cfg"
        cfg.write_text(self.haproxy_config())
        check = subprocess.run(
            [binary, "-c", "-q", "-f", str(cfg)], capture_output=True, text=True, check=False
        )
        if check.returncode != 0:
            raise ClusterStartError(f"haproxy rejects {cfg}:\n{check.stdout}{check.stderr}")
        self.haproxy = process.spawn([binary, "-f", str(cfg), "-db"], self.haproxy_log)

    async def lb_stats(self) -> dict[int, dict[str, str]]:
        """HAProxy's CSV statistics row of each replica (by index): ``status``, ``req_tot``..."""
        url = f"http://127.0.0.1:{self.stats_port}/stats;csv"
        timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url) as resp:
            text = await resp.text()
        rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
        return {
            int(row["svname"][1:]): row
            for row in rows
            if row["pxname"] == "gateways" and row["svname"].startswith("r")
        }

    async def lb_states(self) -> dict[int, str]:
        """HAProxy's view: replica index -> status ("UP", "DOWN", "UP 1/2", ...)."""
        return {i: row["status"] for i, row in (await self.lb_stats()).items()}

    async def wait_lb(
        self,
        *,
        up: Iterable[int] = (),
        down: Iterable[int] = (),
        deadline: float | None = None,
    ) -> None:
        """Wait until HAProxy marks the replicas in ``up`` UP and those in ``down`` DOWN.

        Tests that kill or restart a replica call this to know where the LB will send the
        next request, instead of sleeping for a health-check interval and hoping.
        """
        want_up, want_down = set(up), set(down)
        deadline = deadline or time.monotonic() + self.start_timeout
        states: dict[int, str] | str = "no answer yet"
        while time.monotonic() < deadline:
            self._check_haproxy_alive()
            try:
                states = await self.lb_states()
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                states = f"{type(exc).__name__}: {exc}"
            else:
                if all(states.get(i) == "UP" for i in want_up) and all(
                    str(states.get(i, "")).startswith("DOWN") for i in want_down
                ):
                    return
            await asyncio.sleep(0.1)
        raise ClusterStartError(
            f"HAProxy did not reach up={sorted(want_up)} down={sorted(want_down)} "
            f"(last states: {states})\n{self.logs()}"
        )

    def _check_haproxy_alive(self) -> None:
        if self.haproxy is not None and self.haproxy.poll() is not None:
            raise ClusterStartError(
                f"haproxy exited with {self.haproxy.returncode}; its log ends:\n"
                f"{process.tail(self.haproxy_log)}"
            )

    # --- replicas ----------------------------------------------------------------------------

    def _spawn(self, r: Replica) -> None:
        # Called on the event loop's (main) thread: the parent-death signal is tied to the
        # spawning thread, so a replica spawned from a worker thread would die with it.
        args = [
            sys.executable,
            "-m",
            "gateway.cli",
            "serve",
            "--log-level",
            self.log_level,
            "--config",
            str(self.config_path),
            "--set",
            f"listeners={r.url}",
            "--set",
            f"node.url={r.url}",
        ]
        for key, value in self.replica_props.get(r.index, {}).items():
            args += ["--set", f"{key}={value}"]
        with open(r.log_path, "ab") as log:
            stamp = time.strftime("%H:%M:%S")
            log.write(f"{START_MARK}{stamp}: {' '.join(args)}\n".encode())
        r.process = process.spawn(args, r.log_path, cwd=REPO, env=child_env())
        r.paused = False

    async def _wait_first_start(self, r: Replica, deadline: float) -> None:
        """Like ``_wait_ready``, but a port taken between choosing and binding it (by any
        process on the machine) is replaced rather than failing the test: nothing depends on
        a replica's port before the cluster is up."""
        for attempt in range(3):
            try:
                await self._wait_ready(r, deadline)
                return
            except ClusterStartError:
                if attempt == 2 or "address already in use" not in _tail_lower(r.log_path):
                    raise
            (r.port,) = free_ports(1)
            self._spawn(r)

    async def _wait_ready(self, r: Replica, deadline: float) -> None:
        def alive() -> None:
            assert r.process is not None
            if (code := r.process.poll()) is not None:
                raise ClusterStartError(
                    f"replica {r.index} ({r.url}) exited with {code} during start-up\n{self.logs()}"
                )

        await self._wait_ok(r.url + "/readyz", f"replica {r.index}", deadline, alive)

    async def _wait_ok(
        self, url: str, what: str, deadline: float, alive: Callable[[], None]
    ) -> None:
        """Poll ``url`` until it answers 200; ``alive`` raises once waiting is pointless."""
        last = "no answer yet"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as http:
            while time.monotonic() < deadline:
                alive()
                try:
                    async with http.get(url) as resp:
                        if resp.status == 200:
                            return
                        last = f"HTTP {resp.status}: {await resp.text()}"
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    last = f"{type(exc).__name__}: {exc}"
                await asyncio.sleep(0.1)
        raise ClusterStartError(f"{what} not ready at {url} in time (last: {last})\n{self.logs()}")

    def logs(self, lines: int = 40) -> str:
        """The end of every replica's log and HAProxy's, for failure messages."""
        parts = [
            f"--- replica {r.index} ({r.url}) log {r.log_path}:\n{process.tail(r.log_path, lines)}"
            for r in self.replicas
        ]
        if self.workdir is not None and self.haproxy_log.exists():
            parts.append(f"--- haproxy log:\n{process.tail(self.haproxy_log, lines)}")
        return "\n".join(parts)


def _tail_lower(path: Path) -> str:
    """The log of the latest start only (the file keeps earlier lives), lower-cased."""
    text = process.tail(path, 200)
    return text[text.rfind(START_MARK) :].lower()


async def _wait_exited(procs: list[subprocess.Popen[bytes]], timeout: float) -> bool:  # noqa: ASYNC109
    """True once every process has exited, False if some still run after ``timeout``."""
    end = time.monotonic() + timeout
    while True:
        if all(p.poll() is not None for p in procs):
            return True
        if time.monotonic() > end:
            return False
        await asyncio.sleep(0.05)


def _signal(proc: subprocess.Popen[bytes] | None, sig: int) -> None:
    if proc is not None and proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
