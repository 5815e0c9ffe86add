"""v2 consumer endpoints: negotiate, validate, then hand over to ``sessions``.

Every client mistake is answered here, before any instance is touched (and, with several
replicas, before any hop), so a bad request never costs a round trip to the owner.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import orjson
from aiohttp import web
from aiokafka import TopicPartition

from sessions.instance import ConsumerInstance, InstanceSpec, ReadLimits
from sessions.routing import ForwardTo

from . import media
from .body import as_int, as_list, as_str, expect_object, read_json
from .context import CONFIG, FORWARDER, RESPONSE_TYPE, SCHEMAS, SESSIONS
from .errors import FORMAT_MISMATCH, GatewayError, bad_request, json_detail, unprocessable
from .forwarding import FORWARDED
from .records import decoder_for
from .registry.client import NOT_CONFIGURED

FORMATS = ("binary", "json", "avro", "jsonschema", "protobuf")
SCHEMA_FORMATS = frozenset({"avro", "jsonschema", "protobuf"})
CREATE_FIELDS = frozenset(
    {
        "name",
        "id",
        "format",
        "auto.offset.reset",
        "auto.commit.enable",
        "fetch.min.bytes",
        "responseMinBytes",
        "consumer.request.timeout.ms",
        "requestWaitMs",
    }
)
AUTO_OFFSET_RESET = ("latest", "earliest", "none")
# The read method an Accept type selects -> the instance formats it may serve.
READ_FAMILIES = {
    media.BINARY: frozenset({"binary"}),
    media.V2: frozenset({"binary"}),
    media.JSON_V2: frozenset({"json"}),
    media.AVRO: SCHEMA_FORMATS,
    media.JSONSCHEMA: SCHEMA_FORMATS,
    media.PROTOBUF: SCHEMA_FORMATS,
}
INSTANCE = "/consumers/{group}/instances/{instance}"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/consumers/{group}", create)
    for method, suffix, handler in [
        ("DELETE", "", delete),
        ("POST", "/offsets", commit),
        ("GET", "/offsets", committed),
        ("POST", "/subscription", subscribe),
        ("GET", "/subscription", subscription),
        ("DELETE", "/subscription", unsubscribe),
        ("POST", "/assignments", assign),
        ("GET", "/assignments", assignments),
        ("POST", "/positions", seek),
        ("POST", "/positions/beginning", seek_beginning),
        ("POST", "/positions/end", seek_end),
        ("GET", "/records", records),
    ]:
        r.add_route(method, INSTANCE + suffix, _routed(handler))


def _routed(handler: Handler) -> Handler:
    """Run ``handler`` here, or, when another replica owns the instance, forward it there."""

    async def routed(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ForwardTo as fwd:
            cfg = request.app[CONFIG]
            spec_wait = fwd.record.spec.get("request_timeout_ms")
            wait_ms = max(spec_wait or 0, cfg.consumer_request_timeout_ms)
            return await request.app[FORWARDER].forward(
                request, fwd.url, wait_s=wait_ms / 1000 + cfg.kafka_timeout_ms / 1000 + 5
            )

    routed.__name__ = handler.__name__
    return routed


# --- negotiation and responses -----------------------------------------------------------------


def _negotiate(request: web.Request, *, reads_body: bool) -> str:
    """415 / 406 as Confluent; body-less requests tolerate any Content-Type (real clients
    send one on GET and DELETE, and there is nothing to misread)."""
    if reads_body:
        media.check_content_type(request, media.CONSUMERS_CONSUMES)
    ctype = media.negotiate(request, media.CONSUMERS_OFFER)
    request[RESPONSE_TYPE] = ctype
    return ctype


def _json(data: Any, ctype: str, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(data), content_type=ctype)


def _no_content() -> web.Response:
    return web.Response(status=204)


async def _instance(request: web.Request) -> ConsumerInstance:
    m = request.match_info
    return await request.app[SESSIONS].resolve(
        m["group"], m["instance"], forwarded=request.get(FORWARDED, False)
    )


# --- create / delete ----------------------------------------------------------------------------


async def create(request: web.Request) -> web.Response:
    ctype = _negotiate(request, reads_body=True)
    group = request.match_info["group"]
    cfg = request.app[CONFIG]
    spec = parse_create(
        group, await read_json(request), cfg.id, schemas=request.app[SCHEMAS].configured
    )
    await request.app[SESSIONS].create(spec)
    return _json({"instance_id": spec.name, "base_uri": base_uri(request, group, spec.name)}, ctype)


def parse_create(
    group: str, body: Any, proxy_id: str = "", *, schemas: bool = True
) -> InstanceSpec:
    """Validate a create request the way Confluent does, minus its 500s.

    ``schemas``: whether a schema registry is configured; without one a schema-format
    instance could never read a record, so it is refused up front (422 / 42206).
    """
    if body is None:
        body = {}
    body = expect_object(body, CREATE_FIELDS)
    legacy_id = as_str(body.get("id"), "id")
    name = legacy_id or as_str(body.get("name"), "name")
    if name is None or name == "":
        name = f"rest-consumer-{proxy_id + '-' if proxy_id else ''}{uuid.uuid4()}"
    if "/" in name:
        raise unprocessable(f"Invalid consumer name {name!r}: it must not contain '/'")
    fmt = (as_str(body.get("format"), "format") or "binary").lower()
    if fmt not in FORMATS:
        raise unprocessable("Invalid format type.")
    if fmt in SCHEMA_FORMATS and not schemas:
        raise unprocessable(NOT_CONFIGURED, 42206)
    reset = as_str(body.get("auto.offset.reset"), "auto.offset.reset")
    if reset is not None and reset not in AUTO_OFFSET_RESET:
        raise unprocessable(
            f"Invalid consumer configuration: Invalid value {reset} for configuration "
            "auto.offset.reset: String must be one of: latest, earliest, none",
            42204,
        )
    commit_raw = as_str(body.get("auto.commit.enable"), "auto.commit.enable")
    auto_commit = None
    if commit_raw is not None:
        if commit_raw.strip().lower() not in ("true", "false"):
            raise unprocessable(
                f"Invalid consumer configuration: Invalid value {commit_raw} for configuration "
                "enable.auto.commit: Expected value to be either true or false",
                42204,
            )
        auto_commit = commit_raw.strip().lower() == "true"
    min_bytes = as_int(_either(body, "fetch.min.bytes", "responseMinBytes"), "fetch.min.bytes")
    if min_bytes is not None and not -1 <= min_bytes <= 10_000_000:
        raise unprocessable(
            "Invalid consumer configuration. It does not abide by the constraints: Invalid value "
            f"{min_bytes} for configuration fetch.min.bytes: Value must be in [-1, 10000000]",
            40001,
        )
    wait = as_int(
        _either(body, "consumer.request.timeout.ms", "requestWaitMs"),
        "consumer.request.timeout.ms",
    )
    if wait is not None and wait < 0:
        raise unprocessable(
            f"Invalid consumer configuration: consumer.request.timeout.ms must be >= 0, got {wait}",
            42204,
        )
    return InstanceSpec(
        group=group,
        name=name,
        format=fmt,
        auto_offset_reset=reset,
        auto_commit_enable=auto_commit,
        fetch_min_bytes=min_bytes,
        request_timeout_ms=wait,
        consumer_id=legacy_id,
    )


def _either(body: dict, key: str, alias: str) -> Any:
    return body[key] if body.get(key) is not None else body.get(alias)


def base_uri(request: web.Request, group: str, name: str) -> str:
    """The public address (``advertised.listeners``), else the Host the client used."""
    scheme = request.scheme
    authority = next(
        (lst.authority for lst in request.app[CONFIG].advertised_listeners if lst.scheme == scheme),
        request.host,
    )
    return f"{scheme}://{authority}/consumers/{group}/instances/{name}"


async def delete(request: web.Request) -> web.Response:
    _negotiate(request, reads_body=False)
    m = request.match_info
    await request.app[SESSIONS].delete(
        m["group"], m["instance"], forwarded=request.get(FORWARDED, False)
    )
    return _no_content()


# --- offsets ------------------------------------------------------------------------------------


async def commit(request: web.Request) -> web.Response:
    ctype = _negotiate(request, reads_body=True)
    body = await read_json(request)
    offsets = None
    if body is not None:
        body = expect_object(body, {"offsets"})
        if body.get("offsets") is not None:  # `{}` commits everything, like an empty body
            offsets = {}
            for item in _list(body, "offsets"):
                item = expect_object(item, {"topic", "partition", "offset", "metadata"}, "offset")
                tp = _tp(item)
                off = _required_int(item, "offset")
                if off < -1:
                    raise unprocessable(f"Invalid offset {off} for {tp.topic}-{tp.partition}")
                offsets[tp] = (off, as_str(item.get("metadata"), "metadata") or "")
    await (await _instance(request)).commit(offsets)
    return _json([], ctype)


async def committed(request: web.Request) -> web.Response:
    ctype = _negotiate(request, reads_body=True)
    body = await read_json(request)
    if body is None:
        # Confluent answers a committed-offsets GET without a body this way.
        raise GatewayError(404, 40402, "Partition not found.")
    body = expect_object(body, {"partitions"})
    partitions = _partitions(body)
    found = await (await _instance(request)).committed(partitions)
    return _json(
        {
            "offsets": [
                {
                    "topic": tp.topic,
                    "partition": tp.partition,
                    "offset": om.offset,
                    "metadata": om.metadata or "",
                }
                for tp, om in found
            ]
        },
        ctype,
    )


# --- subscription / assignment ------------------------------------------------------------------


async def subscribe(request: web.Request) -> web.Response:
    _negotiate(request, reads_body=True)
    body = _required_body(await read_json(request))
    body = expect_object(body, {"topics", "topic_pattern"})
    topics = as_list(body.get("topics"), "topics")
    pattern = as_str(body.get("topic_pattern"), "topic_pattern")
    if topics is not None:
        for t in topics:
            if not isinstance(t, str) or not t:
                raise unprocessable(f"Invalid topic name {json_detail(t)}")
        pattern = None
    elif pattern is not None:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise unprocessable(f"Invalid topic_pattern {pattern!r}: {exc}") from None
    inst = await _instance(request)
    await inst.subscribe(topics, pattern)
    await request.app[SESSIONS].saved(inst)
    return _no_content()


async def subscription(request: web.Request) -> web.Response:
    ctype = _negotiate(request, reads_body=False)
    return _json({"topics": (await _instance(request)).subscription()}, ctype)


async def unsubscribe(request: web.Request) -> web.Response:
    _negotiate(request, reads_body=False)
    inst = await _instance(request)
    await inst.unsubscribe()
    await request.app[SESSIONS].saved(inst)
    return _no_content()


async def assign(request: web.Request) -> web.Response:
    _negotiate(request, reads_body=True)
    body = expect_object(_required_body(await read_json(request)), {"partitions"})
    inst = await _instance(request)
    await inst.assign(_partitions(body))
    await request.app[SESSIONS].saved(inst)
    return _no_content()


async def assignments(request: web.Request) -> web.Response:
    ctype = _negotiate(request, reads_body=False)
    parts = (await _instance(request)).assignment()
    return _json(
        {"partitions": [{"topic": t.topic, "partition": t.partition} for t in parts]}, ctype
    )


# --- positions ----------------------------------------------------------------------------------


async def seek(request: web.Request) -> web.Response:
    _negotiate(request, reads_body=True)
    body = expect_object(_required_body(await read_json(request)), {"offsets", "timestamps"})
    offsets: dict[TopicPartition, int] = {}
    for item in _list(body, "offsets"):
        item = expect_object(item, {"topic", "partition", "offset", "metadata"}, "offset")
        off = _required_int(item, "offset")
        if off < 0:
            raise unprocessable(f"Invalid offset {off}: offsets must be >= 0")
        offsets[_tp(item)] = off
    timestamps: dict[TopicPartition, int] = {}
    for item in _list(body, "timestamps"):
        item = expect_object(item, {"topic", "partition", "timestamp", "metadata"}, "timestamp")
        timestamps[_tp(item)] = parse_timestamp(item.get("timestamp"))
    await (await _instance(request)).seek(offsets, timestamps)
    return _no_content()


async def seek_beginning(request: web.Request) -> web.Response:
    return await _seek_edge(request, end=False)


async def seek_end(request: web.Request) -> web.Response:
    return await _seek_edge(request, end=True)


async def _seek_edge(request: web.Request, *, end: bool) -> web.Response:
    _negotiate(request, reads_body=True)
    body = expect_object(_required_body(await read_json(request)), {"partitions"})
    await (await _instance(request)).seek_to(_partitions(body), end=end)
    return _no_content()


def parse_timestamp(value: Any) -> int:
    """ISO-8601 instant -> epoch ms. A JSON number is epoch seconds, as Jackson reads it."""
    if isinstance(value, bool) or value is None:
        raise unprocessable(f"Invalid timestamp {json_detail(value)}")
    if isinstance(value, int | float):
        return int(value * 1000)
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        text = re.sub(r"([+-]\d\d)(\d\d)$", r"\1:\2", text)
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            pass
        else:
            if dt.tzinfo is not None:
                return int(dt.timestamp() * 1000)
    raise unprocessable(
        f"Invalid timestamp {json_detail(value)}: expected an ISO-8601 instant such as "
        "2024-01-31T12:00:00Z"
    )


# --- records ------------------------------------------------------------------------------------


async def records(request: web.Request) -> web.Response:
    # Body-less, but Confluent's GET still 415s a foreign Content-Type; tolerate it instead.
    ctype = media.negotiate(request, media.RECORDS_OFFER)
    request[RESPONSE_TYPE] = ctype
    timeout = _query_int(request, "timeout")
    max_bytes = _query_int(request, "max_bytes")
    inst = await _instance(request)
    if inst.spec.format not in READ_FAMILIES[ctype]:
        raise GatewayError(406, 40601, FORMAT_MISMATCH)
    cfg = request.app[CONFIG]
    wait = (
        inst.spec.request_timeout_ms
        if inst.spec.request_timeout_ms is not None
        else cfg.consumer_request_timeout_ms
    )
    if timeout > 0:
        wait = min(timeout, wait)
    cap = cfg.consumer_request_max_bytes
    limits = ReadLimits(
        wait_ms=wait,
        max_bytes=min(max_bytes, cap) if max_bytes > 0 else cap,
        min_bytes=inst.spec.fetch_min_bytes
        if inst.spec.fetch_min_bytes is not None
        else cfg.fetch_min_bytes,
    )
    out = await inst.read(limits, decoder_for(request.app, inst.spec.format))
    return _json(out, ctype)


# --- small parsers ------------------------------------------------------------------------------


def _required_body(body: Any) -> Any:
    if body is None:
        raise unprocessable("Request body is required")
    return body


def _list(body: dict, key: str) -> list:
    return as_list(body.get(key), key) or []


def _required_int(item: dict, key: str) -> int:
    value = as_int(item.get(key), key)
    if value is None:
        raise unprocessable(f"{key} may not be null")
    return value


def _tp(item: dict) -> TopicPartition:
    topic = as_str(item.get("topic"), "topic")
    if not topic:
        raise unprocessable("topic may not be empty")
    partition = _required_int(item, "partition")
    if partition < 0:
        raise unprocessable(f"Invalid partition {partition}")
    return TopicPartition(topic, partition)


def _partitions(body: dict) -> list[TopicPartition]:
    raw = body.get("partitions")
    if raw is None:
        raise unprocessable("partitions may not be null")
    out = []
    for item in as_list(raw, "partitions") or []:
        out.append(_tp(expect_object(item, {"topic", "partition"}, "partition")))
    return out


def _query_int(request: web.Request, name: str) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return -1
    try:
        return int(raw)
    except ValueError:
        raise bad_request(f"Query parameter {name}={raw!r} is not an integer") from None
