"""``POST /v3/clusters/{cid}/topics/{t}/records``: full-duplex streaming produce (reference 8.3, 8.4).

The answer (200, ``application/json``, chunked) starts before any record is read, and from
then on every problem is a result entry. Three tasks share one request:

* the reader splits the body into JSON objects as bytes arrive, validates and converts each
  (schema sides through the registry), and queues it; a record that fails there gets its
  result at once;
* the sender hands everything queued so far to Kafka as one group (packed per partition by
  v2's sender) while the reader goes on, so a fast client gets batching and a client that
  sends one record and waits gets that record's result straight away;
* the writer writes results in input order as each one is settled, ``json`` + CRLF, several
  in one write when they are ready together.

Memory stays bounded: only the object being received is buffered (up to
``api.v3.produce.request.size.limit.max.bytes``), and the reader stops reading while too many
records or bytes wait for their results (a client that never reads its results is slowed
down by TCP, not buffered). A stream open longer than ``streaming.connection.max.duration.ms``
answers 408 for every further record and is closed after the grace period.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from aiohttp import web

from ..context import CONFIG
from ..errors import GatewayError, bad_request
from ..media import check_content_type
from ..security.authz import authorizer
from ..topics import check_client_topics
from .cluster import checked_cluster
from .produce_limits import LIMITER
from .records_request import Record, RecordError, parse_record
from .records_schemas import encode_side
from .records_sender import Target, error, line, produce, target
from .records_stream import StreamBroken, ValueSplitter
from .requests import V3_CONSUMES, payload_error

log = logging.getLogger(__name__)

EMPTY = "Request body is empty. Data is required."
TOO_OLD = "Streaming connection open for longer than allowed: Connection will be closed."
_CHARSETS = {"utf-8": "utf-8", "utf8": "utf-8", "iso-8859-1": "latin-1", "latin1": "latin-1"}
# Records read but not yet answered, at most (and their JSON bytes): past either, the reader
# waits for the writer before reading on.
_PENDING_RECORDS = 20_000
_PENDING_BYTES = 32 * 1024 * 1024
_GROUP_MAX = 20_000  # records handed to Kafka in one send_all
_IN_FLIGHT = 4  # groups awaiting their acknowledgements at once


async def produce_records(request: web.Request) -> web.StreamResponse:
    started = asyncio.get_running_loop().time()  # the stream's age counts from here
    check_content_type(request, V3_CONSUMES)
    encoding = _encoding(request)
    cluster_id = await checked_cluster(request)
    topic = request.match_info["topic_name"]
    config = request.app[CONFIG]
    check_client_topics(config, [topic])
    authorizer(request).topics(request, "produce", [topic])
    splitter = ValueSplitter(config.api_v3_produce_request_size_limit_max_bytes, encoding)
    longest = (
        config.streaming_connection_max_duration_ms
        + config.streaming_connection_max_duration_grace_period_ms
    ) / 1000
    try:
        async with asyncio.timeout(longest):
            broken = await _first_value(request, splitter)
    except TimeoutError:  # a body that never starts is held no longer than a stream
        raise GatewayError(408, 408, TOO_OLD) from None
    if broken is None and splitter.ended and splitter.blank():
        raise payload_error(EMPTY)
    response = web.StreamResponse(status=200)
    response.content_type = "application/json"
    await response.prepare(request)
    stream = _Stream(request, response, target(request, cluster_id, topic), splitter, started)
    gone = False
    try:
        await stream.run(broken)
    except* ConnectionError:  # the client went away: nobody is left to answer
        gone = True
    except* Exception as failed:  # a bug: the answer has started, so only cutting it is left
        log.error("v3 produce stream failed", exc_info=failed)
        gone = True
    if gone or stream.cut:
        response.force_close()
    if not gone:
        await response.write_eof()
    return response


def _encoding(request: web.Request) -> str:
    charset = request.charset
    if charset is None:
        return "utf-8"
    encoding = _CHARSETS.get(charset.lower())
    if encoding is None:
        raise bad_request(
            f'Unsupported charset in Content-Type header: "{charset}". '
            'Only "UTF-8" and "ISO-8859-1" are supported.'
        )
    return encoding


async def _first_value(request: web.Request, splitter: ValueSplitter) -> StreamBroken | None:
    """Read until the body shows something other than whitespace, or ends.

    Only then is it known whether the request is the whole-request 422 (no body at all) or
    a stream; a client sending its first record waits for nothing extra.
    """
    try:
        while splitter.blank():
            data = await request.content.readany()
            if not data:
                splitter.end()
                return None
            splitter.feed(data)
    except StreamBroken as exc:
        return exc
    return None


class _Stream:
    def __init__(
        self,
        request: web.Request,
        response: web.StreamResponse,
        to: Target,
        splitter: ValueSplitter,
        started: float,
    ) -> None:
        config = request.app[CONFIG]
        self._request = request
        self._response = response
        self._to = to
        self._splitter = splitter
        self._limiter = request.app[LIMITER]
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._too_old_at = started + config.streaming_connection_max_duration_ms / 1000
        self._close_at = (
            self._too_old_at + config.streaming_connection_max_duration_grace_period_ms / 1000
        )
        # Results in input order: (future line, JSON bytes of its record).
        self._slots: deque[tuple[asyncio.Future[bytes], int]] = deque()
        self._pending_bytes = 0
        self._queued: list[tuple[Record, asyncio.Future[bytes]]] = []
        self._read_all = False
        self._slot_added = asyncio.Event()
        self._queue_added = asyncio.Event()
        self._room = asyncio.Event()
        self.cut = False  # the stream ended before the body did: close the connection

    async def run(self, broken: StreamBroken | None) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._write())
            tasks.create_task(self._send())
            try:
                if broken is None:
                    await self._read()
                else:
                    self._break(broken)
            finally:
                self._read_all = True
                self._slot_added.set()
                self._queue_added.set()

    # --- reader ------------------------------------------------------------------------------

    async def _read(self) -> None:
        splitter = self._splitter
        content = self._request.content
        while True:
            try:
                while (item := splitter.take()) is not None:
                    await self._admit(*item)
                if splitter.ended:
                    return
                await self._wait_for_room()
                try:
                    async with asyncio.timeout_at(self._close_at):
                        data = await content.readany()
                except TimeoutError:
                    self.cut = True  # past the grace period: the stream is closed
                    return
                if data:
                    splitter.feed(data)
                else:
                    splitter.end()
            except StreamBroken as exc:
                self._break(exc)
                return

    def _break(self, exc: StreamBroken) -> None:
        self._slot(len(exc.message)).set_result(line(error(400, f"Bad Request: {exc.message}")))
        self.cut = True

    async def _wait_for_room(self) -> None:
        while len(self._slots) >= _PENDING_RECORDS or self._pending_bytes >= _PENDING_BYTES:
            self._room.clear()
            await self._room.wait()

    def _slot(self, size: int) -> asyncio.Future[bytes]:
        slot: asyncio.Future[bytes] = self._loop.create_future()
        self._slots.append((slot, size))
        self._pending_bytes += size
        self._slot_added.set()
        return slot

    async def _admit(self, value: object, size: int) -> None:
        slot = self._slot(size)
        if self._loop.time() > self._too_old_at:
            slot.set_result(line(error(408, TOO_OLD)))
            return
        try:
            record = parse_record(value)
            self._limiter.admit(self._to.cluster_id, size)
            if record.key_schema is not None:
                record.key, record.key_info = await encode_side(
                    self._to.app, self._to.topic, "key", record.key_schema
                )
            if record.value_schema is not None:
                record.value, record.value_info = await encode_side(
                    self._to.app, self._to.topic, "value", record.value_schema
                )
        except RecordError as exc:
            slot.set_result(line(error(exc.code, exc.message)))
            return
        except Exception:  # a bug: this record says so, the stream goes on
            log.exception("v3 produce record failed")
            slot.set_result(line(error(500, "Internal Server Error")))
            return
        self._queued.append((record, slot))
        self._queue_added.set()

    # --- sender ------------------------------------------------------------------------------

    async def _send(self) -> None:
        """Hand queued records over as groups; a group starts once the one before it is
        queued in the producer, so groups overlap on the wire but never reorder a partition."""
        in_flight: set[asyncio.Task[None]] = set()
        try:
            while True:
                if not self._queued:
                    if self._read_all:
                        return
                    self._queue_added.clear()
                    await self._queue_added.wait()
                    continue
                if len(in_flight) >= _IN_FLIGHT:
                    await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                    continue
                group = self._queued[:_GROUP_MAX]
                del self._queued[:_GROUP_MAX]
                handed = asyncio.Event()
                task = asyncio.create_task(self._produce(group, handed))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                await handed.wait()  # set by produce() in every case, errors included
        finally:
            if in_flight:
                await asyncio.gather(*in_flight)

    async def _produce(
        self, group: list[tuple[Record, asyncio.Future[bytes]]], handed: asyncio.Event
    ) -> None:
        try:
            results = await produce(self._to, [record for record, _ in group], handed)
        except GatewayError as exc:  # not a Kafka verdict: a failure of our own
            log.error("v3 produce group failed", exc_info=exc)
            results = [error(exc.error_code, exc.message)] * len(group)
        except Exception:  # a bug: its records say so, the stream goes on
            log.exception("v3 produce group failed")
            results = [error(500, "Internal Server Error")] * len(group)
        finally:
            handed.set()
        for (_, slot), result in zip(group, results, strict=True):
            slot.set_result(line(result))

    # --- writer ------------------------------------------------------------------------------

    async def _write(self) -> None:
        slots = self._slots
        while True:
            if not slots:
                if self._read_all:
                    return
                self._slot_added.clear()
                await self._slot_added.wait()
                continue
            head = slots[0][0]
            if not head.done():
                await head
            ready: list[bytes] = []
            while slots and slots[0][0].done():
                slot, size = slots.popleft()
                ready.append(slot.result())
                self._pending_bytes -= size
            self._room.set()
            await self._response.write(b"".join(ready))
