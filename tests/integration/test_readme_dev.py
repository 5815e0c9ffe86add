"""The README's first five minutes, as a new user lives them.

``bash deploy/quickstart.sh`` ends in ``event-gateway dev`` (real Apache Kafka when Java is
installed); the README then tells the user to run its curl example. Here the same console script
starts the same way (Kafka jars found as ``kafka.sh jars`` finds them: ``$KAFKA_JARS`` or the
cache), on free ports instead of 8082/9092, and every ```sh block of README.md that calls curl is
run verbatim through bash, with only ``http://localhost:8082`` replaced by this gateway's URL.
The answer must be what the README shows, and an independent Kafka consumer must read back the
bytes the README's request asked for.

Nothing here skips: without Java, curl or the console script the test fails saying what to
install (``.ci/run`` installs all three).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from tests.harness import process
from tests.harness.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
README_URL = "http://localhost:8082"
# `kafka.sh jars` may have to download the jars (minutes, the first time on a machine); after
# that dev mode bounds the broker start itself (--broker-timeout, 60 s by default).
START_TIMEOUT_S = 600.0
# Dev mode stops the gateway (drain, bounded) and then the broker (bounded to 20 s).
STOP_TIMEOUT_S = 60.0
EXTRA_TOPIC = ("orders", 3)

_FENCE = re.compile(r"^```([\w-]*)[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def readme_examples(text: str) -> list[tuple[str, str]]:
    """(sh block that calls curl, the next ```json block: the answer the README shows)."""
    blocks = [(m.group(1), m.group(2)) for m in _FENCE.finditer(text)]
    examples = []
    for i, (lang, body) in enumerate(blocks):
        if lang == "sh" and re.search(r"(^|[\s;|&(])curl\s", body):
            answer = next((b for lang2, b in blocks[i + 1 :] if lang2 == "json"), None)
            assert answer is not None, f"README: no ```json answer after\n{body}"
            examples.append((body, answer))
    return examples


def sent_records(command: str) -> list[dict]:
    """The records of a README curl command's ``--data`` body."""
    words = shlex.split(command.replace("\\\n", " "))
    for flag in ("--data", "-d", "--data-raw", "--data-binary"):
        if flag in words:
            return orjson.loads(words[words.index(flag) + 1])["records"]
    raise AssertionError(f"README: no --data in\n{command}")


def test_readme_examples_are_found() -> None:
    """The parser finds the README's produce example (a renamed fence must not pass silently)."""
    examples = readme_examples(README.read_text())
    assert examples, "README.md has no ```sh block that calls curl"
    assert any("/topics/sales" in cmd for cmd, _ in examples)


@pytest.mark.timeout(START_TIMEOUT_S + 2 * STOP_TIMEOUT_S + 120)
def test_readme_curl_example_against_event_gateway_dev(tmp_path: Path) -> None:
    examples = readme_examples(README.read_text())
    assert examples, "README.md has no ```sh block that calls curl"
    script = _console_script()
    java_home = os.environ.get("JAVA_HOME")
    if not shutil.which("java") and not (java_home and Path(java_home, "bin", "java").is_file()):
        pytest.fail(
            "`event-gateway dev` runs Apache Kafka, which needs Java 17+ "
            "(Debian: apt-get install openjdk-17-jre-headless; .ci/run installs it)",
            pytrace=False,
        )
    if not shutil.which("curl"):
        pytest.fail(
            "the README's examples use curl, which is not installed (Debian: apt-get install "
            "curl; .ci/run must install it)",
            pytrace=False,
        )

    port, broker_port = free_port(), _free_port_pair()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "dev.log"
    name, partitions = EXTRA_TOPIC
    command = [
        script,
        "dev",
        "--broker",
        "kafka",
        "--port",
        str(port),
        "--broker-port",
        str(broker_port),
        "--topic",
        f"{name}:{partitions}",
    ]
    with log_path.open("wb") as log:
        # Own session: the SIGKILL fallback below reaches the dev process and anything of its
        # group. The broker leads a session of its own; it is found through /proc instead.
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_env(),
            cwd=tmp_path,  # not the checkout: the broker files come from the installed package
            start_new_session=True,
        )
    children: set[tuple[int, str]] = set()
    try:
        _wait_ready(proc, url, log_path)
        children = _descendants(proc.pid)
        assert children, "dev mode runs its broker as a child process"
        assert f"kafka broker on 127.0.0.1:{broker_port}" in log_path.read_text()

        for cmd, shown in examples:
            assert README_URL in cmd, f"README curl example without {README_URL}:\n{cmd}"
            if "x-ndjson" in cmd or "/events" in cmd:
                _check_stream_example(cmd.replace(README_URL, url), shown, tmp_path, log_path)
                continue
            status, content_type, answer = _run_curl(cmd.replace(README_URL, url), tmp_path)
            if "/v3/" in cmd:
                _check_v3_example(cmd, status, content_type, answer, shown, broker_port, log_path)
                continue
            assert status == 200, (status, answer, process.tail(log_path))
            assert content_type == "application/vnd.kafka.v2+json"
            expected = orjson.loads(shown)
            assert answer == expected, (answer, expected)
            offsets = answer["offsets"]
            assert len(offsets) == len(sent_records(cmd)) == 2
            assert all(o["error_code"] is None and o["error"] is None for o in offsets)
            topic = cmd.rsplit("/topics/", 1)[1].split()[0].strip("'\"")
            stored = asyncio.run(_read_back(f"127.0.0.1:{broker_port}", topic, offsets))
            assert stored == [
                (orjson.dumps(r["key"]), orjson.dumps(r["value"])) for r in sent_records(cmd)
            ]

        # --topic NAME:PARTITIONS created its topic before the gateway started.
        with urllib.request.urlopen(f"{url}/topics/{name}/partitions", timeout=10) as resp:
            assert len(orjson.loads(resp.read())) == partitions
    finally:
        children |= _descendants(proc.pid)
        stopped = _stop(proc)
        leaked = _reap(children)
    log_text = log_path.read_text(errors="replace")
    assert stopped == 0, f"dev mode exited {stopped} on SIGTERM:\n{log_text[-4000:]}"
    assert not leaked, f"processes outlived dev mode (killed now): {leaked}\n{log_text[-4000:]}"
    assert "dev: stopping the kafka broker" in log_text


# --- helpers --------------------------------------------------------------------------------


def _check_v3_example(
    cmd: str,
    status: int,
    content_type: str,
    answer: dict,
    shown: str,
    broker_port: int,
    log_path: Path,
) -> None:
    """A v3 produce example: the answer is what the README shows, ``"<...>"`` standing for
    values that are the reader's own (cluster id, time), and Kafka holds the record sent,
    headers included."""
    assert status == 200, (status, answer, process.tail(log_path))
    assert content_type == "application/json"
    expected = orjson.loads(shown)
    assert _like(answer, expected), (answer, expected)
    sent = _sent_v3(cmd)
    bootstrap = f"127.0.0.1:{broker_port}"
    tp = (answer["topic_name"], answer["partition_id"], answer["offset"])
    key, value, headers = asyncio.run(_read_one(bootstrap, *tp))
    assert key == sent["key"]["data"].encode()
    assert value == orjson.dumps(sent["value"]["data"])
    assert headers == [(h["name"], base64.b64decode(h["value"])) for h in sent["headers"]]


def _check_stream_example(command: str, shown: str, workdir: Path, log_path: Path) -> None:
    """A streaming example (NDJSON instance stream, SSE topic stream) ends by itself
    (``max_records``) and its one record is the one the README shows."""
    home = workdir / "curl-home"
    home.mkdir(exist_ok=True)
    (home / ".curlrc").write_text(
        '--silent\n--show-error\nwrite-out = "\\n%{http_code} %{content_type}"\n'
    )
    env = {**os.environ, "CURL_HOME": str(home), "XDG_CONFIG_HOME": str(home)}
    done = subprocess.run(
        ["bash", "-c", command],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=workdir,
        check=False,
    )
    assert done.returncode == 0, f"`{command}` exited {done.returncode}: {done.stderr}"
    body, _, trailer = done.stdout.rpartition("\n")
    status, _, content_type = trailer.partition(" ")
    assert int(status) == 200, (trailer, body, process.tail(log_path))
    lines = body.splitlines()
    if "/events" in command:
        assert content_type.startswith("text/event-stream"), content_type
        records = [
            orjson.loads(line[len("data: ") :])
            for block in body.split("\n\n")
            if "event: record" in block.splitlines()
            for line in block.splitlines()
            if line.startswith("data: ")
        ]
        assert "event: end" in lines, body
    else:
        assert content_type == "application/x-ndjson", content_type
        records = []
        for line in lines:
            with contextlib.suppress(orjson.JSONDecodeError):
                if isinstance(doc := orjson.loads(line), dict) and "topic" in doc:
                    records.append(doc)
    assert len(records) == 1, body
    assert _like(records[0], orjson.loads(shown)), (records[0], shown)


def _like(answer: object, shown: object) -> bool:
    if isinstance(shown, str) and shown.startswith("<") and shown.endswith(">"):
        # A value that is the reader's own (an id, a time): any string or number.
        if isinstance(answer, str):
            return bool(answer)
        return isinstance(answer, int) and not isinstance(answer, bool)
    if isinstance(shown, dict):
        return (
            isinstance(answer, dict)
            and answer.keys() == shown.keys()
            and all(_like(answer[k], v) for k, v in shown.items())
        )
    return answer == shown


def _sent_v3(command: str) -> dict:
    words = shlex.split(command.replace("\\\n", " "))
    return dict(orjson.loads(words[words.index("--data") + 1]))


async def _read_one(
    bootstrap: str, topic: str, partition: int, offset: int
) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
    tp = TopicPartition(topic, partition)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        consumer.seek(tp, offset)
        record = await asyncio.wait_for(consumer.getone(), 30)
    finally:
        await consumer.stop()
    return record.key, record.value, list(record.headers)


def _console_script() -> str:
    """``event-gateway`` as pip installed it beside this Python, else on PATH."""
    beside = Path(sys.executable).parent / "event-gateway"
    found = str(beside) if beside.is_file() else shutil.which("event-gateway")
    if not found:
        pytest.fail(
            "the `event-gateway` console script is not installed: python3 -m pip install -e .",
            pytrace=False,
        )
    return found


def _env() -> dict[str, str]:
    # The gateway reads EVENT_GATEWAY_<KEY> settings; only the jar cache location may pass.
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("EVENT_GATEWAY_") or k == "EVENT_GATEWAY_CACHE"
    }


def _free_port_pair() -> int:
    """A free port whose successor is free too (the Kafka controller listens there)."""
    for _ in range(50):
        port = free_port()
        if port < 65535 and _bindable(port + 1):
            return port
    raise AssertionError("no two consecutive free ports on 127.0.0.1")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        code = proc.poll()
        if code is not None:
            pytest.fail(
                f"`event-gateway dev` exited {code} before serving:\n{process.tail(log_path, 60)}",
                pytrace=False,
            )
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{url}/", timeout=2) as resp:
                if resp.status == 200:
                    return
        if time.monotonic() > deadline:
            pytest.fail(
                f"`event-gateway dev` not serving {url} within {START_TIMEOUT_S:.0f} s:\n"
                f"{process.tail(log_path, 60)}",
                pytrace=False,
            )
        time.sleep(0.5)


def _run_curl(command: str, workdir: Path) -> tuple[int, str, dict]:
    """Run a README command verbatim; curl's own config file adds the status to its output.

    ``$CURL_HOME/.curlrc`` is read by every curl invocation, so the command text stays as the
    README has it while curl also prints the status and Content-Type after the body.
    """
    home = workdir / "curl-home"
    home.mkdir(exist_ok=True)
    (home / ".curlrc").write_text(
        '--silent\n--show-error\nwrite-out = "\\n%{http_code} %{content_type}"\n'
    )
    env = {**os.environ, "CURL_HOME": str(home), "XDG_CONFIG_HOME": str(home)}
    done = subprocess.run(
        ["bash", "-c", command],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=workdir,
        check=False,
    )
    assert done.returncode == 0, f"`{command}` exited {done.returncode}: {done.stderr}"
    body, _, trailer = done.stdout.rpartition("\n")
    status, _, content_type = trailer.partition(" ")
    return int(status), content_type, orjson.loads(body)


async def _read_back(
    bootstrap: str, topic: str, offsets: list[dict]
) -> list[tuple[bytes, bytes] | None]:
    """(key, value) bytes at each partition/offset the gateway answered, read from Kafka."""
    wanted = {(o["partition"], o["offset"]) for o in offsets}
    parts = [TopicPartition(topic, p) for p in sorted({p for p, _ in wanted})]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    found: dict[tuple[int, int], tuple[bytes, bytes]] = {}
    try:
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        deadline = time.monotonic() + 30
        while not wanted <= found.keys() and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for r in records:
                    found[(r.partition, r.offset)] = (r.key, r.value)
    finally:
        await consumer.stop()
    return [found.get((o["partition"], o["offset"])) for o in offsets]


def _stat(pid: int) -> list[str] | None:
    """/proc/PID/stat after "(comm)": state, ppid, ... (comm may hold spaces and parentheses)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _descendants(pid: int) -> set[tuple[int, str]]:
    """Every live process below ``pid``, whatever session it leads, as (pid, start time): the
    start time keeps a reused pid from being taken for one of ours later."""
    parents: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))):
            parents[int(entry.name)] = (int(fields[1]), fields[19])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, (ppid, _) in parents.items() if ppid in frontier} - found
        found |= frontier
    return {(child, parents[child][1]) for child in found}


def _stop(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM (what a service manager or Ctrl-C does), then SIGKILL after a bound."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        return -signal.SIGKILL


def _reap(procs: set[tuple[int, str]], grace: float = 30.0) -> list[int]:
    """Wait (bounded) for ``procs`` to end; SIGKILL and return those that did not.

    A broker orphaned by a killed dev process still gets SIGTERM (dev mode sets the parent-death
    signal) and needs a few seconds for its shutdown.
    """
    deadline = time.monotonic() + grace
    alive = set(procs)
    while alive and time.monotonic() < deadline:
        alive = {p for p in alive if _alive(*p)}
        if alive:
            time.sleep(0.2)
    for pid, _ in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return sorted(pid for pid, _ in alive)


def _alive(pid: int, started: str) -> bool:
    fields = _stat(pid)
    # A zombie has ended (only its parent's wait is missing); another start time, another process.
    return fields is not None and fields[19] == started and fields[0] != "Z"
