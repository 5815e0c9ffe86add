"""An instance's records as a stream (SSE or NDJSON): a loop of ordinary reads.

Each turn of the loop is one :meth:`~sessions.instance.ConsumerInstance.read`, written inside
the read as events, so the rule of the non-streaming path holds unchanged: records count as
delivered (positions, the empty-body commit, auto-commit, the positions saved on drain) only
once the write of their batch returned, and a batch whose write fails is rewound. Between two
reads the instance is free, so the client's commits, seeks and subscription changes run while
its stream is open; each read waits at most :data:`READ_WAIT_S` (less when a heartbeat is due)
so that they never wait long.

The stream is the instance's: records come in its format (any format, not only the one an
Accept type names), and a client reconnecting after a disconnect or a drain resumes from the
instance's positions, not from ``Last-Event-ID``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from aiohttp import web

from sessions.errors import Moving, SessionError, StoreUnavailable
from sessions.instance import ConsumerInstance, ReadLimits
from sessions.router import Local

from ..context import CONFIG, SESSIONS
from ..errors import GatewayError, error_body, to_gateway_error
from ..forwarding import FORWARDED, STREAM_HEADER
from ..observability import traffic
from ..security.principal import principal_of
from ..streaming import framing
from ..streaming.slots import STREAMS
from ..streaming.writer import EventStream, StreamClosed
from .decoding import Decoder, decoder_for

log = logging.getLogger(__name__)

# The longest one read waits for records: how long a commit or seek on the same instance
# waits for the stream to let go of it, and how late a drain or a vanished client is noticed.
READ_WAIT_S = 1.0
# Bytes one read takes (key + value, as max_bytes counts them) unless the client asks for more
# with max_bytes: a batch is decoded and held in memory whole while it is written, so a slow
# reader costs about this much, not consumer.request.max.bytes.
DEFAULT_READ_BYTES = 1024 * 1024
# A batch goes out in pieces of about this size, each waiting for the socket to drain: the
# transport never holds a whole batch on top of the batch itself.
PIECE_BYTES = 256 * 1024
# The EventSource reconnect delay sent first: long enough for a draining owner to hand the
# instance over (shutdown.readiness.delay.ms plus the drain), so the reconnect finds it.
RETRY_MS = 3000
# A stream renews its instance's directory record at least this often (a stream may outlive
# consumer.instance.timeout.ms with no other request, and the record must not expire).
KEEPALIVE_MAX_S = 5.0
# Upper bound on query values that are turned into seconds (a 4000-digit value is not a float).
_MAX_QUERY = 2**53

_POSITION = re.compile(rb',"partition":(\d+),"offset":(\d+)')
_TOPIC_AT = len(b'{"topic":"')


@dataclass(frozen=True)
class StreamParams:
    """What the client asked of its stream (validated by the route)."""

    max_records: int | None  # end after this many records
    duration_s: float | None  # end after this long
    max_bytes: int  # per read, already capped by consumer.request.max.bytes


def params(max_records: int, duration_ms: int, max_bytes: int, cap: int) -> StreamParams:
    """``max_records`` / ``duration_ms``: -1 unset, else >= 1; ``max_bytes``: <= 0 unset."""
    return StreamParams(
        max_records=min(max_records, _MAX_QUERY) if max_records > 0 else None,
        duration_s=min(duration_ms, _MAX_QUERY) / 1000 if duration_ms > 0 else None,
        max_bytes=min(max_bytes, cap) if max_bytes > 0 else min(DEFAULT_READ_BYTES, cap),
    )


def event_id(element: bytes) -> str:
    """``topic/partition/offset`` of one record element (layout: decoding.element).

    Read off the element's text, not by parsing it: the topic is its first field and needs no
    JSON escaping (Kafka allows only ``[a-zA-Z0-9._-]``); partition and offset are the last
    such pair at the element's top level (a json value may hold its own ``"partition"``
    keys, but before them; the metadata fields after them hold no such key).
    """
    topic = element[_TOPIC_AT : element.index(b'"', _TOPIC_AT)].decode()
    found = _POSITION.match(element, element.rindex(b',"partition":'))
    if found is None:  # pragma: no cover - every decoder writes the pair
        raise ValueError("record element without partition and offset")
    return f"{topic}/{int(found[1])}/{int(found[2])}"


def _sse_record(element: bytes) -> bytes:
    return framing.sse_event(element, event="record", event_id=event_id(element))


async def serve(
    request: web.Request, inst: ConsumerInstance, ctype: str, wanted: StreamParams
) -> web.StreamResponse:
    """Stream ``inst``'s records until the client leaves, a limit is reached or the replica
    drains. Anything wrong before the first byte is an ordinary error response."""
    caller = principal_of(request)
    # A stream relayed by another replica carries the name that replica ends it by.
    token = request.headers.get(STREAM_HEADER) if request.get(FORWARDED) else None
    with request.app[STREAMS].hold(caller.name, token) as drain:
        pump = _Pump(request, inst, ctype, wanted)
        return await pump.run(drain)


class _Pump:
    def __init__(
        self, request: web.Request, inst: ConsumerInstance, ctype: str, wanted: StreamParams
    ) -> None:
        app = request.app
        cfg = app[CONFIG]
        self.request = request
        self.inst = inst
        self.wanted = wanted
        self.decode: Decoder = decoder_for(
            app, inst.spec.format, metadata=inst.spec.include_metadata
        )
        self.out = EventStream(request, ctype, heartbeat_s=cfg.stream_heartbeat_ms / 1000)
        self.sse = ctype == framing.SSE
        self.frame: Callable[[bytes], bytes] = _sse_record if self.sse else framing.ndjson_line
        self.sent = 0
        self.started = time.monotonic()
        self.touch_every = min(KEEPALIVE_MAX_S, cfg.consumer_instance_timeout_ms / 4000)
        self.next_touch = self.started + self.touch_every

    async def run(self, drain: asyncio.Event) -> web.StreamResponse:
        """The first read opens the stream (its errors are plain error responses); then read
        and write until an end, which is written as the stream's last event."""
        try:
            await self._read(0.0, opening=True)
        except StreamClosed as exc:
            return self._gone(exc)
        try:
            reason = await self._loop(drain)
        except StreamClosed as exc:
            return self._gone(exc)
        except SessionError as exc:
            if isinstance(exc, Moving | StoreUnavailable):
                # Drained or taken over: a clean end, so the client reconnects and resumes
                # wherever the instance is now (its positions went with it).
                return await self._end(None)
            return await self._fail(to_gateway_error(exc))
        except GatewayError as exc:
            return await self._fail(exc)
        except Exception:
            log.exception("record stream of %s/%s failed", *self.inst.key)
            return await self._fail(GatewayError(500, 500, "Internal Server Error"))
        return await self._end(reason)

    async def _loop(self, drain: asyncio.Event) -> str | None:
        """Reads until an end: its reason for the client, or None (drain: no reason sent, so
        an EventSource reconnects, through the load balancer, to a replica that stays)."""
        while True:
            if drain.is_set():
                return None
            if self.wanted.max_records is not None and self.sent >= self.wanted.max_records:
                return "max_records"
            wait = READ_WAIT_S
            if self.wanted.duration_s is not None:
                left = self.started + self.wanted.duration_s - time.monotonic()
                if left <= 0:
                    return "duration"
                wait = min(wait, left)
            transport = self.request.transport
            if transport is None or transport.is_closing():
                raise StreamClosed("the client closed the connection")
            await self._keep_alive()
            await self._read(min(wait, self.out.heartbeat_due_s))
            await self.out.tick()

    async def _read(self, wait_s: float, *, opening: bool = False) -> None:
        limits = ReadLimits(
            wait_ms=int(wait_s * 1000),
            max_bytes=self.wanted.max_bytes,
            # Return as soon as records are in: a stream is about latency, not batch size.
            min_bytes=1,
            max_records=0
            if self.wanted.max_records is None
            else self.wanted.max_records - self.sent,
        )
        written = 0
        async with self.inst.read(limits, self.decode) as batch:
            if opening:
                await self.out.open(framing.sse_retry(RETRY_MS) if self.sse else b"")
            if batch:
                written = await self._write(batch)
        # The block ended normally: the batch is delivered (the instance moved its positions).
        if batch:
            self.sent += len(batch)
            traffic.consumed(self.request.app, len(batch), written)

    async def _write(self, batch: list[bytes]) -> int:
        frame, send = self.frame, self.out.send
        piece: list[bytes] = []
        size = total = 0
        for element in batch:
            framed = frame(element)
            piece.append(framed)
            size += len(framed)
            if size >= PIECE_BYTES:
                await send(b"".join(piece))
                total += size
                piece, size = [], 0
        if piece:
            await send(b"".join(piece))
            total += size
        return total

    async def _keep_alive(self) -> None:
        """Renew the instance's directory record, as every request on it does; a stream may be
        the only traffic the instance sees for longer than its timeout."""
        now = time.monotonic()
        if now < self.next_touch:
            return
        self.next_touch = now + self.touch_every
        if self.inst.closed:
            return  # the next read reports why
        caller = principal_of(self.request)
        group, name = self.inst.key
        route = await self.request.app[SESSIONS].route(
            group,
            name,
            forwarded=True,  # never a hop: the stream is served here or not at all
            principal=None if caller.anonymous else caller.name,
        )
        if not isinstance(route, Local) or route.instance is not self.inst:
            raise Moving("Consumer instance moved to another replica; reconnect to resume")

    async def _end(self, reason: str | None) -> web.StreamResponse:
        try:
            if reason is not None and self.sse:
                await self.out.send(
                    framing.sse_event(orjson.dumps({"reason": reason}), event="end")
                )
            await self.out.close()
        except StreamClosed as exc:
            return self._gone(exc)
        return self.out.response

    async def _fail(self, exc: GatewayError) -> web.StreamResponse:
        """A failure after the stream started: the error as the last event, then the end (the
        status line went out long ago). NDJSON has no event types: the error is a line of its
        own, told apart from records by its ``error_code`` (a record has a ``topic``)."""
        log.info("record stream of %s/%s ends: %s", *self.inst.key, exc.message)
        body = error_body(exc.error_code, exc.message)
        try:
            await self.out.send(
                framing.sse_event(body, event="error") if self.sse else framing.ndjson_line(body)
            )
            await self.out.close()
        except StreamClosed as exc2:
            return self._gone(exc2)
        return self.out.response

    def _gone(self, exc: StreamClosed) -> web.StreamResponse:
        """The client left (or stopped reading): whatever was being written was rewound."""
        log.info("record stream of %s/%s to %s ended: %s", *self.inst.key, self.request.remote, exc)
        transport = self.request.transport
        if transport is not None:
            transport.abort()  # a reader stuck for the write timeout holds the socket otherwise
        return self.out.response
