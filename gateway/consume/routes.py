"""v2 consumer endpoints: negotiate, validate, route, then hand over to ``sessions``.

Every client mistake is answered here, before any instance is touched (and, with several
replicas, before any hop), so a bad request never costs a round trip to the owner. Then
:func:`_instance` asks the router where the instance lives: a local instance is served here;
one owned by another replica raises :class:`~gateway.forwarding.ForwardTo`, which the
:func:`~gateway.forwarding.forwarding` wrapper every instance route is registered with turns
into the one signed hop to the owner.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import quote

import orjson
from aiohttp import web

from sessions.instance import ConsumerInstance, ReadLimits
from sessions.router import Forward

from .. import media
from ..body import expect_object, read_json
from ..context import CONFIG, RESPONSE_TYPE, SCHEMAS, SESSIONS
from ..errors import FORMAT_MISMATCH, GatewayError, bad_request
from ..forwarding import FORWARDED, ForwardTo, forwarding
from ..observability import traffic
from ..origin import public_origin
from ..paths import create_group, instance_names
from ..security.authz import authorizer
from ..security.principal import principal_of
from ..topics import check_client_topics
from . import stream
from .decoding import decoder_for
from .requests import (
    SCHEMA_FORMATS,
    parse_commit,
    parse_create,
    parse_partitions,
    parse_seek,
    parse_subscription,
    required_body,
)

# The read method an Accept type selects -> the instance formats it may serve.
READ_FAMILIES = {
    media.BINARY: frozenset({"binary"}),
    media.V2: frozenset({"binary"}),
    media.JSON_V2: frozenset({"json"}),
    media.AVRO: SCHEMA_FORMATS,
    media.JSONSCHEMA: SCHEMA_FORMATS,
    media.PROTOBUF: SCHEMA_FORMATS,
    # Plain JSON asks for no embedded format: the instance reads with its own.
    media.JSON: frozenset({"binary", "json", *SCHEMA_FORMATS}),
}
INSTANCE = "/consumers/{group}/instances/{instance}"
# Bound on writing one records response: a client that stops reading must not hold its
# instance (every other operation on it waits for the write) for longer than this.
RESPONSE_WRITE_TIMEOUT_S = 30.0
# Records responses larger than this are written in pieces of about this size.
STREAM_CHUNK = 256 * 1024

log = logging.getLogger(__name__)


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
        r.add_route(method, INSTANCE + suffix, forwarding(handler))


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
    """The local instance the request names, once the request itself was found valid."""
    group, name = instance_names(request)
    authorizer(request).group(request, group)
    caller = principal_of(request)
    route = await request.app[SESSIONS].route(
        group,
        name,
        forwarded=request.get(FORWARDED, False),
        principal=None if caller.anonymous else caller.name,
    )
    if isinstance(route, Forward):
        raise ForwardTo(route)
    return route.instance


# --- create / delete ----------------------------------------------------------------------------


async def create(request: web.Request) -> web.Response:
    ctype = _negotiate(request, reads_body=True)
    group = create_group(request)
    authorizer(request).group(request, group)
    cfg = request.app[CONFIG]
    spec = parse_create(
        group,
        await read_json(request),
        cfg.id,
        schemas=request.app[SCHEMAS].configured,
        max_wait_ms=cfg.consumer_request_timeout_max_ms,
    )
    caller = principal_of(request)
    if not caller.anonymous:
        spec = dataclasses.replace(spec, principal=caller.name)  # bound to its creator
    await request.app[SESSIONS].create(spec)
    return _json({"instance_id": spec.name, "base_uri": base_uri(request, group, spec.name)}, ctype)


def base_uri(request: web.Request, group: str, name: str) -> str:
    """The public address (``advertised.listeners``), else the Host the client used."""
    # Percent-encoded path segments (as Java's UriBuilder does): a name with a space, "/"
    # or "ü" still gives a URI a client can use as is.
    segment = functools.partial(quote, safe="~")
    return f"{public_origin(request)}/consumers/{segment(group)}/instances/{segment(name)}"


async def delete(request: web.Request) -> web.Response:
    _negotiate(request, reads_body=False)
    await request.app[SESSIONS].delete(await _instance(request))
    return _no_content()


# --- offsets ------------------------------------------------------------------------------------


async def commit(request: web.Request) -> web.Response:
    ctype = _negotiate(request, reads_body=True)
    offsets = parse_commit(await read_json(request))
    if offsets is not None:
        authorizer(request).topics(request, "consume", (tp.topic for tp in offsets))
    await (await _instance(request)).commit(offsets)
    return _json([], ctype)


async def committed(request: web.Request) -> web.Response:
    ctype = _negotiate(request, reads_body=True)
    body = await read_json(request)
    if body is None:
        # Confluent answers a committed-offsets GET without a body this way.
        raise GatewayError(404, 40402, "Partition not found.")
    body = expect_object(body, {"partitions"})
    partitions = parse_partitions(body)
    authorizer(request).topics(request, "consume", (tp.topic for tp in partitions))
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
    topics, pattern = parse_subscription(await read_json(request))
    if topics is not None:
        check_client_topics(request.app[CONFIG], topics)
        authorizer(request).topics(request, "consume", topics)
    elif pattern is not None:
        authorizer(request).topic_pattern(request, pattern)
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
    body = expect_object(required_body(await read_json(request)), {"partitions"})
    partitions = parse_partitions(body)
    check_client_topics(request.app[CONFIG], (tp.topic for tp in partitions))
    authorizer(request).topics(request, "consume", (tp.topic for tp in partitions))
    inst = await _instance(request)
    await inst.assign(partitions)
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
    offsets, timestamps = parse_seek(await read_json(request))
    await (await _instance(request)).seek(offsets, timestamps)
    return _no_content()


async def seek_beginning(request: web.Request) -> web.Response:
    return await _seek_edge(request, end=False)


async def seek_end(request: web.Request) -> web.Response:
    return await _seek_edge(request, end=True)


async def _seek_edge(request: web.Request, *, end: bool) -> web.Response:
    _negotiate(request, reads_body=True)
    body = expect_object(required_body(await read_json(request)), {"partitions"})
    await (await _instance(request)).seek_to(parse_partitions(body), end=end)
    return _no_content()


async def records(request: web.Request) -> web.StreamResponse:
    # Body-less, but Confluent's GET still 415s a foreign Content-Type; tolerate it instead.
    ctype = media.records_type(request)
    if ctype in media.STREAM_TYPES:
        # Errors before the stream starts are ordinary JSON answers, not events.
        request[RESPONSE_TYPE] = media.JSON
        wanted = _stream_params(request)
        return await stream.serve(request, await _instance(request), ctype, wanted)
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
    # Also for instances created before the maximum existed (or under a larger one).
    wait = min(wait, cfg.consumer_request_timeout_max_ms)
    cap = cfg.consumer_request_max_bytes
    limits = ReadLimits(
        wait_ms=wait,
        max_bytes=min(max_bytes, cap) if max_bytes > 0 else cap,
        min_bytes=inst.spec.fetch_min_bytes
        if inst.spec.fetch_min_bytes is not None
        else cfg.fetch_min_bytes,
    )
    response = web.StreamResponse(headers={"Content-Type": ctype})
    try:
        async with inst.read(
            limits, decoder_for(request.app, inst.spec.format, metadata=inst.spec.include_metadata)
        ) as out:
            # The elements already are JSON text (see decoding.py): joins, no per-record work.
            length = response_length(out)
            await _write_all(request, response, response_chunks(out, length), length)
        traffic.consumed(request.app, len(out), length)
    except _NotDelivered as exc:
        # The instance rewound to these records (see read()); nobody is there to answer.
        log.info("records response to %s not delivered: %s", request.remote, exc)
        if request.transport is not None:
            request.transport.abort()
    return response


class _NotDelivered(Exception):
    """The records response could not be written (the client went away or stopped reading)."""


def response_length(elements: list[bytes]) -> int:
    """Bytes of ``[e1,e2,...]``: known before the first byte goes out (Content-Length)."""
    return 2 + sum(map(len, elements)) + max(len(elements) - 1, 0)


def response_chunks(elements: list[bytes], length: int) -> Iterator[bytes]:
    """The JSON array of ``elements`` in pieces of about :data:`STREAM_CHUNK` bytes.

    A response of many megabytes is written piece by piece, each waiting for the socket to
    drain, rather than joined into one more copy of itself that then sits in the
    transport's buffer. Pieces are cut by element count (one C-level join each), so this
    stays free of per-record Python.
    """
    if length <= STREAM_CHUNK:
        yield b"[" + b",".join(elements) + b"]"
        return
    step = max(1, len(elements) * STREAM_CHUNK // length)
    for start in range(0, len(elements), step):
        piece = b",".join(elements[start : start + step])
        first, last = start == 0, start + step >= len(elements)
        yield (b"[" if first else b",") + piece + (b"]" if last else b"")


async def _write_all(
    request: web.Request, response: web.StreamResponse, chunks: Iterable[bytes], length: int
) -> None:
    """Write the whole response, or raise: the caller counts records as delivered only then.

    A client that went away (a long poll it gave up on) makes the write raise; a client that
    stops reading makes it wait, which is bounded so that it cannot hold the instance.
    """
    try:
        async with asyncio.timeout(RESPONSE_WRITE_TIMEOUT_S):
            if request.transport is None or request.transport.is_closing():
                raise ConnectionResetError("the client closed the connection")
            response.content_length = length
            await response.prepare(request)
            for chunk in chunks:
                await response.write(chunk)
            await response.write_eof()
            if request.transport is None or request.transport.is_closing():
                raise ConnectionResetError("the client closed the connection during the write")
    except (ConnectionError, TimeoutError) as exc:
        raise _NotDelivered(str(exc) or type(exc).__name__) from exc


# --- small parsers ------------------------------------------------------------------------------


def _stream_params(request: web.Request) -> stream.StreamParams:
    """A stream's query: ``max_records`` and ``duration_ms`` (positive, optional),
    ``max_bytes`` per read as for a read; ``timeout`` is checked but means nothing here (a
    stream waits for as long as it is open)."""
    _query_int(request, "timeout")
    return stream.params(
        _query_positive(request, "max_records"),
        _query_positive(request, "duration_ms"),
        _query_int(request, "max_bytes"),
        request.app[CONFIG].consumer_request_max_bytes,
    )


def _query_positive(request: web.Request, name: str) -> int:
    """A positive integer query parameter; -1 when absent (an empty value is a mistake)."""
    if name not in request.query:
        return -1
    value = _query_int(request, name)
    if value < 1:
        raw = request.query[name]
        raise bad_request(f"Query parameter {name}={raw[:100]!r} must be a positive integer")
    return value


def _query_int(request: web.Request, name: str) -> int:
    """A Java ``long`` query parameter; -1 (unset) when absent or empty.

    Only ``-?[0-9]+`` (``int()`` would also take ``1_000`` and non-ASCII digits). Any size
    is fine: callers only compare it with their own bounds (a timeout can only lower the
    instance's wait, ``max_bytes`` is capped by ``consumer.request.max.bytes``), so a huge
    value is clamped rather than refused, as Confluent clamps it to its configuration.
    """
    raw = request.query.get(name)
    if raw is None or raw == "":
        return -1
    digits = raw[1:] if raw[:1] == "-" else raw
    if digits.isascii() and digits.isdigit() and len(digits) <= 4000:
        return int(raw)
    raise bad_request(f"Query parameter {name}={raw[:100]!r} is not an integer")
