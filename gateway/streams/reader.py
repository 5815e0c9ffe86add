"""One topic stream's own Kafka consumer: no group, explicitly assigned and positioned.

No group means no coordinator, no rebalance and no committed offsets: the stream's position
lives in the client's event id (see :mod:`.positions`), so a stream costs Kafka only fetches
and any replica can continue it. Fetch buffers are small (:data:`FETCH_MAX_BYTES`): a
stream's memory is about one fetch per broker, however slow its reader, because the caller
asks for the next records only after the last ones were written (and aiokafka fetches a
partition again only once its buffered records were taken).

``auto_offset_reset`` is ``none``: when retention deletes records under a slow reader, the
fetch fails instead of silently jumping, and :meth:`TopicReader.fetch` moves to the log start
and reports the gap, which the stream passes on to the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import OffsetOutOfRangeError

from sessions import kafka_internals
from sessions.fetched import Record

from .positions import Start

log = logging.getLogger(__name__)

# About 1 MiB per fetch and per partition (below Kafka's defaults of 50 and 1 MiB): the
# bound on what one stream holds in memory beyond the event being written.
FETCH_MAX_BYTES = 1024 * 1024
# Records handed over per fetch call: the bound on one batch's rendering work.
MAX_RECORDS = 500


@dataclass(frozen=True)
class Gap:
    """Records ``[requested, resumed)`` of ``partition`` are gone (retention, or a topic
    truncated): the stream resumed at ``resumed`` instead of ``requested``."""

    partition: int
    requested: int
    resumed: int


def consumer_kwargs(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The stream's consumer arguments from the translated ``consumer.*``/``client.*``
    settings (and pass-through credentials): theirs, with the stream's own rules on top."""
    kwargs = {"client_id": "event-gateway-stream", **settings}
    for key in ("fetch_max_bytes", "max_partition_fetch_bytes"):
        kwargs[key] = min(int(kwargs.get(key, FETCH_MAX_BYTES)), FETCH_MAX_BYTES)
    kwargs.update(group_id=None, enable_auto_commit=False, auto_offset_reset="none")
    return kwargs


class TopicReader:
    """``open()`` once, ``fetch()`` in a loop, ``close()`` always (also after a failed open)."""

    def __init__(
        self,
        topic: str,
        partitions: list[int],
        *,
        bootstrap_servers: str,
        kwargs: Mapping[str, Any],
    ) -> None:
        self.topic = topic
        self.tps = [TopicPartition(topic, p) for p in partitions]
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, **kwargs)

    async def open(
        self, resumed: Mapping[int, int], start: Start
    ) -> tuple[dict[int, int], list[Gap]]:
        """Connect, assign every partition and seek it: to its resume offset (clamped to
        what the log still holds), else per ``start``. Returns every partition's concrete
        starting offset and the gaps found. The caller bounds it (``kafka.timeout.ms``)."""
        consumer = self._consumer
        await consumer.start()
        kafka_internals.lean_records(consumer)
        consumer.assign(self.tps)
        first = await consumer.beginning_offsets(self.tps)
        ends = await consumer.end_offsets(self.tps)
        offsets: dict[int, int] = {}
        gaps: list[Gap] = []
        for tp in self.tps:
            if tp.partition in resumed:
                wanted = resumed[tp.partition]
                offsets[tp.partition] = at = min(max(wanted, first[tp]), ends[tp])
                if wanted < at:
                    gaps.append(Gap(tp.partition, wanted, at))
            elif start.edge == "beginning":
                offsets[tp.partition] = first[tp]
            elif start.edge == "end":
                offsets[tp.partition] = ends[tp]
        timed = [tp for tp in self.tps if tp.partition not in offsets]
        if timed:
            assert start.timestamp_ms is not None
            found = await consumer.offsets_for_times({tp: start.timestamp_ms for tp in timed})
            for tp in timed:
                hit = found.get(tp)
                # None: no record at or after the time yet, so the next one written.
                offsets[tp.partition] = ends[tp] if hit is None else hit.offset
        for tp in self.tps:
            consumer.seek(tp, offsets[tp.partition])
        return offsets, gaps

    async def fetch(self, timeout_s: float) -> tuple[list[Record], list[Gap]]:
        """The next records (per partition in offset order, partitions one after the other),
        waiting up to ``timeout_s`` for some; or the gaps retention opened since."""
        try:
            batch = await self._consumer.getmany(
                timeout_ms=int(timeout_s * 1000), max_records=MAX_RECORDS
            )
        except OffsetOutOfRangeError as exc:
            return [], await self._skip_gone(dict(exc.args[0]) if exc.args else {})
        return [rec for tp in sorted(batch) for rec in batch[tp]], []

    async def _skip_gone(self, lost: dict[TopicPartition, int]) -> list[Gap]:
        tps = [tp for tp in self.tps if tp in lost]
        if not tps:
            return []
        first = await self._consumer.beginning_offsets(tps)
        ends = await self._consumer.end_offsets(tps)
        gaps = []
        for tp in tps:
            at = min(max(lost[tp], first[tp]), ends[tp])
            self._consumer.seek(tp, at)
            gaps.append(Gap(tp.partition, lost[tp], at))
        return gaps

    async def close(self, timeout_s: float) -> None:
        """Bounded: a stream must end even when Kafka does not answer its goodbye."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._consumer.stop(), timeout_s)
