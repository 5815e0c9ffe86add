"""Hostile input is a quick 4xx, never a 5xx, a hang or a wedge (issue 10, item 5).

Each request below is one a careless or malicious client can send: numbers past Java's types,
instants past year 9999, a regex that backtracks for ever, JSON nested 100,000 deep, bytes that
are not UTF-8, names of 300 characters. Every one must be refused in Confluent's error shape,
at once, without writing a record, committing an offset, creating an instance or hurting the
instance it names; and the replica must then still serve an ordinary produce / consume round
trip. The checks are made through the HTTP API on a real broker and verified with independent
Kafka clients, never with the gateway's own view.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
import uuid
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from yarl import URL

from tests.harness.api import MakeGatewayFn, NewTopicFn, ReadBackFn
from tests.support.kafka import committed_offsets
from tests.support.v2 import BINARY, JSON, V2, V2_JSON

Client = TestClient[web.Request, web.Application]

# A validation error never waits on Kafka: a second is far more than any of them may take,
# even on a loaded CI machine; a freeze or a Kafka round trip would show up past it.
QUICK_S = 1.0

INT32_OVER = 2**31
INT64_OVER = 2**63
CATASTROPHIC = "([\\w.-]|[\\w.-])*!"  # backtracks 2^n steps on a failing n-character name


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def _raw_call(
    http: Client,
    method: str,
    path: str,
    raw: bytes | None = None,
    ctype: str = V2_JSON,
    accept: str | None = None,
) -> tuple[int, Any, float]:
    """One request with ``path`` sent exactly as written (percent-escapes included)."""
    url = URL(str(http.make_url("")).rstrip("/") + path, encoded=True)
    headers = {"Content-Type": ctype}
    if accept:
        headers["Accept"] = accept
    began = time.monotonic()
    async with http.session.request(method, url, data=raw, headers=headers) as resp:
        body = await resp.read()
    elapsed = time.monotonic() - began
    return resp.status, orjson.loads(body) if body else None, elapsed


def _assert_quick_4xx(what: str, status: int, body: Any, elapsed: float, bound: float) -> None:
    assert 400 <= status < 500, (what, status, body)
    assert isinstance(body, dict) and set(body) == {"error_code", "message"}, (what, body)
    assert isinstance(body["error_code"], int) and isinstance(body["message"], str), (what, body)
    assert elapsed < bound, (what, f"took {elapsed:.2f} s")


def _deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


async def test_hostile_requests_are_quick_4xx_and_change_nothing(
    make_gateway: MakeGatewayFn,
    new_topic: NewTopicFn,
    read_back: ReadBackFn,
    kafka_bootstrap: str,
) -> None:
    http = await make_gateway({"consumer.request.timeout.ms": "500"})
    api = V2(http)
    topic = await new_topic(partitions=1)
    group = _unique("hostile")
    inst = api.inst(group, "victim")

    # A healthy instance with a known state: two records written, the first read and
    # committed (committed offset 1), the position after it.
    for value in (b"one", b"two"):
        status, body, _ = await api.call(
            "POST", f"/topics/{topic}", {"records": [{"value": _b64(value)}]}, ctype=BINARY
        )
        assert status == 200 and body["offsets"][0]["error_code"] is None, body
    status, _ = await api.create(group, name="victim", **{"auto.offset.reset": "earliest"})
    assert status == 200
    status, _, _ = await api.call(
        "POST", inst + "/assignments", {"partitions": [{"topic": topic, "partition": 0}]}
    )
    assert status == 204
    got = await api.drain(group, "victim", 1, max_bytes=1)  # one record at a time
    assert [r["offset"] for r in got] == [0]
    status, _, _ = await api.call(
        "POST", inst + "/offsets", {"offsets": [{"topic": topic, "partition": 0, "offset": 0}]}
    )
    assert status == 200
    assert await committed_offsets(kafka_bootstrap, group) == {(topic, 0): 1}

    def offset(value: str) -> bytes:
        return f'{{"offsets":[{{"topic":"{topic}","partition":0,"offset":{value}}}]}}'.encode()

    def partition(value: str) -> bytes:
        return f'{{"partitions":[{{"topic":"{topic}","partition":{value}}}]}}'.encode()

    def timestamp(value: str) -> bytes:
        return (
            f'{{"timestamps":[{{"topic":"{topic}","partition":0,"timestamp":{value}}}]}}'.encode()
        )

    refused_names: list[str] = []

    def create(field: str, value: str) -> bytes:
        refused_names.append(_unique("refused"))
        return f'{{"name":"{refused_names[-1]}","{field}":{value}}}'.encode()

    def records(body: str) -> bytes:
        return f'{{"records":[{body}]}}'.encode()

    hostile: list[tuple[str, str, bytes | None, str | None]] = [
        # committed offsets (GET with a body), commits, seeks, assignments
        ("GET", inst + "/offsets", partition(str(INT32_OVER)), None),
        ("GET", inst + "/offsets", partition("-1"), None),
        ("GET", inst + "/offsets", partition("1e300"), None),
        ("POST", inst + "/offsets", offset(str(2**63 - 1)), None),  # +1 would overflow
        ("POST", inst + "/offsets", offset(str(INT64_OVER)), None),
        ("POST", inst + "/offsets", offset("-2"), None),
        ("POST", inst + "/offsets", offset("1e300"), None),
        ("POST", inst + "/positions", offset(str(INT64_OVER)), None),
        ("POST", inst + "/positions", offset("18446744073709551616"), None),
        ("POST", inst + "/positions", offset("-1"), None),
        ("POST", inst + "/positions", timestamp('"+10000-01-01T00:00:00Z"'), None),
        ("POST", inst + "/positions", timestamp('"1969-12-31T23:59:59Z"'), None),
        ("POST", inst + "/positions", timestamp("1e300"), None),
        ("POST", inst + "/positions", timestamp("-1"), None),
        ("POST", inst + "/positions/beginning", partition(str(INT32_OVER)), None),
        ("POST", inst + "/assignments", partition(str(INT32_OVER)), None),
        ("POST", inst + "/assignments", partition("-1"), None),
        (
            "POST",
            inst + "/assignments",
            b'{"partitions":[{"topic":"' + b"t" * 250 + b'","partition":0}]}',
            None,
        ),
        (
            "POST",
            inst + "/assignments",
            b'{"partitions":[{"topic":"bad name","partition":0}]}',
            None,
        ),
        (
            "POST",
            inst + "/assignments",
            b'{"partitions":[{"topic":"nul\\u0000","partition":0}]}',
            None,
        ),
        ("POST", inst + "/subscription", b'{"topics":["' + b"t" * 250 + b'"]}', None),
        ("POST", inst + "/subscription", orjson.dumps({"topic_pattern": "(a)\\1"}), None),
        ("POST", inst + "/subscription", orjson.dumps({"topic_pattern": "(?=a)a"}), None),
        ("POST", inst + "/subscription", orjson.dumps({"topic_pattern": "a" * 5000}), None),
        # bodies: nesting, encoding
        ("POST", inst + "/positions", _deep(100_000), None),
        ("POST", f"/topics/{topic}", _deep(100_000), BINARY),
        ("POST", f"/topics/{topic}", records('{"value":' + "[" * 200 + "]" * 200 + "}"), JSON),
        ("POST", f"/topics/{topic}", b'{"records":[{"value":"\xff\xfe"}]}', BINARY),
        ("POST", f"/consumers/{group}", b'{"name":"caf\xe9"}', None),
        # produce record partitions and schema ids
        (
            "POST",
            f"/topics/{topic}",
            records(f'{{"value":"eA==","partition":{INT32_OVER}}}'),
            BINARY,
        ),
        ("POST", f"/topics/{topic}", records('{"value":"eA==","partition":-1}'), BINARY),
        ("POST", f"/topics/{topic}", records('{"value":"eA==","partition":1e300}'), BINARY),
        # creates: waits, sizes, names
        ("POST", f"/consumers/{group}", create("consumer.request.timeout.ms", "1e300"), None),
        ("POST", f"/consumers/{group}", create("consumer.request.timeout.ms", "-1"), None),
        (
            "POST",
            f"/consumers/{group}",
            create("consumer.request.timeout.ms", "18446744073709551616"),
            None,
        ),
        ("POST", f"/consumers/{group}", create("consumer.request.timeout.ms", "300001"), None),
        ("POST", f"/consumers/{group}", create("requestWaitMs", "1e300"), None),
        ("POST", f"/consumers/{group}", create("fetch.min.bytes", "1e300"), None),
        ("POST", f"/consumers/{group}", orjson.dumps({"name": "n" * 300}), None),
        ("POST", f"/consumers/{group}", orjson.dumps({"name": "new\nline"}), None),
        ("POST", f"/consumers/{'g' * 300}", b"{}", None),
        ("POST", "/consumers/a%0Ab", b"{}", None),
        # paths and queries
        ("GET", f"/consumers/%FF{group}/instances/victim/subscription", None, None),
        ("GET", f"/consumers/{group}/instances/victim%00/subscription", None, None),
        ("GET", f"/consumers/{group}/instances/{'v' * 300}/subscription", None, None),
        ("GET", inst + "/records?timeout=%FF", None, BINARY),
        ("GET", inst + "/records?timeout=1_000", None, BINARY),
        ("GET", inst + "/records?timeout=%EF%BC%91", None, BINARY),  # a fullwidth digit one
        ("GET", inst + "/records?max_bytes=1e9", None, BINARY),
    ]
    for method, path, raw, ctype in hostile:
        accept = BINARY if "/records" in path else None
        status, body, elapsed = await _raw_call(http, method, path, raw, ctype or V2_JSON, accept)
        what = f"{method} {path[:80]} {(raw or b'')[:80]!r}"
        _assert_quick_4xx(what, status, body, elapsed, QUICK_S)

    # The limits are the documented ones, with the messages a client can act on.
    status, body, _ = await _raw_call(
        http, "POST", f"/consumers/{group}", create("consumer.request.timeout.ms", "300001")
    )
    assert (status, body["error_code"]) == (422, 42204) and "300000" in body["message"], body
    status, body, _ = await _raw_call(http, "POST", inst + "/positions", offset(str(INT64_OVER)))
    assert status == 400 and "out of range of long" in body["message"], body
    status, body, _ = await _raw_call(http, "POST", inst + "/positions", _deep(100_000))
    assert status == 400 and "Malformed JSON" in body["message"], body

    # A body over the size limit: 413 in Confluent's shape, once the limit is read.
    status, body, elapsed = await _raw_call(
        http, "POST", f"/topics/{topic}", b" " * (64 * 1024 * 1024 + 1), BINARY
    )
    _assert_quick_4xx("64 MiB + 1", status, body, elapsed, bound=15.0)
    assert (status, body["error_code"]) == (413, 413), body

    # Nothing changed: no record written, no offset committed, no instance created ...
    assert [r.value for r in await read_back(topic, 3, timeout=2)] == [b"one", b"two"]
    assert await committed_offsets(kafka_bootstrap, group) == {(topic, 0): 1}
    for name in refused_names:  # free: the refused creates left nothing behind
        status, body = await api.create(group, name=name)
        assert status == 200, (name, body)
        assert await api.delete(group, name) == 204

    # ... and the instance they named is unharmed: its next read is the next record (the
    # refused seek to 2^63 would have killed its fetcher, after which it read [] for ever).
    got = await api.drain(group, "victim", 1)
    assert [(r["offset"], base64.b64decode(r["value"])) for r in got] == [(1, b"two")]

    # The replica still serves an ordinary round trip.
    await _round_trip(api, topic)


async def _round_trip(api: V2, topic: str) -> None:
    status, body, _ = await api.call(
        "POST", f"/topics/{topic}", {"records": [{"value": _b64(b"after")}]}, ctype=BINARY
    )
    assert status == 200 and body["offsets"][0]["error_code"] is None, body
    group = _unique("after")
    status, _ = await api.create(group, name="c", **{"auto.offset.reset": "earliest"})
    assert status == 200
    assert await api.subscribe(group, "c", [topic]) == 204
    got = await api.drain(group, "c", 3)
    assert base64.b64decode(got[-1]["value"]) == b"after", got
    assert await api.delete(group, "c") == 204


# A backtracking engine would freeze the test's own event loop: only this bound ends it.
@pytest.mark.timeout(90)
async def test_a_catastrophic_topic_pattern_never_freezes_the_replica(
    make_gateway: MakeGatewayFn, new_topic: NewTopicFn
) -> None:
    """The issue's pattern, matched against a topic whose name makes a backtracking engine
    take 2^50 steps: the subscription must be answered at once and the replica stay
    responsive while the instance matches it against every topic of the cluster."""
    http = await make_gateway({"consumer.request.timeout.ms": "500"})
    api = V2(http)
    # Word characters only, 50 of them: ``([\w.-]|[\w.-])*!`` fails on it after 2^50 tries.
    topic = await new_topic(partitions=1, name=f"hostile-{uuid.uuid4().hex[:8]}-{'a' * 33}")
    status, body, _ = await api.call(
        "POST", f"/topics/{topic}", {"records": [{"value": _b64(b"found")}]}, ctype=BINARY
    )
    assert status == 200 and body["offsets"][0]["error_code"] is None, body
    group = _unique("pattern")
    status, _ = await api.create(group, name="p", **{"auto.offset.reset": "earliest"})
    assert status == 200

    # The catastrophic alternative is tried on every topic name first; the second one then
    # matches ours, so a record read proves the pattern really was matched.
    pattern = f"{CATASTROPHIC}|{re.escape(topic)}"
    began = time.monotonic()
    status, body, _ = await api.call(
        "POST", api.inst(group, "p") + "/subscription", {"topic_pattern": pattern}
    )
    assert time.monotonic() - began < QUICK_S
    assert status in (204, 422), body
    if status == 422:  # refused up front is the other acceptable answer
        assert body["error_code"] == 422
        return

    worst = 0.0
    stop = asyncio.Event()

    async def ping() -> None:
        nonlocal worst
        while not stop.is_set():
            began = time.monotonic()
            status, _, _ = await api.call("GET", "/")
            assert status == 200
            worst = max(worst, time.monotonic() - began)
            await asyncio.sleep(0.05)

    pinger = asyncio.create_task(ping())
    try:
        got = await api.drain(group, "p", 1, deadline_reads=30)
    finally:
        stop.set()
        await pinger
    assert [base64.b64decode(r["value"]) for r in got] == [b"found"]
    assert worst < QUICK_S, f"the replica stalled for {worst:.2f} s"
    # The catastrophic pattern alone: accepted (RE2 is linear) and harmless too.
    status, body, _ = await api.call(
        "POST", api.inst(group, "p") + "/subscription", {"topic_pattern": CATASTROPHIC}
    )
    assert status == 204, body
    status, _, _ = await api.records(group, "p", timeout=300)
    assert status == 200
    assert await api.delete(group, "p") == 204


def _connections_to(port: int) -> int:
    """Open TCP connections (from anyone on this host) whose remote end is ``port``."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                next(fh)
                for line in fh:
                    fields = line.split()
                    remote, state = fields[2], fields[3]
                    if state == "01" and int(remote.rsplit(":", 1)[1], 16) == port:
                        count += 1
        except FileNotFoundError:
            continue
    return count


async def test_offset_lookups_share_one_client(
    gateway: Client, new_topic: NewTopicFn, kafka_bootstrap: str
) -> None:
    """A flood of ``…/partitions/{p}/offsets`` opens no Kafka connection per request (it
    built, started and stopped a whole consumer for each one), and every answer is right."""
    api = V2(gateway)
    topic = await new_topic(partitions=2)
    status, body, _ = await api.call(
        "POST", f"/topics/{topic}/partitions/1", {"records": [{"value": "eA=="}] * 3}, ctype=BINARY
    )
    assert status == 200, body
    path = f"/topics/{topic}/partitions/1/offsets"
    status, body, _ = await api.call("GET", path)  # connects the shared client, if needed
    assert (status, body) == (200, {"beginning_offset": 0, "end_offset": 3})

    port = int(kafka_bootstrap.rsplit(":", 1)[1])
    baseline = _connections_to(port)
    peak = baseline
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _connections_to(port))
            await asyncio.sleep(0.002)

    sampler = asyncio.create_task(sample())
    try:
        answers = await asyncio.gather(*(api.call("GET", path) for _ in range(60)))
    finally:
        done.set()
        await sampler
    assert all(a[:2] == (200, {"beginning_offset": 0, "end_offset": 3}) for a in answers)
    # Other tests' clients may come and go meanwhile: a handful, never one per request.
    assert peak - baseline < 10, f"{peak - baseline} new Kafka connections for 60 lookups"
