"""One live consumer instance: an aiokafka consumer plus what the v2 API adds on top.

What the proxy adds to a bare consumer, and why:

* **Delivered positions.** The instance tracks, per partition, the offset after the last record
  it actually handed to the HTTP client. An empty-body commit, auto-commit and the positions
  saved on drain use these, never aiokafka's fetch position (which runs ahead by whatever is
  buffered), so a crash never commits a record nobody received.
* **Own auto-commit.** ``auto.commit.enable`` (Kafka's default: on) is implemented here from the
  delivered positions, on a timer and before partitions are revoked, for the same reason.
* **No rebalance stalls.** aiokafka rejoins groups in the background, so an HTTP client that polls
  rarely never blocks a rebalance; ``max.poll.interval.ms`` is aligned with the instance timeout
  so a slow HTTP client is not evicted while its instance is alive.
* **Bounded reads** following Confluent's rules (wait, ``max_bytes``, ``fetch.min.bytes``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaError,
    RebalanceInProgressError,
)
from aiokafka.structs import OffsetAndMetadata

from . import kafka_internals
from .errors import (
    IllegalState,
    InstanceNotFound,
    KafkaFailure,
    KafkaUnavailable,
    Moving,
    PoisonRecord,
)
from .kafka_internals import SubscriptionType

log = logging.getLogger(__name__)

# Records pulled from aiokafka per partial read. A read moves records into its response
# one at a time (for max_bytes), so this only bounds how much sits in the instance buffer.
FETCH_BATCH = 1000
# How long a seek on a subscribed instance waits for the group to assign partitions.
ASSIGNMENT_WAIT_S = 5.0


class DecodeError(Exception):
    """A record's bytes cannot be turned into the instance's format (it never will be: the
    read answers 408 40801 and steps past it; see :meth:`ConsumerInstance.read`)."""


@dataclass(frozen=True)
class InstanceSpec:
    """Everything needed to (re)build an instance; what the session directory stores."""

    group: str
    name: str
    format: str = "binary"
    auto_offset_reset: str | None = None
    auto_commit_enable: bool | None = None
    fetch_min_bytes: int | None = None
    request_timeout_ms: int | None = None
    consumer_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InstanceSpec:
        fields: dict[str, Any] = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**fields)


@dataclass
class ReadLimits:
    wait_ms: int
    max_bytes: int
    min_bytes: int  # -1: disabled (wait the full time unless max_bytes is reached)


@dataclass
class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    instance: ConsumerInstance
    assigned: asyncio.Event = field(default_factory=asyncio.Event)

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        revoked = set(revoked)
        if not revoked:
            return
        # Commit what the client received before another member takes over, so the new owner
        # starts exactly after it (aiokafka awaits this before rejoining).
        if self.instance.auto_commit:
            await self.instance._commit_delivered(revoked, swallow=True)
        self.instance._forget(revoked)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self.instance._apply_pending_positions(set(assigned))
        self.assigned.set()


class ConsumerInstance:
    """A v2 consumer instance. Explicit lifecycle: ``await start()`` ... ``await stop()``."""

    def __init__(
        self,
        spec: InstanceSpec,
        *,
        bootstrap_servers: str,
        kafka_settings: Mapping[str, Any],
        instance_timeout_ms: int,
        kafka_timeout_ms: int,
        auto_commit_interval_ms: int = 5000,
    ) -> None:
        self.spec = spec
        self.auto_commit = spec.auto_commit_enable is not False  # Kafka's default is on
        self._auto_commit_interval = auto_commit_interval_ms / 1000
        self._kafka_timeout = kafka_timeout_ms / 1000
        kwargs: dict[str, Any] = {
            "client_id": f"event-gateway-{spec.name}",
            "max_poll_interval_ms": instance_timeout_ms + 60_000,
            "rebalance_timeout_ms": 60_000,
            **kafka_settings,
            "group_id": spec.group,
            "enable_auto_commit": False,  # implemented here from delivered positions
        }
        if spec.auto_offset_reset is not None:
            kwargs["auto_offset_reset"] = spec.auto_offset_reset
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, **kwargs)
        self._listener = _Listener(self)
        self._lock = asyncio.Lock()
        self._buffer: collections.deque[ConsumerRecord] = collections.deque()
        self._delivered: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._auto_commit_task: asyncio.Task[None] | None = None
        # Positions saved by a previous owner, applied when their partitions are assigned.
        self._pending_positions: dict[TopicPartition, int] = {}
        self._sub_state: dict[str, Any] = {}
        self.epoch = 0  # ownership epoch in the session directory
        self.handed_over = False
        self.last_used = time.monotonic()
        self.closed = False

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await asyncio.wait_for(self._consumer.start(), self._kafka_timeout)
        except (TimeoutError, Exception) as exc:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._consumer.stop(), self._kafka_timeout)
            raise KafkaUnavailable(
                f"Kafka is unavailable: cannot start consumer ({describe(exc)})"
            ) from exc
        if self.auto_commit:
            self._auto_commit_task = asyncio.create_task(self._auto_commit_loop())

    async def stop(self, *, commit: bool = True) -> None:
        """Close the consumer (LeaveGroup); with auto-commit, commit what was delivered first."""
        if self._auto_commit_task is not None:
            self._auto_commit_task.cancel()
        async with self._lock:
            await self._close(commit=commit)

    async def _close(self, *, commit: bool) -> None:
        if self.closed:
            return
        self.closed = True
        if commit and self.auto_commit:
            await self._commit_delivered(None, swallow=True)
        try:
            await asyncio.wait_for(self._consumer.stop(), self._kafka_timeout)
        except Exception as exc:
            log.warning("consumer %s/%s did not close cleanly: %s", *self.key, exc)

    @property
    def key(self) -> tuple[str, str]:
        return (self.spec.group, self.spec.name)

    @property
    def busy(self) -> bool:
        """An operation (typically a long-poll read) is running: not idle, whatever the clock."""
        return self._lock.locked()

    def touch(self) -> None:
        self.last_used = time.monotonic()

    # --- subscription and assignment -------------------------------------------------------

    async def subscribe(self, topics: list[str] | None, pattern: str | None) -> None:
        async with self._op():
            if self._mode() is SubscriptionType.USER_ASSIGNED:
                raise IllegalState(
                    "Subscription to topics, partitions and pattern are mutually exclusive"
                )
            if topics is not None:
                if not topics:
                    if self.auto_commit:
                        await self._commit_delivered(None, swallow=True)
                    self._unsubscribe()
                    return
                await self._replace_subscription()
                self._consumer.subscribe(topics=topics, listener=self._listener)
                self._sub_state = {"topics": sorted(set(topics))}
            elif pattern is not None:
                await self._replace_subscription()
                self._consumer.subscribe(pattern=pattern, listener=self._listener)
                self._sub_state = {"pattern": pattern}

    async def unsubscribe(self) -> None:
        async with self._op():
            if self.auto_commit:
                await self._commit_delivered(None, swallow=True)
            self._unsubscribe()

    def _unsubscribe(self) -> None:
        self._consumer.unsubscribe()
        self._sub_state = {}
        self._forget(
            set(self._delivered) | {TopicPartition(r.topic, r.partition) for r in self._buffer}
        )

    def subscription(self) -> list[str]:
        self.touch()
        return sorted(self._consumer.subscription())

    def _mode(self) -> SubscriptionType:
        return kafka_internals.subscription_type(self._consumer)

    def is_subscribed(self) -> bool:
        return kafka_internals.auto_assigned(self._consumer)

    async def _replace_subscription(self) -> None:
        # A new subscription replaces the old one whatever its kind (topics <-> pattern);
        # aiokafka, like the Java client, would refuse to switch kinds without this.
        if self.auto_commit:
            await self._commit_delivered(None, swallow=True)
        if self._mode() is not SubscriptionType.NONE:
            self._consumer.unsubscribe()
        self._reset_for_new_assignment()

    async def assign(self, partitions: list[TopicPartition]) -> None:
        async with self._op():
            if self.is_subscribed():
                raise IllegalState(
                    "Subscription to topics, partitions and pattern are mutually exclusive"
                )
            self._reset_for_new_assignment()
            if partitions:
                self._consumer.assign(partitions)
                self._sub_state = {
                    "partitions": sorted([tp.topic, tp.partition] for tp in set(partitions))
                }
            else:
                self._unsubscribe()

    def subscription_state(self) -> dict[str, Any]:
        """What an adopting replica needs to rebuild the subscription or assignment."""
        return dict(self._sub_state)

    async def restore(
        self, state: Mapping[str, Any], positions: Mapping[TopicPartition, int]
    ) -> None:
        """Rebuild a previous owner's subscription/assignment and resume at ``positions``."""
        async with self._op():
            self._pending_positions = dict(positions)
            if "topics" in state:
                self._consumer.subscribe(topics=list(state["topics"]), listener=self._listener)
            elif "pattern" in state:
                self._consumer.subscribe(pattern=state["pattern"], listener=self._listener)
            elif "partitions" in state:
                tps = [TopicPartition(t, int(p)) for t, p in state["partitions"]]
                self._consumer.assign(tps)
                self._apply_pending_positions(set(tps))
            self._sub_state = dict(state)

    def _apply_pending_positions(self, assigned: set[TopicPartition]) -> None:
        for tp in assigned & set(self._pending_positions):
            offset = self._pending_positions.pop(tp)
            self._consumer.seek(tp, offset)
            self._delivered[tp] = offset
            self._committed.pop(tp, None)

    async def close_for_handover(self) -> dict[TopicPartition, int]:
        """Drain: let an in-flight read finish, then close and return the exact positions."""
        if self._auto_commit_task is not None:
            self._auto_commit_task.cancel()
        async with self._lock:
            self.handed_over = True
            positions = self.positions()
            # Partitions whose saved position was never applied keep it for the next owner.
            positions.update(self._pending_positions)
            await self._close(commit=True)
        return positions

    def assignment(self) -> list[TopicPartition]:
        self.touch()
        return sorted(self._consumer.assignment())

    def _reset_for_new_assignment(self) -> None:
        self._buffer.clear()
        self._delivered.clear()
        self._committed.clear()
        self._listener.assigned.clear()

    # --- positions -------------------------------------------------------------------------

    async def seek(
        self, offsets: Mapping[TopicPartition, int], timestamps: Mapping[TopicPartition, int]
    ) -> None:
        """Seek to exact offsets, and to the first offset at/after each timestamp (ms)."""
        async with self._op():
            await self._require_assigned([*offsets, *timestamps])
            targets = dict(offsets)
            if timestamps:
                found = await self._kafka(self._consumer.offsets_for_times(dict(timestamps)))
                ends = None
                for tp in timestamps:
                    hit = found.get(tp)
                    if hit is None:  # no record at/after it: the end, where the next one lands
                        if ends is None:
                            ends = await self._kafka(self._consumer.end_offsets(list(timestamps)))
                        targets[tp] = ends[tp]
                    else:
                        targets[tp] = hit.offset
            for tp, offset in targets.items():
                self._drop_buffered(tp)
                self._consumer.seek(tp, offset)

    async def seek_to(self, partitions: list[TopicPartition], *, end: bool) -> None:
        async with self._op():
            await self._require_assigned(partitions)
            for tp in partitions:
                self._drop_buffered(tp)
            if partitions:
                seek = self._consumer.seek_to_end if end else self._consumer.seek_to_beginning
                await self._kafka(seek(*partitions))

    async def _require_assigned(self, partitions: Iterable[TopicPartition]) -> None:
        wanted = set(partitions)
        if not wanted:
            return
        deadline = time.monotonic() + ASSIGNMENT_WAIT_S
        while True:
            missing = wanted - self._consumer.assignment()
            if not missing:
                return
            # A subscribed instance gets partitions when its group join completes; a client
            # that seeks right after subscribing deserves a short wait, not a 409.
            remaining = deadline - time.monotonic()
            if not self.is_subscribed() or remaining <= 0:
                tp = min(missing)
                raise IllegalState(f"No current assignment for partition {tp.topic}-{tp.partition}")
            self._listener.assigned.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._listener.assigned.wait(), remaining)

    def positions(self) -> dict[TopicPartition, int]:
        """Delivered positions of the currently assigned partitions (saved on drain)."""
        assigned = self._consumer.assignment()
        return {tp: off for tp, off in self._delivered.items() if tp in assigned}

    # --- commits ---------------------------------------------------------------------------

    async def commit(self, offsets: Mapping[TopicPartition, tuple[int, str]] | None) -> None:
        """Explicit offsets are the last processed record (Confluent's +1 is added here)."""
        async with self._op():
            if offsets is None:
                await self._commit_delivered(None, swallow=False)
                return
            if not offsets:
                return
            payload = {tp: OffsetAndMetadata(off + 1, meta) for tp, (off, meta) in offsets.items()}
            await self._commit(payload)

    async def committed(
        self, partitions: list[TopicPartition]
    ) -> list[tuple[TopicPartition, OffsetAndMetadata]]:
        """Committed offsets (with metadata) of the group; partitions without one are left out."""
        async with self._op():
            if not partitions:
                return []
            found = await self._kafka(
                kafka_internals.committed_with_metadata(self._consumer, set(partitions))
            )
            return [(tp, found[tp]) for tp in partitions if tp in found and found[tp].offset >= 0]

    async def _commit_delivered(self, only: set[TopicPartition] | None, *, swallow: bool) -> None:
        assigned = self._consumer.assignment()
        payload = {
            tp: OffsetAndMetadata(off, "")
            for tp, off in self._delivered.items()
            if tp in assigned and (only is None or tp in only) and self._committed.get(tp) != off
        }
        if not payload:
            return
        try:
            await self._commit(payload)
        except (IllegalState, KafkaUnavailable, KafkaFailure) as exc:
            if not swallow:
                raise
            log.warning("auto-commit for %s/%s failed: %s", *self.key, exc.message)

    async def _commit(self, payload: dict[TopicPartition, OffsetAndMetadata]) -> None:
        try:
            await self._kafka(self._consumer.commit(payload))
        except IllegalStateError as exc:
            raise IllegalState(_state_message(exc)) from exc
        except (CommitFailedError, RebalanceInProgressError) as exc:
            raise IllegalState(
                "Commit cannot be completed: the group rebalanced and these partitions may "
                "belong to another member now; read again and commit the new positions"
            ) from exc
        for tp, om in payload.items():
            self._committed[tp] = om.offset

    async def _auto_commit_loop(self) -> None:
        while True:
            await asyncio.sleep(self._auto_commit_interval)
            if self._lock.locked():
                continue  # a read is running; its partitions are committed next tick
            async with self._lock:
                await self._commit_delivered(None, swallow=True)

    # --- reads -----------------------------------------------------------------------------

    async def read(
        self, limits: ReadLimits, decode: Callable[[ConsumerRecord], tuple[Any, int]]
    ) -> list[Any]:
        """Collect records until the wait ends, ``max_bytes`` is reached, or enough bytes are in.

        ``decode`` turns a record into its response element and its size in bytes. A record it
        cannot decode fails the read (408 40801) only when it is first in line; the instance
        then steps past it, so one poison record never wedges the instance.

        ``decode`` may carry an async ``prepare(records)`` (schema formats: fetch the schemas
        the records name, since ``decode`` itself cannot await). It is awaited for whatever
        the buffer holds when the read starts and for every fetched batch, before any of
        those records is decoded. If it fails, no record is skipped: the error is the read's
        answer, or, once records were collected, the read returns them and the next read
        retries the batch.
        """
        prepare: Callable[[Iterable[ConsumerRecord]], Awaitable[None]] | None = getattr(
            decode, "prepare", None
        )
        async with self._op():
            self._require_subscription()
            if prepare is not None and self._buffer:
                await prepare(self._buffer)
            out: list[Any] = []
            size = 0
            deadline = time.monotonic() + limits.wait_ms / 1000
            while True:
                if not self._buffer:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    # Once enough bytes are in, only records aiokafka already fetched are
                    # drained into this response (a non-blocking getmany), as Confluent drains
                    # its buffer: bigger responses, no extra wait.
                    enough = self._enough(out, size, limits)
                    batch = await self._kafka(
                        self._consumer.getmany(
                            timeout_ms=0 if enough else max(int(remaining * 1000), 0),
                            max_records=FETCH_BATCH,
                        ),
                        allow=remaining + self._kafka_timeout,
                    )
                    self.touch()
                    if enough and not batch:
                        break
                    for records in batch.values():
                        self._buffer.extend(records)
                    if prepare is not None and self._buffer:
                        try:
                            await prepare(self._buffer)
                        except Exception:  # e.g. the registry is down: nothing is skipped
                            if out:
                                break  # the records so far are delivered; the next read retries
                            raise
                    continue
                rec = self._buffer[0]
                try:
                    element, rsize = decode(rec)
                except DecodeError as exc:
                    if out:
                        break  # return what came before; the next read reports this one
                    self._buffer.popleft()
                    self._delivered[TopicPartition(rec.topic, rec.partition)] = rec.offset + 1
                    raise PoisonRecord(
                        f"Error deserializing key/value for partition {rec.topic}-{rec.partition} "
                        f"at offset {rec.offset}: {exc}. The record was skipped; the next read "
                        "continues after it."
                    ) from exc
                if out and size + rsize > limits.max_bytes:
                    break  # stays buffered for the next read
                self._buffer.popleft()
                out.append(element)
                size += rsize
                self._delivered[TopicPartition(rec.topic, rec.partition)] = rec.offset + 1
                if size >= limits.max_bytes:
                    break
            return out

    @staticmethod
    def _enough(out: list[Any], size: int, limits: ReadLimits) -> bool:
        if limits.min_bytes < 0:
            return False
        return size >= limits.min_bytes and (bool(out) or limits.min_bytes == 0)

    def _require_subscription(self) -> None:
        if self._mode() is SubscriptionType.NONE:
            # Confluent answers this with a bare 500; it is the client's mistake.
            raise IllegalState(
                "Consumer is not subscribed to any topics or assigned any partitions"
            )

    # --- helpers ---------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _op(self) -> Any:
        async with self._lock:
            if self.closed:
                if self.handed_over:  # drained mid-request: the next try finds the new owner
                    raise Moving("Consumer instance is moving to another replica; retry")
                raise InstanceNotFound()
            self.touch()
            yield
            self.touch()

    def _drop_buffered(self, tp: TopicPartition) -> None:
        if self._buffer:
            self._buffer = collections.deque(
                r for r in self._buffer if (r.topic, r.partition) != (tp.topic, tp.partition)
            )

    def _forget(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:
            self._drop_buffered(tp)
            self._delivered.pop(tp, None)
            self._committed.pop(tp, None)

    async def _kafka(self, coro: Any, allow: float | None = None) -> Any:
        """Await a Kafka call with a bound; Kafka trouble becomes a retriable error."""
        try:
            return await asyncio.wait_for(coro, allow or self._kafka_timeout)
        except TimeoutError as exc:
            raise KafkaUnavailable("Kafka did not answer in time; retry the request") from exc
        except (IllegalStateError, CommitFailedError, RebalanceInProgressError):
            raise
        except KafkaError as exc:
            if exc.retriable:
                raise KafkaUnavailable(describe(exc)) from exc
            raise KafkaFailure(describe(exc)) from exc


def describe(exc: BaseException) -> str:
    """A one-line message for a client library's exception (never a stack trace)."""
    text = str(exc).strip()
    return text or type(exc).__name__


def _state_message(exc: IllegalStateError) -> str:
    text = describe(exc)
    return text.removeprefix("IllegalStateError: ")
