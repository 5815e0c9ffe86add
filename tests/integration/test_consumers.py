"""v2 consumer instances on one replica, against a real Kafka broker.

Records are written with an independent aiokafka producer and committed offsets are checked
with an independent admin client, so the gateway is never its own witness.
"""

from __future__ import annotations

import asyncio
import base64
import time

import orjson
import pytest

from tests.support.bridge import produce_ten, run_bridge_flow
from tests.support.kafka import committed_offsets
from tests.support.v2 import BINARY, JSON, V2, V2_JSON

pytestmark = pytest.mark.asyncio


def group_name() -> str:
    import uuid

    return "g-" + uuid.uuid4().hex[:10]


async def test_json_lifecycle_end_to_end(gateway, new_topic, producer, kafka_bootstrap):
    api = V2(gateway)
    topic = await new_topic(partitions=1)
    group = group_name()
    values = [{"n": i, "text": "héllo"} for i in range(3)]
    for i, v in enumerate(values):
        await producer.send_and_wait(topic, orjson.dumps(v), key=orjson.dumps(f"k{i}"))

    status, body = await api.create(
        group, name="c1", format="json", **{"auto.offset.reset": "earliest", "fetch.min.bytes": 1}
    )
    assert status == 200
    assert body["instance_id"] == "c1"
    assert body["base_uri"].endswith(f"/consumers/{group}/instances/c1")
    assert await api.subscribe(group, "c1", [topic]) == 204
    status, sub, _ = await api.call("GET", api.inst(group, "c1") + "/subscription")
    assert (status, sub) == (200, {"topics": [topic]})

    got = await api.drain(group, "c1", 3, accept=JSON)
    assert [r["value"] for r in got] == values
    assert [r["key"] for r in got] == ["k0", "k1", "k2"]
    assert [r["offset"] for r in got] == [0, 1, 2]
    assert all(list(r) == ["topic", "key", "value", "partition", "offset"] for r in got)
    assert {r["topic"] for r in got} == {topic}

    # Explicit commit: the proxy adds +1 (Confluent semantics).
    status, body, headers = await api.call(
        "POST",
        api.inst(group, "c1") + "/offsets",
        {"offsets": [{"topic": topic, "partition": 0, "offset": 1, "metadata": "m"}]},
    )
    assert (status, body) == (200, [])
    assert headers["Content-Type"].startswith(V2_JSON)
    status, body, _ = await api.call(
        "GET",
        api.inst(group, "c1") + "/offsets",
        {"partitions": [{"topic": topic, "partition": 0}]},
    )
    assert status == 200
    assert body == {"offsets": [{"topic": topic, "partition": 0, "offset": 2, "metadata": "m"}]}
    assert await committed_offsets(kafka_bootstrap, group) == {(topic, 0): 2}

    assert await api.delete(group, "c1") == 204
    assert await api.delete(group, "c1") == 404
    status, body, _ = await api.records(group, "c1", JSON)
    assert (status, body["error_code"]) == (404, 40403)
    assert body["message"] == "Consumer instance not found."


async def test_binary_lifecycle_all_byte_values(gateway, new_topic, producer, kafka_bootstrap):
    api = V2(gateway)
    topic = await new_topic(partitions=1)
    group = group_name()
    payload = bytes(range(256))
    await producer.send_and_wait(topic, payload, key=b"\x00\xff")
    await producer.send_and_wait(topic, None, key=b"t")  # tombstone
    await producer.send_and_wait(topic, b"", key=b"")  # empty, non-null
    await producer.send_and_wait(topic, b"v", key=None)  # no key

    # An empty create body gives a binary consumer with a generated name.
    status, body, _ = await api.call("POST", f"/consumers/{group}", None)
    assert status == 200
    name = body["instance_id"]
    assert name.startswith("rest-consumer-")
    status, _, _ = await api.call(
        "POST",
        api.inst(group, name) + "/assignments",
        {"partitions": [{"topic": topic, "partition": 0}]},
    )
    assert status == 204
    status, body, _ = await api.call(
        "POST",
        api.inst(group, name) + "/positions/beginning",
        {"partitions": [{"topic": topic, "partition": 0}]},
    )
    assert status == 204

    got: list[dict] = []
    for _ in range(20):
        # No Accept header: a binary read, answered as binary.
        status, body, headers = await api.call("GET", api.inst(group, name) + "/records")
        assert status == 200
        assert headers["Content-Type"] == BINARY
        got.extend(body)
        if len(got) >= 4:
            break
    assert base64.b64decode(got[0]["value"]) == payload
    assert base64.b64decode(got[0]["key"]) == b"\x00\xff"
    assert got[1]["key"] == "dA==" and got[1]["value"] is None
    assert got[2]["key"] == "" and got[2]["value"] == ""
    assert got[3]["key"] is None and got[3]["value"] == "dg=="

    # Empty-body commit: everything delivered so far.
    status, body, _ = await api.call("POST", api.inst(group, name) + "/offsets", None)
    assert (status, body) == (200, [])
    assert await committed_offsets(kafka_bootstrap, group) == {(topic, 0): 4}
    status, body, _ = await api.call("GET", api.inst(group, name) + "/assignments")
    assert body == {"partitions": [{"topic": topic, "partition": 0}]}
    assert await api.delete(group, name) == 204


async def test_two_instances_split_four_partitions_exactly_once(gateway, new_topic, producer):
    api = V2(gateway)
    topic = await new_topic(partitions=4)
    group = group_name()
    for name in ("a", "b"):
        status, _ = await api.create(
            group, name=name, **{"auto.offset.reset": "earliest", "fetch.min.bytes": 1}
        )
        assert status == 200
        assert await api.subscribe(group, name, [topic]) == 204

    # Let the group settle with both members before any data arrives.
    async def assigned(name: str) -> set[int]:
        _, body, _ = await api.call("GET", api.inst(group, name) + "/assignments")
        return {p["partition"] for p in body["partitions"]}

    for _ in range(100):
        await api.records(group, "a", timeout=100)
        await api.records(group, "b", timeout=100)
        pa, pb = await assigned("a"), await assigned("b")
        if len(pa) == 2 and len(pb) == 2:
            break
        await asyncio.sleep(0.1)
    assert pa | pb == {0, 1, 2, 3} and not pa & pb

    total = 400
    futs = [
        await producer.send(topic, f"v{i}".encode(), key=f"k{i}".encode()) for i in range(total)
    ]
    await asyncio.gather(*futs)

    seen: dict[str, list[tuple[int, int]]] = {"a": [], "b": []}

    async def consume(name: str) -> None:
        for _ in range(60):
            _, body, _ = await api.records(group, name, timeout=300)
            seen[name].extend((r["partition"], r["offset"]) for r in body)
            if len(seen["a"]) + len(seen["b"]) >= total:
                return

    await asyncio.gather(consume("a"), consume("b"))
    everything = seen["a"] + seen["b"]
    assert len(everything) == total
    assert len(set(everything)) == total  # no duplicates
    assert {p for p, _ in seen["a"]} <= pa and {p for p, _ in seen["b"]} <= pb
    assert seen["a"] and seen["b"]


async def test_seek_offset_timestamp_beginning_end(gateway, new_topic, producer):
    api = V2(gateway)
    topic = await new_topic(partitions=1)
    group = group_name()
    base_ts = 1_700_000_000_000
    for i in range(10):
        await producer.send_and_wait(topic, f"v{i}".encode(), timestamp_ms=base_ts + i * 1000)
    await api.create(group, name="s", **{"fetch.min.bytes": 1})
    inst = api.inst(group, "s")
    tp = {"topic": topic, "partition": 0}
    assert (await api.call("POST", inst + "/assignments", {"partitions": [tp]}))[0] == 204

    async def first_offset() -> int | None:
        for _ in range(10):
            _, body, _ = await api.records(group, "s", timeout=2000)
            if body:
                return body[0]["offset"]
        return None

    assert (await api.call("POST", inst + "/positions", {"offsets": [{**tp, "offset": 5}]}))[
        0
    ] == 204
    assert await first_offset() == 5
    assert (await api.call("POST", inst + "/positions/beginning", {"partitions": [tp]}))[0] == 204
    assert await first_offset() == 0
    # 2023-11-14T22:13:27Z is base_ts + 7 s: the first record at/after it is offset 7.
    status, _, _ = await api.call(
        "POST", inst + "/positions", {"timestamps": [{**tp, "timestamp": "2023-11-14T22:13:27Z"}]}
    )
    assert status == 204
    assert await first_offset() == 7
    assert (await api.call("POST", inst + "/positions/end", {"partitions": [tp]}))[0] == 204
    status, body, _ = await api.records(group, "s", timeout=300)
    assert (status, body) == (200, [])
    await producer.send_and_wait(topic, b"late")
    assert await first_offset() == 10
    # A timestamp after the last record seeks to the end instead of failing.
    status, _, _ = await api.call(
        "POST", inst + "/positions", {"timestamps": [{**tp, "timestamp": "2099-01-01T00:00:00Z"}]}
    )
    assert status == 204


async def test_consumer_errors(gateway, new_topic):
    api = V2(gateway)
    topic = await new_topic(partitions=1)
    group = group_name()
    assert (await api.create(group, name="e", format="json"))[0] == 200

    async def expect(method, path, body, status, code=None, **kw):
        got_status, got, _ = await api.call(method, path, body, **kw)
        assert got_status == status, got
        if code is not None:
            assert got["error_code"] == code, got
        return got

    got = await expect("POST", f"/consumers/{group}", {"name": "e"}, 409, 40902)
    assert got["message"].startswith("Consumer with specified consumer ID already exists")
    got = await expect("POST", f"/consumers/{group}", {"format": "xml"}, 422, 422)
    assert got["message"] == "Invalid format type."
    got = await expect(
        "POST", f"/consumers/{group}", {"auto.offset.reset": "bad-config"}, 422, 42204
    )
    assert got["message"].startswith("Invalid consumer configuration: ")
    await expect("POST", f"/consumers/{group}", {"auto.commit.enable": "maybe"}, 422, 42204)
    await expect("POST", f"/consumers/{group}", {"fetch.min.bytes": 99999999}, 422, 40001)
    got = await expect("POST", f"/consumers/{group}", {"auto.commit.interval.ms": 5}, 422, 422)
    assert got["message"] == "Unrecognized field: auto.commit.interval.ms"
    await expect("POST", f"/consumers/{group}", None, 415, 415, raw=b"{}", ctype="application/json")
    await expect("POST", f"/consumers/{group}", None, 400, 400, raw=b"{not json")
    # auto.commit.enable as a JSON boolean is accepted (Jackson coerces it).
    await expect("POST", f"/consumers/{group}", {"name": "bool", "auto.commit.enable": False}, 200)

    inst = api.inst(group, "e")
    assert await api.subscribe(group, "e", [topic]) == 204
    got = await expect(
        "POST",
        inst + "/assignments",
        {"partitions": [{"topic": topic, "partition": 0}]},
        409,
        40903,
    )
    assert got["message"].startswith("Illegal state: ")
    await expect("POST", inst + "/subscription", None, 422, 422)
    await expect("POST", inst + "/subscription", {"topics": [topic], "extra": 1}, 422, 422)
    # A json instance read as binary (no Accept) is a format mismatch.
    got = await expect("GET", inst + "/records", None, 406, 40601)
    assert got["message"] == (
        "The requested embedded data format does not match the deserializer for this consumer instance"
    )
    status, body, _ = await api.call("GET", inst + "/records", accept="text/html")
    assert (status, body) == (406, {"error_code": 406, "message": "HTTP 406 Not Acceptable"})
    await expect("GET", inst + "/offsets", None, 404, 40402)
    await expect("GET", inst + "/records", None, 400, 400, params={"timeout": "soon"}, accept=JSON)

    # Seek on a partition that is not assigned.
    await expect("DELETE", inst + "/subscription", None, 204)
    await expect(
        "POST", inst + "/assignments", {"partitions": [{"topic": topic, "partition": 0}]}, 204
    )
    got = await expect(
        "POST",
        inst + "/positions",
        {"offsets": [{"topic": topic, "partition": 7, "offset": 1}]},
        409,
        40903,
    )
    assert got["message"] == f"Illegal state: No current assignment for partition {topic}-7"
    await expect(
        "POST",
        inst + "/positions/end",
        {"partitions": [{"topic": "nope", "partition": 0}]},
        409,
        40903,
    )
    await expect("POST", inst + "/positions/beginning", None, 422, 422)
    await expect(
        "POST",
        inst + "/positions",
        {"timestamps": [{"topic": topic, "partition": 0, "timestamp": "yesterday"}]},
        422,
        422,
    )

    # Unknown instance, for every operation.
    ghost = api.inst(group, "ghost")
    for method, suffix, body in [
        ("DELETE", "", None),
        ("POST", "/offsets", None),
        ("GET", "/offsets", {"partitions": []}),
        ("POST", "/subscription", {"topics": [topic]}),
        ("GET", "/subscription", None),
        ("DELETE", "/subscription", None),
        ("POST", "/assignments", {"partitions": []}),
        ("GET", "/assignments", None),
        ("POST", "/positions", {"offsets": []}),
        ("POST", "/positions/beginning", {"partitions": []}),
        ("POST", "/positions/end", {"partitions": []}),
        ("GET", "/records", None),
    ]:
        got = await expect(method, ghost + suffix, body, 404, 40403)
        assert got["message"] == "Consumer instance not found."


async def test_tolerates_bodies_and_content_types_on_bodyless_requests(gateway, new_topic):
    api = V2(gateway)
    group = group_name()
    await api.create(group, name="t")
    inst = api.inst(group, "t")
    # curl -X GET --data ... sends a form content type; real clients send JSON bodies on DELETE.
    status, _, _ = await api.call(
        "GET", inst + "/subscription", raw=b"x=1", ctype="application/x-www-form-urlencoded"
    )
    assert status == 200
    status, _, _ = await api.call("DELETE", inst, {}, ctype=V2_JSON)
    assert status == 204


async def test_empty_read_returns_within_timeout(gateway, new_topic):
    api = V2(gateway)
    topic = await new_topic(partitions=1)
    group = group_name()
    await api.create(group, name="r")
    await api.subscribe(group, "r", [topic])
    started = time.monotonic()
    status, body, _ = await api.records(group, "r", timeout=400)
    elapsed = time.monotonic() - started
    assert (status, body) == (200, [])
    assert elapsed < 2.0
    # Without a timeout the default consumer.request.timeout.ms (1000) bounds the read.
    started = time.monotonic()
    status, body, _ = await api.records(group, "r")
    assert (status, body) == (200, [])
    assert 0.9 <= time.monotonic() - started < 3.0


async def test_long_poll_returns_when_data_arrives(make_gateway, new_topic, producer):
    api = V2(await make_gateway())
    topic = await new_topic(partitions=1)
    group = group_name()
    await api.create(
        group, name="lp", **{"fetch.min.bytes": 1, "consumer.request.timeout.ms": 10000}
    )
    inst = api.inst(group, "lp")
    await api.call(
        "POST", inst + "/assignments", {"partitions": [{"topic": topic, "partition": 0}]}
    )
    await api.call(
        "POST", inst + "/positions/end", {"partitions": [{"topic": topic, "partition": 0}]}
    )

    async def late_write() -> None:
        await asyncio.sleep(1.0)
        await producer.send_and_wait(topic, b"now")

    writer = asyncio.create_task(late_write())
    started = time.monotonic()
    status, body, _ = await api.records(group, "lp", timeout=8000)
    elapsed = time.monotonic() - started
    await writer
    assert status == 200 and [base64.b64decode(r["value"]) for r in body] == [b"now"]
    assert elapsed < 5.0  # returned on arrival, not after the 8 s wait


async def test_max_bytes_limits_a_read(gateway, new_topic, producer):
    api = V2(gateway)
    topic = await new_topic(partitions=1)
    for _ in range(5):
        await producer.send_and_wait(topic, b"x" * 100)
    group = group_name()
    await api.create(group, name="m", **{"auto.offset.reset": "earliest"})
    await api.call(
        "POST",
        api.inst(group, "m") + "/assignments",
        {"partitions": [{"topic": topic, "partition": 0}]},
    )
    got = []
    for _ in range(10):
        _, body, _ = await api.records(group, "m", max_bytes=250, timeout=500)
        assert len(body) <= 2
        got.extend(body)
        if len(got) == 5:
            break
    assert [r["offset"] for r in got] == [0, 1, 2, 3, 4]


async def test_poison_record_does_not_wedge_json_instance(gateway, new_topic, producer):
    api = V2(gateway)
    topic = await new_topic(partitions=1)
    await producer.send_and_wait(topic, b"{not json")
    await producer.send_and_wait(topic, b'{"ok": true}')
    group = group_name()
    await api.create(
        group, name="p", format="json", **{"auto.offset.reset": "earliest", "fetch.min.bytes": 1}
    )
    await api.call(
        "POST",
        api.inst(group, "p") + "/assignments",
        {"partitions": [{"topic": topic, "partition": 0}]},
    )
    statuses = []
    good = []
    for _ in range(10):
        status, body, headers = await api.records(group, "p", JSON, timeout=1000)
        statuses.append(status)
        if status == 408:
            assert body["error_code"] == 40801
            assert f"{topic}-0 at offset 0" in body["message"]
            assert headers["Content-Type"] == JSON
        elif body:
            good.extend(body)
            break
    assert 408 in statuses
    assert [r["value"] for r in good] == [{"ok": True}]


async def test_idle_instance_expires(make_gateway):
    api = V2(await make_gateway({"consumer.instance.timeout.ms": "1500"}))
    group = group_name()
    await api.create(group, name="idle")
    await api.create(group, name="busy")
    for _ in range(8):  # 4 s of activity on "busy", nothing on "idle"
        status, _, _ = await api.call("GET", api.inst(group, "busy") + "/subscription")
        assert status == 200
        await asyncio.sleep(0.5)
    status, body, _ = await api.call("GET", api.inst(group, "idle") + "/subscription")
    assert (status, body["error_code"]) == (404, 40403)
    status, _, _ = await api.call("GET", api.inst(group, "busy") + "/subscription")
    assert status == 200


async def test_kafka_bridge_client_confluent_mode(gateway, new_topic, producer, kafka_bootstrap):
    """A third-party v2 client from PyPI runs its whole flow unchanged."""
    topic = await new_topic(partitions=2)
    values = await produce_ten(producer, topic)
    group = group_name()
    got = await run_bridge_flow(str(gateway.make_url("/")), topic, group, len(values))
    assert got["values"] == sorted(values)
    assert await committed_offsets(kafka_bootstrap, group) == got["ends"]
    # The client deleted its instance on exit.
    status, _, _ = await V2(gateway).call("GET", f"/consumers/{group}/instances/kbc/subscription")
    assert status == 404
