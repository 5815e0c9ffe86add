"""The pure parts of instance streams: event ids, query limits, the hop's read timeout."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from aiokafka import ConsumerRecord

from gateway.consume import stream
from gateway.consume.decoding import DECODERS, DECODERS_WITH_METADATA
from gateway.forwarding import MARGIN_S, Forwarder
from gateway.registry.client import TOTAL_TIMEOUT_S
from sessions.directory import InstanceRecord
from sessions.router import Forward


def record(value: bytes | None, key: bytes | None = None, **kw: Any) -> ConsumerRecord:
    fields: dict[str, Any] = {
        "topic": "orders.eu-1_x",
        "partition": 12,
        "offset": 345678901234,
        "timestamp": 1_700_000_000_000,
        "timestamp_type": 0,
        "key": key,
        "value": value,
        "checksum": None,
        "serialized_key_size": 0,
        "serialized_value_size": 0,
        "headers": (),
    }
    fields.update(kw)
    return ConsumerRecord(**fields)


TRICKY_JSON = orjson.dumps(
    {"partition": 1, "offset": 2, "nested": [{"partition": 3, "offset": 4}], "s": ',"offset":5'}
)
CASES = [
    ("binary", record(b"\x00\xff", b"k")),
    ("binary", record(None)),
    ("json", record(TRICKY_JSON, b'{"partition":9,"offset":9}')),
    ("json", record(b"null", headers=(('x","offset":1,"partition":2', b"v"),))),
]


@pytest.mark.parametrize("metadata", [False, True], ids=["plain", "metadata"])
@pytest.mark.parametrize(("fmt", "rec"), CASES)
def test_event_id_is_the_elements_own_position(fmt: str, rec: ConsumerRecord, metadata) -> None:
    decode = (DECODERS_WITH_METADATA if metadata else DECODERS)[fmt]
    element, _ = decode(rec)
    doc = orjson.loads(element)
    assert stream.event_id(element) == f"{doc['topic']}/{doc['partition']}/{doc['offset']}"
    assert stream.event_id(element) == "orders.eu-1_x/12/345678901234"


def test_sse_record_event_is_one_event_of_the_element() -> None:
    element, _ = DECODERS["json"](record(b'{"a":"line\\nbreak"}'))
    framed = stream._sse_record(element)
    assert framed == (
        b"event: record\nid: orders.eu-1_x/12/345678901234\ndata: " + element + b"\n\n"
    )
    assert framed.count(b"\n") == 4  # one data line: the JSON text never holds a raw newline


def test_params_defaults_and_caps() -> None:
    cap = 64 * 1024 * 1024
    assert stream.params(-1, -1, -1, cap) == stream.StreamParams(
        None, None, stream.DEFAULT_READ_BYTES
    )
    assert stream.params(5, 2500, 10, cap) == stream.StreamParams(5, 2.5, 10)
    assert stream.params(1, 1, cap * 2, cap).max_bytes == cap  # max_bytes as for a read
    assert stream.params(-1, -1, -1, 1000).max_bytes == 1000  # a small cap wins over the default
    huge = 10**4000  # clamped, not a float overflow
    wanted = stream.params(huge, huge, huge, cap)
    assert wanted.max_records == 2**53 and wanted.duration_s == 2**53 / 1000


# --- the hop of a stream --------------------------------------------------------------------------

INSTANCE = "/consumers/{group}/instances/{instance}"


async def routed(method: str, path: str, accept: str | None) -> web.Request:
    app = web.Application()

    async def nothing(_: web.Request) -> web.Response:
        return web.Response()

    app.router.add_route("GET", INSTANCE + "/records", nothing)
    app.router.add_route("POST", INSTANCE + "/offsets", nothing)
    headers = {"Accept": accept} if accept else {}
    req = make_mocked_request(method, path, headers=headers, app=app)
    match = await app.router.resolve(req)
    req._match_info = match
    return req


def route(**spec: Any) -> Forward:
    return Forward("http://b:2", InstanceRecord("g", "c", "n1", 1, {"group": "g", **spec}))


@pytest.mark.parametrize("accept", ["text/event-stream", "application/x-ndjson"])
async def test_a_streams_hop_outlasts_the_owners_longest_silence(accept: str) -> None:
    """The hop's read timeout runs between chunks: it must exceed a heartbeat interval plus
    a read overrunning its wait, whatever the instance's own read timeout."""
    fwd = Forwarder("s", default_wait_ms=1000, kafka_timeout_ms=10_000, stream_heartbeat_ms=60_000)
    req = await routed("GET", "/consumers/g/instances/c/records", accept)
    assert fwd.budget_s(route(), req) == pytest.approx(60.0 + 10.0 + MARGIN_S)
    assert fwd.budget_s(route(format="avro"), req) == pytest.approx(
        60.0 + 10.0 + TOTAL_TIMEOUT_S + MARGIN_S
    )
    # The same read without a stream type keeps the read's own budget.
    plain = await routed("GET", "/consumers/g/instances/c/records", None)
    assert fwd.budget_s(route(), plain) == pytest.approx(1.0 + 10.0 + MARGIN_S)
    # And a stream type elsewhere (a 406 on the owner) is no stream.
    commit = await routed("POST", "/consumers/g/instances/c/offsets", accept)
    assert fwd.budget_s(route(), commit) == pytest.approx(10.0 + MARGIN_S)
