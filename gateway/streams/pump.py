"""Records -> events on an open stream, one fetch at a time (backpressure).

The next fetch starts only once the last batch was written, so a slow reader slows fetching
down instead of piling records up; it writes pieces of about :data:`CHUNK` bytes. Every
record event carries the id after it (:class:`~.positions.EventIds`: every partition's
next offset), and records the ``key=`` filter skipped still move the positions on: the next
event's id covers them, and a batch that ends with skipped records ends with an id-only
block, so a reconnect need not read them again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from aiokafka.errors import KafkaError

from ..errors import GatewayError, describe, kafka_error_code
from ..streaming import framing
from ..streaming.writer import EventStream, StreamClosed
from . import positions
from .reader import Gap, TopicReader
from .render import Renderer

log = logging.getLogger(__name__)

# Events are written in pieces of about this size: one write (and one wait for the reader)
# per piece rather than per event.
CHUNK = 64 * 1024


class Pump:
    def __init__(
        self,
        stream: EventStream,
        reader: TopicReader,
        render: Renderer,
        start: dict[int, int],
        *,
        key: bytes | None,
        max_records: int | None,
        duration_s: float | None,
    ) -> None:
        """``key``: only records with this key; ``max_records``, ``duration_s``: when the
        stream ends by itself (None: never)."""
        self._stream = stream
        self._reader = reader
        self._render = render
        self._key, self._max_records, self._duration_s = key, max_records, duration_s
        self._ids = positions.EventIds(start)
        self._sent_id = ""
        self._sent_records = 0

    def _id(self) -> str:
        return self._ids.text()

    def opening(self, gaps: list[Gap]) -> bytes:
        """The starting positions as an id-only block (EventSource takes the id without an
        event), then a ``gap`` event per partition that could not resume where asked."""
        self._sent_id = self._id()
        return b"id: " + self._sent_id.encode() + b"\n\n" + self._gaps(gaps)

    def _gaps(self, gaps: list[Gap]) -> bytes:
        out = b""
        for gap in gaps:
            self._ids.set(gap.partition, gap.resumed)
            self._sent_id = self._id()
            data = orjson.dumps(
                {
                    "topic": self._reader.topic,
                    "partition": gap.partition,
                    "requested_offset": gap.requested,
                    "offset": gap.resumed,
                }
            )
            out += framing.sse_event(data, event="gap", event_id=self._sent_id)
        return out

    async def run(self, closing: asyncio.Event, kafka_timeout: float) -> None:
        """Until the client goes (StreamClosed), the replica drains, a limit is reached or
        Kafka fails (then an ``error`` event ends it)."""
        loop = asyncio.get_running_loop()
        deadline = None if self._duration_s is None else loop.time() + self._duration_s
        drained = asyncio.ensure_future(closing.wait())
        fetch: asyncio.Future[Any] | None = None
        try:
            while not self._done():
                wait = self._stream.heartbeat_due_s
                if deadline is not None:
                    wait = min(wait, deadline - loop.time())
                    if wait <= 0:
                        await self._end("duration")
                        return
                fetch = asyncio.ensure_future(self._reader.fetch(max(wait, 0.001)))
                await asyncio.wait({fetch, drained}, return_when=asyncio.FIRST_COMPLETED)
                if not fetch.done():  # draining: the client reconnects to another replica
                    return
                try:
                    records, gaps = fetch.result()
                    if gaps:
                        await self._stream.send(self._gaps(gaps))
                    if records:
                        async with asyncio.timeout(kafka_timeout):
                            await self._render.prepare(records)
                        await self._write(records)
                    else:
                        await self._stream.tick()
                except StreamClosed:
                    raise
                except Exception as exc:
                    await self._fail(exc)
                    return
            await self._end("max_records")
        finally:
            drained.cancel()
            if fetch is not None and not fetch.done():
                fetch.cancel()  # before the consumer stops under it

    async def _end(self, reason: str) -> None:
        """A limit the client set was reached: say which, as instance streams do, so that a
        client can tell this end from a drain (after which it should reconnect)."""
        await self._stream.send(framing.sse_event(orjson.dumps({"reason": reason}), event="end"))

    def _done(self) -> bool:
        limit = self._max_records
        return limit is not None and self._sent_records >= limit

    async def _write(self, records: list[Any]) -> None:
        chunk: list[bytes] = []
        size = 0
        want = self._key
        want_text = None if want is None else want.decode()
        for rec in records:
            if self._done():
                break
            self._ids.set(rec.partition, rec.offset + 1)
            data, key_text = self._render(rec)
            if want is not None and rec.key != want and key_text != want_text:
                continue
            self._sent_id = self._id()
            event = framing.sse_event(
                data,
                event="tombstone" if rec.value is None else "record",
                event_id=self._sent_id,
            )
            self._sent_records += 1
            chunk.append(event)
            size += len(event)
            if size >= CHUNK:
                await self._stream.send(b"".join(chunk))
                chunk, size = [], 0
        if self._id() != self._sent_id:  # the batch ended with records the filter skipped
            self._sent_id = self._id()
            chunk.append(b"id: " + self._sent_id.encode() + b"\n\n")
        if chunk:
            await self._stream.send(b"".join(chunk))

    async def _fail(self, exc: Exception) -> None:
        """Tell the client why the stream ends; its reconnect resumes from the last id."""
        if isinstance(exc, GatewayError):
            code, message = exc.error_code, exc.message
        elif isinstance(exc, KafkaError | TimeoutError):
            code = kafka_error_code(exc)
            message = f"Kafka: {describe(exc)}"
        else:
            log.exception("topic stream of %s failed", self._reader.topic)
            code, message = 500, "Internal Server Error"
        data = orjson.dumps({"error_code": code, "message": message})
        await self._stream.send(framing.sse_event(data, event="error"))
