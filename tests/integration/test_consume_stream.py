"""Instance streams (SSE and NDJSON) on one replica, against real Kafka.

A stream is a loop of ordinary reads, so the delivery rules of the non-streaming path must hold
unchanged: records count as delivered only once written, the empty-body commit commits exactly
what the client received, and calls on the instance work while its stream is open. Records are
produced with an independent producer and committed offsets read with an independent admin
client. The cross-replica halves (a stream through a non-owner, the owner draining, a slow
reader against a real process) are in tests/cluster/test_consume_stream_lb.py.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from gateway.app import build_app
from gateway.config import from_properties
from gateway.server import make_runner
from gateway.streaming.slots import STREAMS
from sessions.directory import RedisDirectory
from tests.support.kafka import committed_offsets
from tests.support.v2 import BINARY, V2, V2_JSON

pytestmark = pytest.mark.asyncio

SSE = "text/event-stream"
NDJSON = "application/x-ndjson"
KINDS = [SSE, NDJSON]
KIND_IDS = ["sse", "ndjson"]


# --- a stream client: whole events, as a program would read them ------------------------------


@dataclass(frozen=True)
class Event:
    kind: str  # "record", "end", "error", "heartbeat", "retry"
    data: Any = None
    id: str | None = None


def parse_sse_block(lines: list[bytes]) -> Event | None:
    fields: dict[str, str] = {}
    comment = False
    for line in lines:
        if line.startswith(b":"):
            comment = True
            continue
        name, _, value = line.decode().partition(":")
        fields[name] = value.removeprefix(" ")
    if "data" in fields:
        return Event(fields.get("event", "message"), orjson.loads(fields["data"]), fields.get("id"))
    if "retry" in fields:
        return Event("retry", int(fields["retry"]))
    return Event("heartbeat") if comment else None


def parse_ndjson_line(line: bytes) -> Event:
    if not line:
        return Event("heartbeat")
    data = orjson.loads(line)
    return Event("error" if "error_code" in data else "record", data)


class Stream:
    """An open stream over a real connection, read one whole event at a time."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp
        self.sse = resp.headers.get("Content-Type", "").startswith(SSE)

    async def next(self, timeout: float = 10.0) -> Event | None:  # noqa: ASYNC109
        """The next event (heartbeats included); None at the clean end of the stream."""
        async with asyncio.timeout(timeout):
            if not self.sse:
                line = await self.resp.content.readline()
                if not line:
                    return None
                assert line.endswith(b"\n"), line
                return parse_ndjson_line(line[:-1])
            block: list[bytes] = []
            while True:
                line = await self.resp.content.readline()
                if not line:
                    assert not block, block
                    return None
                line = line.rstrip(b"\n")
                if line:
                    block.append(line)
                    continue
                event = parse_sse_block(block)
                block = []
                if event is not None:
                    return event

    async def records(self, n: int, timeout: float = 15.0) -> list[dict]:  # noqa: ASYNC109
        """The next ``n`` records (skipping heartbeats); fails on anything else."""
        got: list[dict] = []
        deadline = time.monotonic() + timeout
        while len(got) < n:
            event = await self.next(max(deadline - time.monotonic(), 0.01))
            assert event is not None, f"stream ended after {len(got)} of {n} records"
            if event.kind in ("heartbeat", "retry"):
                continue
            assert event.kind == "record", event
            if self.sse:
                rec = event.data
                assert event.id == f"{rec['topic']}/{rec['partition']}/{rec['offset']}", event
            got.append(event.data)
        return got

    async def until_end(self, timeout: float = 15.0) -> list[Event]:  # noqa: ASYNC109
        """Every non-heartbeat event up to the clean end."""
        seen: list[Event] = []
        deadline = time.monotonic() + timeout
        while True:
            event = await self.next(max(deadline - time.monotonic(), 0.01))
            if event is None:
                return seen
            if event.kind not in ("heartbeat", "retry"):
                seen.append(event)


async def open_stream(
    http: aiohttp.ClientSession, url: str, kind: str, **params: Any
) -> aiohttp.ClientResponse:
    resp = await http.get(url, headers={"Accept": kind}, params=params or None)
    assert resp.status == 200, (resp.status, await resp.read())
    assert resp.headers["Content-Type"].split(";")[0] == kind
    assert resp.headers["Cache-Control"] == "no-cache"
    return resp


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # No pooling: a closed stream's connection must really close (that is the disconnect).
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(force_close=True),
        timeout=aiohttp.ClientTimeout(total=None, sock_read=60),
    ) as session:
        yield session


@dataclass
class Served:
    """A gateway served as ``event-gateway serve`` serves it."""

    app: web.Application
    url: str


@pytest.fixture
async def serve_gateway(
    kafka_bootstrap: str, new_topic
) -> AsyncIterator[Callable[..., Awaitable[Served]]]:
    """Gateways on the production runner (gateway.server.make_runner), not aiohttp's
    TestServer: TestServer cancels a handler whose client went away, the real server does
    not, so only here does the stream itself have to notice a disconnect (as in production).
    Depends on ``new_topic`` so gateways close before the test's topics are deleted."""
    runners: list[web.AppRunner] = []

    async def make(props: Mapping[str, str] | None = None) -> Served:
        cfg = from_properties(
            {
                "bootstrap.servers": kafka_bootstrap,
                "kafka.timeout.ms": "5000",
                "listeners": "http://127.0.0.1:0",
                **(props or {}),
            }
        )
        app = build_app(cfg)
        runner = make_runner(app, cfg)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        return Served(app, f"http://{host}:{port}")

    yield make
    for runner in reversed(runners):
        await runner.cleanup()


def group_name() -> str:
    return "gs-" + uuid.uuid4().hex[:10]


def values(records: list[dict]) -> list[bytes]:
    return [base64.b64decode(r["value"]) for r in records]


async def produce(producer, topic: str, values: list[bytes]) -> None:
    for value in values:
        await producer.send_and_wait(topic, value, partition=0)


async def create(api: V2, group: str, name: str, topic: str, **cfg: Any) -> str:
    status, body = await api.create(
        group,
        name=name,
        format="binary",
        **{"auto.offset.reset": "earliest", "auto.commit.enable": "false", **cfg},
    )
    assert status == 200, body
    assert await api.subscribe(group, name, [topic]) == 204
    return api.inst(group, name)


async def poll_until(check, what: str, timeout: float = 10.0) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def commit_empty(api: V2, inst: str) -> None:
    status, body, _ = await api.call("POST", inst + "/offsets")
    assert (status, body) == (200, []), body


# --- exactly once across a disconnect ---------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
async def test_every_record_exactly_once_across_disconnect_and_reconnect(
    serve_gateway, new_topic, producer, kafka_bootstrap, http, kind
):
    """Stream A stops after 8 records (max_records); stream B takes the rest, then records
    produced while it is open (live), then the client hangs up and more records arrive at once
    (the read in progress fails to write them: rewound). The empty-body commit commits exactly
    what the client received; the same instance's next stream and then a new instance of the
    group continue there: every record once, none missing, none twice."""
    gateway = await serve_gateway()
    api = V2(http, gateway.url)
    topic = await new_topic(partitions=1)
    group = group_name()
    inst = await create(api, group, "a", topic)
    url = gateway.url + inst + "/records"
    await produce(producer, topic, [b"v%d" % i for i in range(20)])

    received: list[dict] = []
    resp = await open_stream(http, url, kind, max_records=8)
    stream = Stream(resp)
    received += await stream.records(8)
    ends = await stream.until_end()
    assert ends == ([Event("end", {"reason": "max_records"})] if kind == SSE else []), ends
    resp.close()

    resp = await open_stream(http, url, kind)
    stream = Stream(resp)
    received += await stream.records(12)
    await produce(producer, topic, [b"v%d" % i for i in range(20, 25)])
    received += await stream.records(5)  # pushed while the stream is open
    resp.close()  # the client hangs up; nothing it did not read was in flight
    await produce(producer, topic, [b"v%d" % i for i in range(25, 35)])
    await poll_until(lambda: gateway.app[STREAMS].total == 0, "the stream to notice")

    await commit_empty(api, inst)
    assert (await committed_offsets(kafka_bootstrap, group)).get((topic, 0)) == 25

    resp = await open_stream(http, url, kind, max_records=5)
    stream = Stream(resp)
    received += await stream.records(5)
    await stream.until_end()
    resp.close()
    await commit_empty(api, inst)
    assert (await committed_offsets(kafka_bootstrap, group)).get((topic, 0)) == 30

    assert await api.delete(group, "a") == 204
    inst = await create(api, group, "b", topic)
    resp = await open_stream(http, gateway.url + inst + "/records", kind, max_records=5)
    received += await Stream(resp).records(5)
    resp.close()

    assert [r["offset"] for r in received] == list(range(35))
    assert values(received) == [b"v%d" % i for i in range(35)]
    # And nothing after it: the new instance's delivered position is exactly the end.
    await commit_empty(api, inst)
    assert (await committed_offsets(kafka_bootstrap, group)).get((topic, 0)) == 35


# --- the instance stays usable while its stream is open ----------------------------------------


async def test_seek_and_commit_work_while_a_stream_is_open(
    make_gateway, new_topic, producer, kafka_bootstrap, http
):
    """A seek during the stream takes effect in it (the records after the target come again),
    and the empty-body commit commits what the stream delivered, both answered at once."""
    gateway = await make_gateway()
    api = V2(gateway)
    topic = await new_topic(partitions=1)
    group = group_name()
    inst = await create(api, group, "c", topic)
    await produce(producer, topic, [b"r%d" % i for i in range(10)])
    resp = await open_stream(http, str(gateway.make_url(inst + "/records")), SSE)
    stream = Stream(resp)
    assert [r["offset"] for r in await stream.records(10)] == list(range(10))

    started = time.monotonic()
    await commit_empty(api, inst)
    assert (await committed_offsets(kafka_bootstrap, group)).get((topic, 0)) == 10
    status, body, _ = await api.call(
        "POST", inst + "/positions", {"offsets": [{"topic": topic, "partition": 0, "offset": 3}]}
    )
    assert status == 204, body
    assert time.monotonic() - started < 5  # waited for one read at most, not for the stream
    assert [r["offset"] for r in await stream.records(7)] == list(range(3, 10))

    await produce(producer, topic, [b"r10"])
    assert values(await stream.records(1)) == [b"r10"]
    await commit_empty(api, inst)
    assert (await committed_offsets(kafka_bootstrap, group)).get((topic, 0)) == 11
    resp.close()


async def test_auto_commit_runs_while_a_stream_is_open(
    make_gateway, new_topic, producer, kafka_bootstrap, http
):
    """A stream reads without pause; auto-commit must still commit what it delivered on its
    interval, not only when the stream ends."""
    gateway = await make_gateway({"consumer.auto.commit.interval.ms": "300"})
    api = V2(gateway)
    topic = await new_topic(partitions=1)
    group = group_name()
    inst = await create(api, group, "ac", topic, **{"auto.commit.enable": "true"})
    await produce(producer, topic, [b"a%d" % i for i in range(6)])
    resp = await open_stream(http, str(gateway.make_url(inst + "/records")), NDJSON)
    stream = Stream(resp)
    assert len(await stream.records(6)) == 6
    deadline = time.monotonic() + 10
    while (await committed_offsets(kafka_bootstrap, group)).get((topic, 0)) != 6:
        assert time.monotonic() < deadline, "nothing auto-committed while the stream is open"
        await asyncio.sleep(0.2)
    resp.close()


# --- failures after the stream started ----------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
async def test_a_poison_record_ends_the_stream_with_an_error_and_is_skipped(
    make_gateway, new_topic, producer, http, kind
):
    """The read steps past a record it can never decode, as a non-streaming read does: the
    stream ends with the error as its last event, and the reconnect continues after it."""
    gateway = await make_gateway()
    api = V2(gateway)
    topic = await new_topic(partitions=1)
    group = group_name()
    status, _ = await api.create(
        group, name="p", format="json", **{"auto.offset.reset": "earliest"}
    )
    assert status == 200
    assert await api.subscribe(group, "p", [topic]) == 204
    await produce(producer, topic, [b'{"n":0}', b"{not json", b'{"n":2}'])
    url = str(gateway.make_url(api.inst(group, "p") + "/records"))

    resp = await open_stream(http, url, kind)
    stream = Stream(resp)
    assert [r["value"] for r in await stream.records(1)] == [{"n": 0}]
    (error,) = await stream.until_end()
    resp.close()
    assert error.kind == "error" and set(error.data) == {"error_code", "message"}, error
    assert error.data["error_code"] == 40801
    assert f"{topic}-0 at offset 1" in error.data["message"]

    resp = await open_stream(http, url, kind)
    assert [r["value"] for r in await Stream(resp).records(1)] == [{"n": 2}]
    resp.close()


async def test_deleting_the_instance_ends_its_stream_with_not_found(make_gateway, new_topic, http):
    gateway = await make_gateway()
    api = V2(gateway)
    topic = await new_topic(partitions=1)
    group = group_name()
    inst = await create(api, group, "del", topic)
    resp = await open_stream(http, str(gateway.make_url(inst + "/records")), SSE)
    stream = Stream(resp)
    assert await stream.next() == Event("retry", 3000)
    assert await api.delete(group, "del") == 204  # not blocked by the open stream
    (error,) = await stream.until_end()
    resp.close()
    assert error == Event("error", {"error_code": 40403, "message": "Consumer instance not found."})


# --- limits, validation, negotiation --------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
async def test_duration_ends_the_stream_with_heartbeats_meanwhile(
    make_gateway, new_topic, http, kind
):
    gateway = await make_gateway({"stream.heartbeat.ms": "300"})
    api = V2(gateway)
    topic = await new_topic(partitions=1)
    inst = await create(api, group_name(), "d", topic)
    started = time.monotonic()
    resp = await open_stream(http, str(gateway.make_url(inst + "/records")), kind, duration_ms=1500)
    stream = Stream(resp)
    seen: list[Event] = []
    while (event := await stream.next()) is not None:
        seen.append(event)
    took = time.monotonic() - started
    assert 1.4 <= took < 5, took
    heartbeats = sum(e.kind == "heartbeat" for e in seen)
    assert heartbeats >= 3, seen  # idle: one at least every 300 ms
    rest = [e for e in seen if e.kind != "heartbeat"]
    if kind == SSE:
        assert rest == [Event("retry", 3000), Event("end", {"reason": "duration"})], rest
    else:
        assert rest == [], rest


async def test_stream_mistakes_are_json_errors_before_the_stream_starts(
    make_gateway, new_topic, http
):
    gateway = await make_gateway({"stream.max.open.per.principal": "1"})
    api = V2(gateway)
    topic = await new_topic(partitions=1)
    group = group_name()
    inst = await create(api, group, "e", topic)
    url = str(gateway.make_url(inst + "/records"))

    async def expect(status: int, code: int, path: str = url, accept: str = SSE, **params):
        async with http.get(path, headers={"Accept": accept}, params=params or None) as resp:
            body = await resp.read()
            assert resp.status == status, (params, body)
            assert resp.headers["Content-Type"].startswith("application/json"), resp.headers
            doc = orjson.loads(body)
            assert set(doc) == {"error_code", "message"} and doc["error_code"] == code, doc

    for name in ("max_records", "duration_ms"):
        for bad in ("0", "-1", "abc", "", "1.5", "1e3"):
            await expect(400, 400, **{name: bad})
    await expect(400, 400, max_bytes="x")
    await expect(400, 400, accept=NDJSON, timeout="soon")
    await expect(404, 40403, str(gateway.make_url(api.inst(group, "nobody") + "/records")))
    status, _ = await api.create(group, name="idle")
    assert status == 200
    await expect(409, 40903, str(gateway.make_url(api.inst(group, "idle") + "/records")))
    # Stream types exist on records only; elsewhere they are not acceptable, as before.
    await expect(406, 406, str(gateway.make_url(inst + "/subscription")))
    await expect(406, 406, str(gateway.make_url("/topics")), accept=NDJSON)

    # One stream per principal here: the second is refused before it starts.
    resp = await open_stream(http, url, NDJSON)
    await expect(429, 42905)
    resp.close()
    await poll_until(lambda: gateway.app[STREAMS].total == 0, "the first stream to end")
    resp = await open_stream(http, url, NDJSON, duration_ms=100)
    assert await Stream(resp).until_end() == []


async def test_wildcard_accept_still_gets_the_array(make_gateway, new_topic, producer):
    """``*/*``, ``text/*`` and no Accept never start a stream: v2 clients get one JSON array."""
    gateway = await make_gateway()
    api = V2(gateway)
    topic = await new_topic(partitions=1)
    inst = await create(api, group_name(), "f", topic, **{"fetch.min.bytes": 1})
    await produce(producer, topic, [b"x"])
    for accept in ("*/*", "application/*", None, f"{SSE};q=0, */*"):
        status, body, headers = await api.call("GET", inst + "/records", accept=accept)
        assert status == 200 and isinstance(body, list), (accept, body)
        assert headers["Content-Type"] == BINARY, accept
    status, _, headers = await api.call("GET", inst + "/records", accept="text/*")
    assert status == 406, headers  # offers no text type but a stream, which it must name
    status, _, headers = await api.call("GET", inst + "/records", accept=V2_JSON)
    assert status == 200 and headers["Content-Type"] == V2_JSON


async def test_json_stream_with_metadata_keeps_the_read_elements(
    make_gateway, new_topic, producer, http
):
    """Events carry exactly the elements a read returns (format, include.metadata); a value
    with its own "partition" and "offset" keys does not confuse the event id."""
    gateway = await make_gateway()
    api = V2(gateway)
    topic = await new_topic(partitions=1)
    status, _ = await api.create(
        group := group_name(),
        name="g",
        format="json",
        **{"auto.offset.reset": "earliest", "include.metadata": True},
    )
    assert status == 200
    assert await api.subscribe(group, "g", [topic]) == 204
    value = orjson.dumps({"partition": 7, "offset": 99, "text": 'a"b\n'})
    await producer.send_and_wait(topic, value, key=b'"k"', partition=0, headers=[("h", b"\x00")])
    resp = await open_stream(http, str(gateway.make_url(api.inst(group, "g") + "/records")), SSE)
    (rec,) = await Stream(resp).records(1)
    resp.close()
    assert rec["key"] == "k" and rec["value"] == orjson.loads(value)
    assert (rec["partition"], rec["offset"]) == (0, 0)
    assert rec["headers"] == [{"name": "h", "value": "AA=="}]
    assert isinstance(rec["timestamp"], int) and rec["timestamp_type"] == "CREATE_TIME"


async def test_a_long_stream_keeps_its_directory_record(make_gateway, new_topic, redis_url, http):
    """A stream may be the only traffic its instance sees for longer than the instance
    timeout: the directory record (what other replicas route by) must stay."""
    props = {
        "session.store.url": redis_url,
        "cluster.secret": uuid.uuid4().hex,
        "consumer.instance.timeout.ms": "1500",  # the record lives 6.5 s untouched
        "stream.heartbeat.ms": "500",
    }
    gateway = await make_gateway(props)
    api = V2(gateway)
    topic = await new_topic(partitions=1)
    group = group_name()
    inst = await create(api, group, "h", topic)
    directory = RedisDirectory(redis_url)
    await directory.start()
    try:
        resp = await open_stream(http, str(gateway.make_url(inst + "/records")), NDJSON)
        stream = Stream(resp)
        deadline = time.monotonic() + 8.0
        while time.monotonic() < deadline:
            assert await stream.next() == Event("heartbeat")
        assert await directory.get(group, "h") is not None
        resp.close()
    finally:
        await directory.stop()
