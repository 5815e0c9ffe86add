"""Group-less topic streams (``GET /topics/{t}/events``) on one in-process replica, real Kafka.

Records are written with an independent producer and read back through the stream with the
spec-following SSE reader of tests/support/sse.py, as a browser's EventSource would see them.
The property everything rests on is the event id: resuming from the id of any event must give
exactly the records after it on every partition. The cross-replica half (the serving replica
SIGKILLed, the reconnect served by another) is tests/cluster/test_topic_events_lb.py.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from gateway.openapi import document
from gateway.security.basic import add_user
from gateway.streaming.slots import STREAMS
from gateway.streams.positions import decode_id
from tests.harness.api import MakeGatewayFn, NewTopicFn
from tests.support.sse import Event, read_events

pytestmark = pytest.mark.asyncio

SSE = "text/event-stream"
Client = TestClient[web.Request, web.Application]


# --- a stream as a test reads it ----------------------------------------------------------------


class Stream:
    """One open stream: every block the reader yields, kept in order."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp
        self._events = read_events(resp)
        self.seen: list[Event] = []

    async def next(self, timeout: float = 10.0) -> Event | None:  # noqa: ASYNC109
        """The next block of any kind; None once the stream ended."""
        async with asyncio.timeout(timeout):
            try:
                ev = await anext(self._events)
            except StopAsyncIteration:
                return None
        self.seen.append(ev)
        return ev

    async def records(self, n: int, timeout: float = 10.0) -> list[Event]:  # noqa: ASYNC109
        """The next ``n`` record or tombstone events (other blocks are kept in ``seen``)."""
        out: list[Event] = []
        async with asyncio.timeout(timeout):
            while len(out) < n:
                ev = await self.next(timeout)
                assert ev is not None, f"the stream ended after {len(out)} of {n} records"
                if ev.kind == "event":
                    assert ev.event in ("record", "tombstone"), ev
                    out.append(ev)
        return out

    async def opened(self) -> str:
        """Wait for the id-only block with the starting positions: from here on, records
        produced are after the stream's start."""
        while True:
            ev = await self.next()
            assert ev is not None, "the stream ended before it started"
            if ev.kind == "checkpoint":
                assert ev.id is not None
                return ev.id

    async def end(self, timeout: float = 10.0) -> list[Event]:  # noqa: ASYNC109
        """Everything up to the stream's clean end."""
        rest = []
        while (ev := await self.next(timeout)) is not None:
            rest.append(ev)
        return rest

    @property
    def last_id(self) -> str | None:
        """What EventSource would send as Last-Event-ID now."""
        return next((ev.id for ev in reversed(self.seen) if ev.id is not None), None)


@contextlib.asynccontextmanager
async def stream(
    gateway: Client,
    topic: str,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> AsyncIterator[Stream]:
    async with gateway.get(
        f"/topics/{topic}/events",
        params=dict(params or {}),
        headers={"Accept": SSE, **(headers or {})},
    ) as resp:
        assert resp.status == 200, await resp.text()
        yield Stream(resp)


async def status_of(
    gateway: Client,
    topic: str,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, Any]:
    async with gateway.get(
        f"/topics/{topic}/events", params=dict(params or {}), headers=dict(headers or {})
    ) as resp:
        assert resp.content_type == "application/json"
        return resp.status, await resp.json()


async def produce(
    producer: AIOKafkaProducer,
    topic: str,
    partition: int,
    values: list[bytes | None],
    *,
    key: bytes | None = None,
    timestamp_ms: int | None = None,
) -> None:
    for value in values:
        await producer.send_and_wait(
            topic, value, key=key, partition=partition, timestamp_ms=timestamp_ms
        )


def assert_documented(events: list[Event]) -> None:
    """Each dispatched event as the OpenAPI document describes one (what schemathesis checks
    with whatever topic it happens to generate: an OpenAPI 3.1 event-stream ``schema`` is one
    event's ``{event, data, id, retry}``)."""
    op = document(builtin_registry=False)["paths"]["/topics/{topic}/events"]["get"]
    schema = op["responses"]["200"]["content"][SSE]["schema"]
    dispatched = [ev for ev in events if ev.kind == "event"]
    assert dispatched
    for ev in dispatched:
        seen = {"event": ev.event, "data": ev.data}
        if ev.id is not None:
            seen["id"] = ev.id
        jsonschema.validate(seen, schema)


def positions_of(events: list[Event]) -> dict[int, list[int]]:
    found: dict[int, list[int]] = {}
    for ev in events:
        data = ev.json()
        found.setdefault(data["partition"], []).append(data["offset"])
    return found


# --- what a stream sends --------------------------------------------------------------------


async def test_from_beginning_sends_every_record_in_order_per_partition(
    gateway: Client, new_topic: NewTopicFn, producer: AIOKafkaProducer
) -> None:
    topic = await new_topic(partitions=3)
    for p in range(3):
        await produce(producer, topic, p, [b'{"n":%d}' % (p * 10 + i) for i in range(4)])

    async with stream(gateway, topic, {"from": "beginning"}) as s:
        assert s.resp.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        assert s.resp.headers["Cache-Control"] == "no-cache"
        assert len(s.resp.headers["X-Event-Gateway-Node"]) == 12
        first = await s.next()
        assert first is not None and (first.kind, first.retry) == ("retry", 1000)
        assert await s.opened() == "0:0,1:0,2:0"
        events = await s.records(12)

    assert positions_of(events) == {p: [0, 1, 2, 3] for p in range(3)}
    for ev in events:
        data = ev.json()
        p, o = data["partition"], data["offset"]
        assert data["topic"] == topic and data["value"] == {"n": p * 10 + o}
        assert data["key"] is None and data["headers"] == []
        assert data["timestamp"] > 0 and data["timestamp_type"] == "CREATE_TIME"
        assert "value_encoding" not in data
        # The id is the next offset of every partition, after this very event.
        assert decode_id(ev.id or "")[p] == o + 1
    assert decode_id(events[-1].id or "") == {0: 4, 1: 4, 2: 4}


async def test_from_end_sends_only_what_is_produced_after_the_stream_opened(
    gateway: Client, new_topic: NewTopicFn, producer: AIOKafkaProducer
) -> None:
    topic = await new_topic(partitions=2)
    await produce(producer, topic, 0, [b"1", b"2"])
    await produce(producer, topic, 1, [b"3"])

    async with stream(gateway, topic) as s:  # from=end is the default
        assert decode_id(await s.opened()) == {0: 2, 1: 1}
        await produce(producer, topic, 1, [b"4"])
        await produce(producer, topic, 0, [b"5"])
        events = await s.records(2)

    assert sorted(
        (e.json()["partition"], e.json()["offset"], e.json()["value"]) for e in events
    ) == [
        (0, 2, 5),
        (1, 1, 4),
    ]


async def test_from_a_timestamp(
    gateway: Client, new_topic: NewTopicFn, producer: AIOKafkaProducer
) -> None:
    topic = await new_topic(partitions=2)
    hour = 3_600_000
    now = int(time.time() * 1000)
    for p in (0, 1):
        for i, age in enumerate((3, 2, 1)):
            await produce(producer, topic, p, [b"%d" % i], timestamp_ms=now - age * hour)
    since = datetime.fromtimestamp((now - 2 * hour) / 1000, UTC).isoformat()  # "+00:00"

    async with stream(gateway, topic, {"from": since}) as s:
        assert decode_id(await s.opened()) == {0: 1, 1: 1}
        events = await s.records(4)
    assert positions_of(events) == {0: [1, 2], 1: [1, 2]}

    # Epoch milliseconds mean the same; a time after every record waits for the next one.
    async with stream(gateway, topic, {"from": str(now - 2 * hour + 1)}) as s:
        assert decode_id(await s.opened()) == {0: 2, 1: 2}
    async with stream(gateway, topic, {"from": "2999-01-01T00:00:00Z"}) as s:
        assert decode_id(await s.opened()) == {0: 3, 1: 3}


async def test_partition_and_key_filters(
    gateway: Client, new_topic: NewTopicFn, producer: AIOKafkaProducer
) -> None:
    topic = await new_topic(partitions=3)
    await produce(producer, topic, 0, [b"a0"], key=b"alice")
    await produce(producer, topic, 1, [b"b1"], key=b"bob")
    await produce(producer, topic, 1, [b"a1"], key=b'"alice"')  # a JSON string key
    await produce(producer, topic, 2, [b"a2"], key=b"alice")
    await produce(producer, topic, 2, [b"n2"])

    async with stream(gateway, topic, {"from": "beginning", "partition": "2,1"}) as s:
        assert decode_id(await s.opened()) == {1: 0, 2: 0}
        events = await s.records(4)
    assert positions_of(events) == {1: [0, 1], 2: [0, 1]}

    async with stream(gateway, topic, {"from": "beginning", "key": "alice"}) as s:
        events = await s.records(3)
        # The skipped records still move the position on: an id-only block after them.
        await produce(producer, topic, 0, [b"b0"], key=b"bob")
        while s.last_id is None or decode_id(s.last_id)[0] != 2:
            assert await s.next() is not None
    assert sorted((e.json()["partition"], e.json()["key"]) for e in events) == [
        (0, "alice"),
        (1, "alice"),
        (2, "alice"),
    ]
    assert all(ev.kind != "event" for ev in s.seen[s.seen.index(events[-1]) + 1 :])


async def test_formats_and_tombstones(
    gateway: Client, new_topic: NewTopicFn, producer: AIOKafkaProducer
) -> None:
    topic = await new_topic(partitions=1)
    await produce(producer, topic, 0, [b'{\n  "pretty": true\n}'], key=b"k1")
    await produce(producer, topic, 0, [b"plain text"], key=b'{"id":1}')
    await produce(producer, topic, 0, [b"\xff\xfe"], key=b"k3")
    await produce(producer, topic, 0, [None], key=b"k1")

    async with stream(gateway, topic, {"from": "beginning"}) as s:
        events = await s.records(4)
    assert [e.event for e in events] == ["record", "record", "record", "tombstone"]
    assert_documented(events)
    data = [e.json() for e in events]
    assert (data[0]["key"], data[0]["key_encoding"], data[0]["value"]) == (
        "k1",
        "string",
        {"pretty": True},
    )
    assert (data[1]["key"], data[1]["value"], data[1]["value_encoding"]) == (
        {"id": 1},
        "plain text",
        "string",
    )
    assert "key_encoding" not in data[1]
    assert (data[2]["value"], data[2]["value_encoding"]) == ("//4=", "base64")
    assert (data[3]["key"], data[3]["value"], data[3]["offset"]) == ("k1", None, 3)
    assert events[3].id == "0:4"

    async with stream(gateway, topic, {"from": "beginning", "format": "binary"}) as s:
        binary = [e.json() for e in await s.records(4)]
    assert [base64.b64decode(d["key"]) for d in binary] == [b"k1", b'{"id":1}', b"k3", b"k1"]
    assert base64.b64decode(binary[1]["value"]) == b"plain text" and binary[3]["value"] is None
    assert all("value_encoding" not in d for d in binary)

    async with stream(gateway, topic, {"from": "beginning", "format": "string"}) as s:
        text = [e.json() for e in await s.records(4)]
    assert text[0]["value"] == '{\n  "pretty": true\n}' and "value_encoding" not in text[0]
    assert (text[2]["value"], text[2]["value_encoding"]) == ("//4=", "base64")


async def test_heartbeats_while_idle(make_gateway: MakeGatewayFn, new_topic: NewTopicFn) -> None:
    gateway = await make_gateway({"stream.heartbeat.ms": "200"})
    topic = await new_topic(partitions=1)
    async with stream(gateway, topic) as s:
        await s.opened()
        started = time.monotonic()
        beats = 0
        while beats < 3:
            ev = await s.next(timeout=5)
            assert ev is not None and ev.kind == "heartbeat", ev
            beats += 1
    assert time.monotonic() - started < 3


async def test_max_records_and_duration_end_the_stream(
    gateway: Client, new_topic: NewTopicFn, producer: AIOKafkaProducer
) -> None:
    topic = await new_topic(partitions=1)
    await produce(producer, topic, 0, [b"1", b"2", b"3"])
    async with stream(gateway, topic, {"from": "beginning", "max_records": "2"}) as s:
        rest = await s.end()
    records = [e for e in rest if e.kind == "event" and e.event == "record"]
    assert [e.json()["offset"] for e in records] == [0, 1]
    assert s.last_id == "0:2"
    # The last event says why the stream ended (a drain ends it without one).
    assert (rest[-1].event, rest[-1].json()) == ("end", {"reason": "max_records"})

    started = time.monotonic()
    async with stream(gateway, topic, {"duration_ms": "300"}) as s:
        rest = await s.end(timeout=5)
    assert 0.25 < time.monotonic() - started < 5
    assert (rest[-1].event, rest[-1].json()) == ("end", {"reason": "duration"})
    assert_documented(rest)


async def test_schema_formats_decode_with_the_registry(
    make_gateway: MakeGatewayFn, new_topic: NewTopicFn, producer: AIOKafkaProducer
) -> None:
    """avro as v2 reads it; a record that is not Confluent-framed is still sent, in base64."""
    registry_topic = await new_topic(
        1, f"_schemas-ev-{time.time_ns()}", {"cleanup.policy": "compact"}
    )
    gateway = await make_gateway(
        {"schema.registry.builtin": "true", "schema.registry.topic": registry_topic}
    )
    topic = await new_topic(partitions=1)
    schema = {"type": "record", "name": "R", "fields": [{"name": "n", "type": "long"}]}
    body = {"key_schema": '"string"', "value_schema": json.dumps(schema)}
    body["records"] = [{"key": "k", "value": {"n": 7}}]
    async with gateway.post(
        f"/topics/{topic}",
        data=json.dumps(body),
        headers={"Content-Type": "application/vnd.kafka.avro.v2+json"},
    ) as resp:
        assert resp.status == 200, await resp.text()
    await produce(producer, topic, 0, [b"not framed"])

    async with stream(gateway, topic, {"from": "beginning", "format": "avro"}) as s:
        framed, plain = [e.json() for e in await s.records(2)]
    assert (framed["key"], framed["value"]) == ("k", {"n": 7})
    assert "error" not in framed and "value_encoding" not in framed
    assert (plain["value"], plain["value_encoding"]) == ("bm90IGZyYW1lZA==", "base64")
    assert plain["error"]


# --- resuming --------------------------------------------------------------------------------


async def test_resume_by_last_event_id_gives_exactly_the_rest(
    gateway: Client, new_topic: NewTopicFn, producer: AIOKafkaProducer
) -> None:
    """Disconnect mid-stream, produce more, reconnect with the last id: every record exactly
    once, in order per partition, on a 3-partition topic."""
    topic = await new_topic(partitions=3)
    for p in range(3):
        await produce(producer, topic, p, [b"%d" % i for i in range(10)])

    async with stream(gateway, topic, {"from": "beginning"}) as s:
        first = await s.records(13)
        last_id = s.last_id
    assert last_id is not None and last_id == first[-1].id
    for p in range(3):
        await produce(producer, topic, p, [b"%d" % i for i in range(10, 15)])

    # The URL is the one first opened (from=beginning): the id decides where each resumes.
    async with stream(gateway, topic, {"from": "beginning"}, {"Last-Event-ID": last_id}) as s:
        rest = await s.records(45 - 13)
        with pytest.raises(TimeoutError):
            await s.records(1, timeout=0.5)  # nothing more: no duplicate

    assert positions_of(first + rest) == {p: list(range(15)) for p in range(3)}

    # The query parameter does the same for clients that cannot set headers; the header wins.
    middle = first[5].id or ""
    async with stream(gateway, topic, {"last_event_id": middle}) as s:
        again = await s.records(45 - 6)
    assert positions_of(first[:6] + again) == {p: list(range(15)) for p in range(3)}
    async with stream(
        gateway, topic, {"last_event_id": middle}, {"Last-Event-ID": rest[-1].id or ""}
    ) as s:
        assert await s.opened() == rest[-1].id


async def test_resume_on_a_topic_of_many_partitions(
    gateway: Client, new_topic: NewTopicFn, producer: AIOKafkaProducer
) -> None:
    """1,500 partitions: the readable id (``0:0,1:0,...``, about 10 KB) would be longer than
    the 8 KB a header field may be, and EventSource's reconnect would get a 400 for good. The
    ids are compact instead, fit, and resume exactly."""
    topic = await new_topic(partitions=1500)
    for p in (0, 700, 1499):
        await produce(producer, topic, p, [b"%d" % i for i in range(3)])

    async with stream(gateway, topic, {"from": "beginning"}) as s:
        opened = await s.opened()
        first = await s.records(5)
        last_id = s.last_id
    assert opened.startswith("c0.") and decode_id(opened) == dict.fromkeys(range(1500), 0)
    assert last_id is not None and len(last_id) < 8190 and last_id.startswith("c0.")
    for p in (0, 700, 1499):
        await produce(producer, topic, p, [b"%d" % i for i in range(3, 5)])

    async with stream(gateway, topic, {"from": "beginning"}, {"Last-Event-ID": last_id}) as s:
        assert await s.opened() == last_id
        rest = await s.records(15 - 5)
        with pytest.raises(TimeoutError):
            await s.records(1, timeout=0.5)  # nothing more: no duplicate
    assert positions_of(first + rest) == {p: list(range(5)) for p in (0, 700, 1499)}


async def test_resume_below_the_log_start_reports_a_gap(
    gateway: Client,
    new_topic: NewTopicFn,
    producer: AIOKafkaProducer,
    kafka_admin: AIOKafkaAdminClient,
) -> None:
    topic = await new_topic(partitions=2)
    await produce(producer, topic, 0, [b"%d" % i for i in range(5)])
    await kafka_admin.delete_records({TopicPartition(topic, 0): RecordsToDelete(3)})

    async with stream(gateway, topic, headers={"Last-Event-ID": "0:1,1:0"}) as s:
        assert await s.opened() == "0:3,1:0"
        gap = await s.next()
        assert gap is not None and gap.event == "gap" and gap.id == "0:3,1:0"
        assert gap.json() == {"topic": topic, "partition": 0, "requested_offset": 1, "offset": 3}
        assert_documented([gap])
        events = await s.records(2)
    assert positions_of(events) == {0: [3, 4]}

    # Past the end (a topic made again under the same name): from the end.
    async with stream(gateway, topic, headers={"Last-Event-ID": "0:99,1:0,7:5"}) as s:
        assert await s.opened() == "0:5,1:0"
    # A partition the id does not name starts per ``from``.
    async with stream(gateway, topic, {"from": "beginning"}, {"Last-Event-ID": "1:0"}) as s:
        assert await s.opened() == "0:3,1:0"
    async with stream(gateway, topic, {"from": "end"}, {"Last-Event-ID": "1:0"}) as s:
        assert await s.opened() == "0:5,1:0"


# --- refusals, bounds and the end ----------------------------------------------------------


async def test_refusals_are_json_errors(gateway: Client, new_topic: NewTopicFn) -> None:
    topic = await new_topic(partitions=2)
    bad: list[tuple[dict[str, str], dict[str, str], int]] = [
        ({"from": "yesterday"}, {}, 400),
        ({"from": "1969-01-01T00:00:00Z"}, {}, 422),
        ({"partition": "x"}, {}, 400),
        ({"format": "xml"}, {}, 400),
        ({"max_records": "0"}, {}, 400),
        ({"duration_ms": "-5"}, {}, 400),
        ({}, {"Last-Event-ID": "0:1,0:2"}, 400),
        ({"last_event_id": "garbage"}, {}, 400),
        ({}, {"Accept": "application/json"}, 406),
    ]
    for params, headers, status in bad:
        got, body = await status_of(gateway, topic, params, headers)
        assert (got, set(body)) == (status, {"error_code", "message"}), (params, headers, body)

    assert await status_of(gateway, "no-such-topic-here") == (
        404,
        {"error_code": 40403, "message": "Topic no-such-topic-here not found."},
    )
    assert (await status_of(gateway, topic, {"partition": "0,2"}))[1]["error_code"] == 40402
    assert (await status_of(gateway, "_schemas"))[1]["error_code"] == 40301
    assert (await status_of(gateway, "__consumer_offsets"))[1]["error_code"] == 40301
    # No Accept, or */*, is a stream.
    for accept in ({}, {"Accept": "*/*"}):
        async with gateway.get(f"/topics/{topic}/events", headers=accept) as resp:
            assert resp.status == 200 and resp.content_type == SSE
    # HEAD answers as the GET would, and opens nothing.
    async with gateway.head(f"/topics/{topic}/events", params={"partition": "1"}) as resp:
        assert resp.status == 200 and resp.content_type == SSE
        assert await resp.read() == b""
    async with gateway.head(f"/topics/{topic}/events", params={"partition": "5"}) as resp:
        assert resp.status == 404


async def test_kafka_down_before_the_stream_is_a_retriable_503(make_gateway: MakeGatewayFn) -> None:
    gateway = await make_gateway({"bootstrap.servers": "127.0.0.1:9", "kafka.timeout.ms": "1000"})
    async with gateway.get("/topics/anything/events", headers={"Accept": "*/*"}) as resp:
        assert (resp.status, resp.headers["Retry-After"]) == (503, "1")
        assert (await resp.json())["error_code"] == 50003
    # An EventSource gives up on a 503 for good; it is told to retry instead: a stream that
    # carries the error and a reconnect delay, and ends.
    async with gateway.get("/topics/anything/events", headers={"Accept": SSE}) as resp:
        assert (resp.status, resp.content_type) == (200, SSE)
        events = [e async for e in read_events(resp)]
    assert [(e.kind, e.retry) for e in events if e.kind == "retry"] == [("retry", 1000)]
    [error] = [e for e in events if e.kind == "event"]
    assert error.event == "error" and error.json()["error_code"] == 50003


async def test_streams_are_bounded_per_principal_and_per_replica(
    make_gateway: MakeGatewayFn, new_topic: NewTopicFn
) -> None:
    topic = await new_topic(partitions=1)
    for props in ({"stream.max.open.per.principal": "1"}, {"stream.max.open": "1"}):
        gateway = await make_gateway(props)
        async with stream(gateway, topic) as s:
            await s.opened()
            status, body = await status_of(gateway, topic)
            assert (status, body["error_code"]) == (429, 42905), props
        # The slot is given back when the stream ends.
        deadline = time.monotonic() + 5
        while gateway.app[STREAMS].total:
            assert time.monotonic() < deadline, "the slot was never given back"
            await asyncio.sleep(0.02)
        async with stream(gateway, topic) as s:
            await s.opened()


async def test_streams_end_cleanly_when_the_gateway_shuts_down(
    make_gateway: MakeGatewayFn, new_topic: NewTopicFn
) -> None:
    gateway = await make_gateway()
    topic = await new_topic(partitions=1)
    url = str(gateway.make_url(f"/topics/{topic}/events"))
    async with aiohttp.ClientSession() as http, http.get(url, headers={"Accept": SSE}) as resp:
        assert resp.status == 200
        s = Stream(resp)
        await s.opened()
        started = time.monotonic()
        closing = asyncio.create_task(gateway.server.close())
        rest = await s.end(timeout=10)  # EOF, not a reset: the last chunk was written
        assert time.monotonic() - started < 5
        assert all(ev.kind == "heartbeat" for ev in rest)
        await asyncio.wait_for(closing, 30)


async def test_authorised_as_a_read(
    make_gateway: MakeGatewayFn, new_topic: NewTopicFn, tmp_path: Path
) -> None:
    """The consume right on the topic, as a subscription needs: describe is not enough, and
    the refusal comes before anything is opened. The per-principal bound is per user."""
    users = tmp_path / "users.txt"
    for name in ("alice", "bob"):
        add_user(users, name, f"{name}-pw", [])
    topic = await new_topic(partitions=1)
    rules = tmp_path / "rules.json"
    rules.write_text(
        json.dumps(
            {
                "rules": [
                    {"principal": "User:alice", "topic": topic, "allow": ["consume"]},
                    {"principal": "User:bob", "topic": topic, "allow": ["describe"]},
                ]
            }
        )
    )
    gateway = await make_gateway(
        {
            "authentication.method": "BASIC",
            "authentication.basic.users.file": str(users),
            "authorization.rules.file": str(rules),
            "stream.max.open.per.principal": "1",
        }
    )

    def auth(name: str) -> dict[str, str]:
        token = base64.b64encode(f"{name}:{name}-pw".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    assert (await status_of(gateway, topic))[0] == 401
    assert (await status_of(gateway, topic, headers=auth("bob")))[1]["error_code"] == 40301
    assert (await status_of(gateway, "no-such-topic", headers=auth("bob")))[0] == 403
    async with stream(gateway, topic, headers=auth("alice")) as s:
        await s.opened()
        assert (await status_of(gateway, topic, headers=auth("alice")))[0] == 429
