"""``GET /topics/{topic}/events``: a topic as Server-Sent Events, for browsers.

Everything that can be refused is refused before the first byte, as a JSON error (an
``EventSource`` cannot read it, but a page can ``fetch`` the same URL to show why): the
Accept (406), the query (400/422), protected topics and rules (403), the stream bounds (429),
an unknown topic or partition (404), Kafka (503). Once the stream is open, a failure ends it
with an ``event: error`` and the browser's automatic reconnect resumes from its last id.

What a stream sends (as the OpenAPI operation ``streamTopicEvents`` documents): ``retry:``,
then an id-only block with the starting positions (so even a reconnect before the first
record resumes exactly), then ``record`` / ``tombstone`` events, each with the id of every
partition's next offset; ``gap`` when records the id asked for no longer exist; heartbeat
comments while idle; and, after records the ``key=`` filter skipped, an id-only block again,
so a reconnect need not read them twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from .. import kafka_pool, media
from ..context import CONFIG, SCHEMAS, SESSIONS
from ..errors import (
    GatewayError,
    bad_request,
    describe,
    kafka_error_code,
    kafka_unavailable,
    partition_not_found,
    topic_not_found,
)
from ..kafka import kafka_kwargs
from ..security.authz import authorizer
from ..security.principal import principal_of
from ..streaming import framing
from ..streaming.slots import STREAMS
from ..streaming.writer import EventStream, StreamClosed
from ..topics import check_client_topics
from ..v3.topic_metadata import describe_topic
from . import positions
from .pump import Pump
from .reader import TopicReader, consumer_kwargs
from .render import FORMATS, renderer

log = logging.getLogger(__name__)

PATH = "/topics/{topic}/events"
# Which replica serves a stream (a hash of its node id: recognisable, not an address).
NODE_HEADER = "X-Event-Gateway-Node"
RETRY_MS = 1000  # how soon a browser reconnects after the stream ends
OFFERED = ((framing.SSE, 1.0),)

_SETTINGS: web.AppKey[dict[str, Any]] = web.AppKey("topic_stream_settings")


def add_routes(app: web.Application) -> None:
    # Translated once (unknown settings are logged once, not per stream).
    app[_SETTINGS] = kafka_kwargs(
        app[CONFIG].consumer_settings(), AIOKafkaConsumer, source="consumer"
    )
    app.router.add_get(PATH, topic_events)


@dataclass(frozen=True)
class Query:
    start: positions.Start
    partitions: list[int] | None
    key: bytes | None
    format: str
    last_id: dict[int, int] | None
    max_records: int | None
    duration_s: float | None


def parse_query(query: Mapping[str, str], headers: Mapping[str, str]) -> Query:
    """The stream's parameters; unknown ones are ignored (cache busters, a page's own)."""
    fmt = query.get("format") or "json"
    if fmt not in FORMATS:
        raise bad_request(f"format={fmt[:100]!r} is not one of {', '.join(FORMATS)}")
    key = query.get("key")
    # The header wins: a browser's reconnect sends the newest id there, while the URL keeps
    # whatever id the page first opened it with.
    last = headers.get("Last-Event-ID") or query.get("last_event_id") or None
    return Query(
        start=positions.parse_from(query.get("from")),
        partitions=positions.parse_partitions(query.get("partition")),
        # Empty: no filter (an HTML form sends its blank field as key=).
        key=key.encode() if key else None,
        format=fmt,
        last_id=positions.decode_id(last.strip()) if last else None,
        max_records=_positive(query, "max_records"),
        duration_s=(ms / 1000) if (ms := _positive(query, "duration_ms")) is not None else None,
    )


def _positive(query: Mapping[str, str], name: str) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19 or int(raw) == 0:
        raise bad_request(f"{name}={raw[:100]!r} is not a positive integer")
    return int(raw)


async def topic_events(request: web.Request) -> web.StreamResponse:
    media.negotiate(request, OFFERED)  # 406; errors stay application/json
    q = parse_query(request.query, request.headers)
    topic = request.match_info["topic"]
    config = request.app[CONFIG]
    check_client_topics(config, [topic])
    authorizer(request).topics(request, "consume", [topic])
    kafka_timeout = config.kafka_timeout_ms / 1000
    with request.app[STREAMS].hold(principal_of(request).name) as closing:
        partitions = await _partitions(request, topic, q.partitions, kafka_timeout)
        if request.method == "HEAD":
            # What the GET would answer, without opening anything: aiohttp routes HEAD to
            # every GET, and a stream with no body to write would never end.
            return web.Response(headers=_head_headers(request))
        settings = request.app[_SETTINGS]
        reader = TopicReader(
            topic,
            partitions,
            bootstrap_servers=config.bootstrap_servers,
            kwargs=consumer_kwargs({**settings, **kafka_pool.consumer_credentials(config)}),
        )
        try:
            resumed, _ = positions.resume(partitions, q.last_id)
            try:
                async with asyncio.timeout(kafka_timeout):
                    start, gaps = await reader.open(resumed, q.start)
            except TimeoutError:
                raise kafka_unavailable(
                    f"no answer from Kafka within {config.kafka_timeout_ms} ms"
                ) from None
            except KafkaError as exc:
                raise _kafka_failure(exc) from exc
            stream = EventStream(
                request,
                framing.SSE,
                heartbeat_s=config.stream_heartbeat_ms / 1000,
                headers={NODE_HEADER: _node_tag(request)},
            )
            pump = Pump(
                stream,
                reader,
                renderer(q.format, request.app[SCHEMAS]),
                start,
                key=q.key,
                max_records=q.max_records,
                duration_s=q.duration_s,
            )
            try:
                await stream.open(framing.sse_retry(RETRY_MS) + pump.opening(gaps))
                await pump.run(closing, kafka_timeout)
            except StreamClosed as exc:
                log.debug("topic stream to %s ended: %s", request.remote, exc)
            await stream.close()
        finally:
            await reader.close(kafka_timeout)
    return stream.response


async def _partitions(
    request: web.Request, topic: str, wanted: list[int] | None, timeout_s: float
) -> list[int]:
    """The stream's partitions: all of the topic's, or the ones asked for (404 if one is not
    the topic's). Asked without auto-creation: a stream never creates a topic."""
    try:
        async with asyncio.timeout(timeout_s):
            admin = await kafka_pool.kafka_of(request).admin()
            info = await describe_topic(admin, topic)
    except TimeoutError:
        raise kafka_unavailable(f"no answer from Kafka within {timeout_s * 1000:.0f} ms") from None
    except GatewayError as exc:
        if exc.status == 404:
            raise topic_not_found(f"Topic {topic} not found.") from exc
        raise
    except KafkaError as exc:
        raise _kafka_failure(exc) from exc
    known = [p.partition for p in info.partitions]
    if wanted is None:
        return known
    if set(wanted) - set(known):
        raise partition_not_found()
    return wanted


def _kafka_failure(exc: KafkaError) -> GatewayError:
    code = kafka_error_code(exc)
    if code == 50003:
        return kafka_unavailable(describe(exc))
    return GatewayError(code // 100, code, describe(exc))


def _head_headers(request: web.Request) -> dict[str, str]:
    return {
        "Content-Type": f"{framing.SSE}; charset=utf-8",
        "Cache-Control": "no-cache",
        NODE_HEADER: _node_tag(request),
    }


def _node_tag(request: web.Request) -> str:
    node_id = request.app[SESSIONS].node_id
    return hashlib.blake2s(node_id.encode(), digest_size=6).hexdigest()
