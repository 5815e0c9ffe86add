"""A real single-node Kafka (KRaft) broker for tests, run from the official jars.

A real broker rather than a mock or a Kafka-compatible stand-in: the gateway's contract is
about real group rebalances, commits and metadata, which only Apache Kafka itself gets right.
The jars come from Maven Central through deploy/kafka/kafka.sh; the broker settings are the
same gateway/cli/broker/server.properties.in that ``event-gateway dev`` uses (which turns topic
auto-creation on; the tests keep the template's off).
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from string import Template
from typing import Any, Self, TypeVar

from tests.harness import process
from tests.harness.ports import free_ports, port_open

REPO = Path(__file__).resolve().parents[2]
# The broker files ship as package data of the dev command; deploy/kafka/kafka.sh forwards there.
KAFKA_DEPLOY = REPO / "gateway" / "cli" / "broker"
KAFKA_SH = REPO / "deploy" / "kafka" / "kafka.sh"

T = TypeVar("T")


class KafkaStartError(RuntimeError):
    """The broker could not be started; the message carries the end of its log."""


def ensure_jars(timeout: float = 600.0) -> Path:
    """The folder of broker jars, fetching them once (about 35 s) if the cache lacks them.

    ``KAFKA_JARS`` names a ready folder and skips the cache (CI sets it after its own fetch step,
    so a missing jar is reported there rather than inside the first test).
    """
    env_dir = os.environ.get("KAFKA_JARS")
    if env_dir:
        jars = Path(env_dir)
        if not any(jars.glob("kafka_2.13-*.jar")):
            raise KafkaStartError(f"KAFKA_JARS={env_dir} holds no kafka_2.13-*.jar")
        return jars
    try:
        out = subprocess.run(
            ["bash", str(KAFKA_SH), "jars"],
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        stderr = getattr(exc, "stderr", "") or ""
        raise KafkaStartError(f"`{KAFKA_SH} jars` failed: {exc}\n{stderr[-3000:]}") from exc
    return Path(out.stdout.strip().splitlines()[-1])


def java_executable() -> str:
    """``$JAVA`` or ``java`` on PATH; Kafka 4 needs Java 17 or newer."""
    java = os.environ.get("JAVA") or shutil.which("java")
    if not java:
        raise KafkaStartError(
            "no `java` on PATH: Kafka 4 needs Java 17+ (Debian: apt-get install "
            "openjdk-17-jre-headless), or set KAFKA_BOOTSTRAP_SERVERS to an existing broker"
        )
    return java


def new_cluster_id() -> str:
    """Kafka's Uuid.randomUuid().toString(): URL-safe base64 of 16 bytes, never led by '-'.

    Made here rather than by ``StorageTool random-uuid`` to save one JVM start per broker.
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


def run_async(make: Callable[[], Coroutine[Any, Any, T]], timeout: float) -> T:
    """Run a coroutine to completion from sync code, even if an event loop is running here.

    Session fixtures are sync and may be set up while pytest-asyncio has a loop running in this
    thread, where ``asyncio.run`` is refused; a private thread always has no loop.
    """
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, asyncio.wait_for(make(), timeout)).result()


def _override(properties: str, overrides: Mapping[str, str]) -> str:
    """``properties`` with each key of ``overrides`` replaced by its new line (or added)."""
    if not overrides:
        return properties
    kept = [
        line for line in properties.splitlines() if line.partition("=")[0].strip() not in overrides
    ]
    return "\n".join([*kept, *(f"{k}={v}" for k, v in overrides.items())]) + "\n"


class KafkaServer:
    """One broker+controller on free loopback ports, its data in a private temporary folder."""

    def __init__(
        self,
        *,
        jars: Path | None = None,
        heap: str = "512m",
        start_timeout: float = 90.0,
        keep_dir: bool = False,
        overrides: Mapping[str, str] | None = None,
        format_args: Sequence[str] = (),
        client_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        """``overrides`` replace (or add) server.properties keys of the shared template, as
        ``kafka.sh start --set`` does; ``format_args`` go to ``StorageTool format`` (e.g.
        ``--add-scram``); ``client_kwargs`` are what a client needs to reach the listener
        (SASL credentials), used by the readiness probe."""
        self.overrides = dict(overrides or {})
        self.format_args = list(format_args)
        self.client_kwargs = dict(client_kwargs or {})
        self.jars = jars
        self.heap = heap
        self.start_timeout = start_timeout
        self.keep_dir = keep_dir or bool(os.environ.get("EVENT_GATEWAY_KEEP_TEST_DIRS"))
        self.port = 0
        self.controller_port = 0
        self.workdir: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_seconds = 0.0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        assert self.workdir is not None, "not started"
        return self.workdir / "kafka.log"

    def start(self) -> str:
        """Start the broker and return its bootstrap address once it serves metadata.

        Listening is not enough: a KRaft broker accepts connections before it has registered
        with its controller, and until then metadata shows no brokers and topic creation fails.
        A port taken by someone else between choosing and binding it is retried with new ports.
        """
        if self.process is not None:
            raise RuntimeError("already started")
        began = time.monotonic()
        jars = self.jars or ensure_jars()
        java = java_executable()
        self.workdir = Path(tempfile.mkdtemp(prefix="eg-kafka-"))
        for attempt in range(3):
            self.port, self.controller_port = free_ports(2)
            self._configure(java, jars)
            self.process = process.spawn(
                [
                    java,
                    "-Xms256m",
                    f"-Xmx{self.heap}",
                    "-XX:+UseSerialGC",
                    f"-Dlog4j2.configurationFile={KAFKA_DEPLOY / 'log4j2.properties'}",
                    "-cp",
                    f"{jars}/*",
                    "kafka.Kafka",
                    str(self.workdir / "server.properties"),
                ],
                self.log_path,
                cwd=self.workdir,
            )
            try:
                self._wait_ready(began + self.start_timeout)
                break
            except KafkaStartError:
                log = process.tail(self.log_path, 200)
                process.stop(self.process, 10)
                self.process = None
                if "Address already in use" not in log or attempt == 2:
                    self._cleanup()
                    raise
        self.startup_seconds = time.monotonic() - began
        return self.bootstrap

    def _configure(self, java: str, jars: Path) -> None:
        assert self.workdir is not None
        data = self.workdir / "data"
        shutil.rmtree(data, ignore_errors=True)
        self.log_path.unlink(missing_ok=True)
        template = Template((KAFKA_DEPLOY / "server.properties.in").read_text())
        props = self.workdir / "server.properties"
        text = template.substitute(
            port=self.port, controller_port=self.controller_port, log_dir=data
        )
        props.write_text(_override(text, self.overrides))
        result = subprocess.run(
            [
                java,
                f"-Dlog4j2.configurationFile={KAFKA_DEPLOY / 'log4j2.properties'}",
                "-cp",
                f"{jars}/*",
                "kafka.tools.StorageTool",
                "format",
                "-t",
                new_cluster_id(),
                "-c",
                str(props),
                *self.format_args,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            self._cleanup()
            raise KafkaStartError(
                f"`{java} ... kafka.tools.StorageTool format` exited {result.returncode}:\n"
                f"{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
            )

    def _wait_ready(self, deadline: float) -> None:
        assert self.process is not None
        last_error = "never listened"
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise KafkaStartError(
                    f"Kafka broker exited with {code} during start-up; its log ends:\n"
                    f"{process.tail(self.log_path)}"
                )
            if port_open("127.0.0.1", self.port):
                try:
                    run_async(self._probe, timeout=30)
                    return
                except Exception as exc:
                    last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.3)
        raise KafkaStartError(
            f"Kafka broker at {self.bootstrap} not ready within {self.start_timeout:.0f} s "
            f"(last check: {last_error}); its log ends:\n{process.tail(self.log_path)}"
        )

    async def _probe(self) -> None:
        # Deferred import: the harness package stays importable for tooling without aiokafka.
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap, request_timeout_ms=5000, **self.client_kwargs
        )
        await admin.start()
        try:
            cluster = await admin.describe_cluster()
            if not cluster.get("brokers"):
                raise KafkaStartError("metadata lists no brokers yet")
            # Creates __consumer_offsets now, so the first consumer group in a test (perhaps
            # one with a 500 ms request timeout) does not pay for it.
            await admin.find_coordinator("event-gateway-harness-warmup")
        finally:
            await admin.close()

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): a hung Kafka, where clients get no answer at all."""
        assert self.process is not None, "not started"
        process.freeze(self.process)

    def resume(self) -> None:
        assert self.process is not None, "not started"
        os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after 20 s) and delete its data."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGCONT)  # a paused broker cannot stop
        process.stop(self.process, 20)
        self.process = None
        self._cleanup()

    def _cleanup(self) -> None:
        if self.workdir is not None and not self.keep_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
