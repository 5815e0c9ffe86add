"""One live consumer instance: an aiokafka consumer plus what the v2 API adds on top.

What the proxy adds to a bare consumer, and why:

* **Exact positions.** The instance tracks, per partition, the offset of the next record the
  client is to see: after the last record whose response was *fully written* to the client,
  or the target of the client's last seek. An empty-body commit, auto-commit and the positions
  saved on drain use these, never aiokafka's fetch position (which runs ahead by whatever is
  buffered), so a crash never commits a record nobody received, and a seek is never undone
  by a move to another replica.
* **Delivered means written.** A read holds the instance until its response is written
  (:meth:`ConsumerInstance.read` is a context manager around the write); if the write fails
  (the client, or the replica forwarding for it, went away) the instance rewinds to the first
  record of that response, so the next read returns it again.
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
import functools
import itertools
import logging
import time
from bisect import bisect_left, bisect_right
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from typing import Any

import re2
from aiokafka import AIOKafkaConsumer, TopicPartition
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
    InstanceBusy,
    InstanceNotFound,
    KafkaFailure,
    KafkaUnavailable,
    Moving,
    PoisonRecord,
)
from .fetched import Record
from .kafka_internals import SubscriptionType

log = logging.getLogger(__name__)

# Records pulled from aiokafka per partial read: this bounds how much sits in the instance
# buffer (and how much a batch decoder decodes ahead of a small max_bytes read).
FETCH_BATCH = 1000
# How long a seek on a subscribed instance waits for the group to assign partitions.
ASSIGNMENT_WAIT_S = 5.0
# Requests one instance lets wait for it (it serves one at a time): a client firing
# thousands of concurrent reads at one instance gets 429s, not thousands of parked tasks.
MAX_WAITING = 16
# An instance whose client has not read for this long stops fetching (its partitions are
# paused in aiokafka) until the next read. aiokafka fetches every assigned partition whether
# or not anybody reads: a long-poll FetchRequest every fetch_max_wait_ms per instance, which
# is what a thousand idle instances spent most of a core on. A client polling in a loop comes
# back well within this, so it keeps aiokafka's prefetch; one that comes back later pays one
# fetch round trip on its first read.
IDLE_PAUSE_S = 2.0
# How often aiokafka's fetch loop wakes while the instance is idle (its default, 0.2 s, is
# kept while reading). With every partition paused each wake-up finds nothing to do, and
# five a second per instance was most of what idle instances still cost; every event that
# matters (resume, seek, rebalance) wakes the loop at once anyway.
IDLE_FETCHER_TIMEOUT_S = 10.0
# After a read of a batch-decodable format, records aiokafka already fetched are moved into
# an empty instance buffer and decoded while the client is busy with the response (see
# _prefill), up to about this many records or key + value bytes: roughly one fetch of a few
# partitions, so an active instance holds about one fetch ahead, decoded, and no more.
# A client whose last response was bigger gets as much prepared as that response held (it
# will most likely ask for as much again), up to the _CAP values: a loop reading 25,000
# records a time then finds its whole next response decoded, instead of 10,000 of it.
# Decoded elements take about 5x the raw bytes, so 1 MiB here is about 5 MB per instance
# that a client is actively reading (idle instances hold none), and the caps about 40 MB
# for a client already taking responses of that size.
PREFILL_MAX_RECORDS = 10_000
PREFILL_MAX_BYTES = 1024 * 1024
PREFILL_CAP_RECORDS = 50_000
PREFILL_CAP_BYTES = 8 * 1024 * 1024
# How long a prefill short of its target waits for aiokafka's next fetch, each time. A read
# usually drains everything aiokafka holds, so right after it there is nothing to prefill
# from; the fetch aiokafka then sends arrives while the client is still busy with the
# response. Waiting for it (without holding the instance) is what keeps a polling client
# from waiting on Kafka at its next read while data is there.
PREFILL_WAIT_S = 1.0


def _prefill_target(records: int, nbytes: int) -> tuple[int, int]:
    """What the next prefill may prepare after a response of ``records`` elements and
    ``nbytes`` bytes (element text, a little more than the raw bytes it came from)."""
    return (
        min(max(records, PREFILL_MAX_RECORDS), PREFILL_CAP_RECORDS),
        min(max(nbytes, PREFILL_MAX_BYTES), PREFILL_CAP_BYTES),
    )


class DecodeError(Exception):
    """A record's bytes cannot be turned into the instance's format (it never will be: the
    read answers 408 40801 and steps past it; see :meth:`ConsumerInstance.read`)."""


# A read's decoder: one record -> (response element, size for max_bytes). It may carry an
# async ``prepare`` and a ``batch`` (see ConsumerInstance.read).
Decode = Callable[[Record], tuple[Any, int]]
BatchDecode = Callable[[Sequence[Record]], tuple[list[Any], list[int]]]


class _Chunk:
    """Buffered records of one partition from one fetch, in offset order.

    The read loop works on these rather than on single records, so a batch decoder sees a
    partition's records as one list. What a batch decoder made of them is kept here too: a
    read that stops early (``max_bytes``) leaves the rest decoded for the next read instead of
    decoding it again. ``elements``/``sizes`` cover ``records[base:base + len(elements)]``.
    """

    __slots__ = ("base", "decoded_by", "elements", "pos", "records", "sizes", "tp")

    def __init__(self, tp: TopicPartition, records: list[Record]) -> None:
        self.tp = tp
        self.records = records
        self.pos = 0  # the next record to hand out
        self.decoded_by: BatchDecode | None = None
        self.base = 0
        self.elements: list[Any] = []
        self.sizes: list[int] = []


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
    # The documented extension: reads also show each record's headers and timestamp.
    include_metadata: bool = False
    # Who created it (None: authentication was off). Only that principal may use it, on any
    # replica: the directory keeps the spec, so every replica checks the same binding.
    principal: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InstanceSpec:
        fields: dict[str, Any] = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**fields)


@dataclass(frozen=True)
class Handover:
    """What a drained instance leaves for the replica that adopts it.

    ``positions``: the next offset per partition. ``baseline``: the group's committed offset
    of each of those partitions at drain time (-1: none). The adopter applies a position
    only while the group's committed offset is still its baseline: if the group moved on
    meanwhile (another member read and committed), the committed offset wins.
    """

    positions: dict[TopicPartition, int]
    baseline: dict[TopicPartition, int]


def compile_pattern(pattern: str) -> Any:
    """A topic pattern compiled with RE2: matching is linear in the topic name's length.

    Python's ``re`` backtracks: one pattern such as ``([\\w.-]|[\\w.-])*!`` would freeze
    the replica on every metadata refresh (aiokafka matches the pattern against every topic
    of the cluster). RE2 never backtracks; the HTTP layer refuses patterns RE2 cannot compile.
    """
    options = re2.Options()
    options.log_errors = False
    return re2.compile(pattern, options)


class _AllowedMatches:
    """What aiokafka calls ``match`` on: a whole-name match of a compiled pattern that never
    matches a topic clients may not read (``allowed``)."""

    __slots__ = ("_allowed", "_compiled")

    def __init__(self, compiled: Any, allowed: Callable[[str], bool]) -> None:
        self._compiled = compiled
        self._allowed = allowed

    def match(self, topic: str) -> Any:
        # The whole name must match, as Java's Pattern.matcher(topic).matches() in the
        # consumer Confluent runs (aiokafka's own re.match would accept a prefix).
        return self._compiled.fullmatch(topic) if self._allowed(topic) else None


@dataclass
class ReadLimits:
    wait_ms: int
    max_bytes: int
    min_bytes: int  # -1: disabled (wait the full time unless max_bytes is reached)
    # At most this many records (0: no limit). A stream that ends after exactly N records
    # needs it: a read's records count as delivered all together, so it must not take more
    # than the stream will write.
    max_records: int = 0


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
        # aiokafka starts every newly assigned partition unpaused: an idle instance would
        # fetch again after each rebalance until its next read.
        self.instance._pause_if_idle()
        await self.instance._apply_handover(set(assigned))
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
        topic_allowed: Callable[[str], bool] = lambda topic: True,
    ) -> None:
        self.spec = spec
        self._topic_allowed = topic_allowed
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
        self._make_consumer: Callable[[], AIOKafkaConsumer] = functools.partial(
            AIOKafkaConsumer, bootstrap_servers=bootstrap_servers, **kwargs
        )
        self._consumer = self._make_consumer()
        # Whether this consumer ever joined (or began joining) its group: see assign().
        self._was_subscribed = False
        self._listener = _Listener(self)
        self._lock = asyncio.Lock()
        self._buffer: collections.deque[_Chunk] = collections.deque()
        # The next offset the client is to see, per partition (see the module docstring).
        self._positions: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._auto_commit_task: asyncio.Task[None] | None = None
        # What a previous owner left (drain), applied at this instance's first assignment
        # only: after that the group's own commits are the truth.
        self._handover: Handover | None = None
        self._sub_state: dict[str, Any] = {}
        self.epoch = 0  # ownership epoch in the session directory
        self.handed_over = False
        self.last_used = time.monotonic()
        self.closed = False  # no operation is served any more
        self._waiting = 0
        self._consumer_stopped = False
        # Idle: no read for IDLE_PAUSE_S, fetching paused (see IDLE_PAUSE_S). The flag, not
        # aiokafka's paused set, is the truth: aiokafka forgets pauses when the assignment
        # changes or the consumer is replaced, and _pause_if_idle re-applies them.
        self._idle = False
        self._idle_timer: asyncio.TimerHandle | None = None
        self._fetcher_timeout: float | None = None  # aiokafka's own, restored on wake
        self._prefill_task: asyncio.Task[None] | None = None
        # (records, key + value bytes) the next prefill may prepare: see PREFILL_MAX_*.
        self._prefill_target = (PREFILL_MAX_RECORDS, PREFILL_MAX_BYTES)

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
        kafka_internals.lean_records(self._consumer)
        if self.auto_commit:
            self._auto_commit_task = asyncio.create_task(self._auto_commit_loop())
        self._arm_idle_timer()  # a client that never reads must not keep it fetching

    async def stop(self, *, commit: bool = True, wait_s: float | None = None) -> None:
        """Close the consumer (LeaveGroup); with auto-commit, commit what was delivered first.

        ``wait_s`` bounds the wait for an operation in progress (a read being written); past
        it the consumer is closed anyway, so the group never waits for a member that is gone.
        """
        if self._auto_commit_task is not None:
            self._auto_commit_task.cancel()
        if self._prefill_task is not None:
            # Records it took from aiokafka are lost with it, which is harmless only here:
            # they were never delivered, and the instance is closing (positions stay exact).
            self._prefill_task.cancel()
        try:
            async with asyncio.timeout(wait_s):
                await self._lock.acquire()
        except TimeoutError:
            log.warning("consumer %s/%s: closing while an operation is still running", *self.key)
            await self._close(commit=False)
            return
        try:
            await self._close(commit=commit)
        finally:
            self._lock.release()

    async def _close(self, *, commit: bool) -> None:
        self._disarm_idle_timer()
        if self.closed and self._consumer_stopped:
            return
        self.closed = True
        if commit and self.auto_commit:
            await self._commit_delivered(None, swallow=True)
        self._consumer_stopped = True
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
                self._was_subscribed = True
                self._sub_state = {"topics": sorted(set(topics))}
            elif pattern is not None:
                await self._replace_subscription()
                self._subscribe_pattern(pattern)
                self._sub_state = {"pattern": pattern}

    async def unsubscribe(self) -> None:
        async with self._op():
            if self.auto_commit:
                await self._commit_delivered(None, swallow=True)
            self._unsubscribe()

    def _subscribe_pattern(self, pattern: str) -> None:
        # Protected topics (the registry's, Kafka's own) are never matched: a pattern is not
        # a request for them.
        matcher = _AllowedMatches(compile_pattern(pattern), self._topic_allowed)
        kafka_internals.subscribe_pattern(self._consumer, matcher, self._listener)
        self._was_subscribed = True

    def _unsubscribe(self) -> None:
        self._consumer.unsubscribe()
        self._sub_state = {}
        self._forget(set(self._positions) | {chunk.tp for chunk in self._buffer})

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
                if self._was_subscribed:
                    await self._replace_consumer()
                self._consumer.assign(partitions)
                self._pause_if_idle()
                self._sub_state = {
                    "partitions": sorted([tp.topic, tp.partition] for tp in set(partitions))
                }
            else:
                self._unsubscribe()

    async def _heal_fetcher(self) -> None:
        """Rebuild the consumer if aiokafka's background fetcher died.

        aiokafka's fetch task can die on a race of its own (a subscription ending while it
        waits for an assignment: "Unexpected error in fetcher routine"), and nothing restarts
        it: every later read would quietly return nothing, forever. A fresh consumer with the
        same subscription, resuming at this instance's positions, heals it.
        """
        if not kafka_internals.fetcher_dead(self._consumer):
            return
        log.warning("%s/%s: the Kafka fetcher stopped; rebuilding the consumer", *self.key)
        positions, state = self.positions(), dict(self._sub_state)
        self._buffer.clear()
        await self._replace_consumer()
        if "partitions" in state:
            self._consumer.assign([TopicPartition(t, int(p)) for t, p in state["partitions"]])
            for tp, offset in positions.items():
                self._consumer.seek(tp, offset)
        elif "topics" in state or "pattern" in state:
            # Resume at these positions at the first assignment, as an adoption does.
            self._handover = Handover(positions, {}) if positions else None
            if "topics" in state:
                self._consumer.subscribe(topics=list(state["topics"]), listener=self._listener)
                self._was_subscribed = True
            else:
                self._subscribe_pattern(state["pattern"])

    async def _replace_consumer(self) -> None:
        """A fresh aiokafka consumer for a manual assignment after a group subscription.

        aiokafka's group coordinator keeps acting on a join that was under way when the
        subscription ended, and fails the next fetch ("Should not be called") once the
        consumer has a manual assignment; a consumer that was never in the group has no such
        coordinator state. The old one leaves its group on the way out.
        """
        old, self._consumer = self._consumer, self._make_consumer()
        self._was_subscribed = False
        with contextlib.suppress(Exception):
            await asyncio.wait_for(old.stop(), self._kafka_timeout)
        try:
            await asyncio.wait_for(self._consumer.start(), self._kafka_timeout)
        except (TimeoutError, Exception) as exc:
            raise KafkaUnavailable(
                f"Kafka is unavailable: cannot restart the consumer ({describe(exc)})"
            ) from exc
        kafka_internals.lean_records(self._consumer)

    def subscription_state(self) -> dict[str, Any]:
        """What an adopting replica needs to rebuild the subscription or assignment."""
        return dict(self._sub_state)

    async def restore(self, state: Mapping[str, Any], handover: Handover | None) -> None:
        """Rebuild a previous owner's subscription/assignment and resume where it left off."""
        async with self._op():
            self._handover = handover if handover and handover.positions else None
            if "topics" in state:
                self._consumer.subscribe(topics=list(state["topics"]), listener=self._listener)
                self._was_subscribed = True
            elif "pattern" in state:
                self._subscribe_pattern(state["pattern"])
            elif "partitions" in state:
                tps = [TopicPartition(t, int(p)) for t, p in state["partitions"]]
                self._consumer.assign(tps)
                self._pause_if_idle()
                await self._apply_handover(set(tps))
            self._sub_state = dict(state)

    async def _apply_handover(self, assigned: set[TopicPartition]) -> None:
        """At the first assignment after an adoption, resume at the previous owner's positions
        where the group has not moved on since; then forget them (single use)."""
        handover, self._handover = self._handover, None
        if handover is None:
            return
        wanted = assigned & set(handover.positions)
        if not wanted:
            return
        try:
            committed = await self._kafka(
                kafka_internals.committed_with_metadata(self._consumer, wanted)
            )
        except (KafkaUnavailable, KafkaFailure) as exc:
            # Without the group's view, resuming from committed offsets is the safe side.
            log.warning("%s/%s: saved positions not applied (%s)", *self.key, exc.message)
            return
        for tp in wanted:
            now = committed[tp].offset if tp in committed else -1
            base = handover.baseline.get(tp)
            if base is not None and now != base:
                continue  # the group committed past the drain: its offset wins
            offset = handover.positions[tp]
            self._consumer.seek(tp, offset)
            self._positions[tp] = offset
            self._committed.pop(tp, None)

    async def prepare_handover(self, kafka_budget_s: float | None = None) -> Handover:
        """Drain, first half: let an in-flight read finish (its response written), stop
        serving, commit (with auto-commit) and say where the next owner resumes.

        The consumer stays in its group until :meth:`stop`, which the caller runs once the
        positions are safe in the directory: closing first would let a rebalance hand the
        partitions to another member before anyone knows where to resume.

        ``kafka_budget_s`` bounds the Kafka calls (commit, commit baseline) together, so a
        slow Kafka cannot keep the positions from reaching the directory within the drain:
        past it they are saved without a baseline (the adopter then applies them as saved).
        """
        if self._auto_commit_task is not None:
            self._auto_commit_task.cancel()
        async with self._lock:
            self.handed_over = True
            self.closed = True
            positions = self.positions()
            baseline: dict[TopicPartition, int] = {}
            try:
                async with asyncio.timeout(kafka_budget_s):
                    if self.auto_commit:
                        await self._commit_delivered(None, swallow=True)
                    if positions:
                        found = await self._kafka(
                            kafka_internals.committed_with_metadata(self._consumer, set(positions))
                        )
                        baseline = {tp: found[tp].offset if tp in found else -1 for tp in positions}
            except (TimeoutError, KafkaUnavailable, KafkaFailure) as exc:
                log.warning(
                    "%s/%s: handing over without a commit baseline (%s)",
                    *self.key,
                    getattr(exc, "message", None) or type(exc).__name__,
                )
            pending = self._handover
            if pending is not None:
                # Positions this instance inherited but never applied (not assigned yet) go on
                # to the next owner with their original baseline.
                for tp, off in pending.positions.items():
                    if tp not in positions:
                        positions[tp] = off
                        if tp in pending.baseline:
                            baseline[tp] = pending.baseline[tp]
                        else:
                            baseline.pop(tp, None)
            return Handover(positions, baseline)

    def assignment(self) -> list[TopicPartition]:
        self.touch()
        return sorted(self._consumer.assignment())

    def _reset_for_new_assignment(self) -> None:
        self._buffer.clear()
        self._positions.clear()
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
            self._seek_exact(targets)

    async def seek_to(self, partitions: list[TopicPartition], *, end: bool) -> None:
        """Seek to the beginning or end, resolved to exact offsets now (not lazily, as
        aiokafka's ``seek_to_*`` would), so a drain right after saves the real target."""
        async with self._op():
            await self._require_assigned(partitions)
            if partitions:
                edge = self._consumer.end_offsets if end else self._consumer.beginning_offsets
                self._seek_exact(await self._kafka(edge(list(partitions))))

    def _seek_exact(self, targets: Mapping[TopicPartition, int]) -> None:
        for tp, offset in targets.items():
            self._drop_buffered(tp)
            self._consumer.seek(tp, offset)
            self._positions[tp] = offset

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
        """Positions of the currently assigned partitions (what a drain saves)."""
        assigned = self._consumer.assignment()
        return {tp: off for tp, off in self._positions.items() if tp in assigned}

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
            for tp, off in self._positions.items()
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
            # A read in progress is waited for, not skipped: a client streaming records
            # (gateway/consume/stream.py) reads without pause, so a tick that skipped busy
            # instances would never commit for it.
            async with self._lock:
                if not self.closed:
                    await self._commit_delivered(None, swallow=True)

    # --- reads -----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def read(self, limits: ReadLimits, decode: Decode) -> AsyncIterator[list[Any]]:
        """Collect records for one response; the caller writes it inside the ``with`` block.

        The records count as delivered (positions, commits, drain) only when the block ends
        normally, i.e. the response was written. If it raises (the client went away), the
        instance rewinds each partition to the first record of this response, so nothing is
        lost. The instance stays locked meanwhile: no other operation sees positions past an
        unwritten response.

        Records are collected until the wait ends, ``max_bytes`` is reached, or enough bytes
        are in. ``decode`` turns a record into its response element and its size in bytes. A
        record it cannot decode fails the read (:class:`PoisonRecord`) only when it is first
        in line; the instance then steps past it, so one poison record never wedges it.

        ``decode`` may carry an async ``prepare(records)`` (schema formats: fetch the schemas
        the records name, since ``decode`` itself cannot await). It is awaited for whatever
        the buffer holds when the read starts and for every fetched batch, before any of
        those records is decoded. If it fails, no record is skipped: the error is the read's
        answer, or, once records were collected, the read returns them and the next read
        retries the batch.

        ``decode`` may also carry ``batch(records)``: the same decoding for a list of one
        partition's records at once, returning the elements and sizes of the prefix it could
        decode. Per record, this loop then does nothing but list slicing; the per-record
        ``decode`` is only called for the record a batch stopped at, to raise its error.
        """
        async with self._op():
            self._wake()
            try:
                out, taken = await self._collect(limits, decode)
                try:
                    yield out
                except BaseException:
                    self._rewind(taken)
                    raise
                assigned = self._consumer.assignment()
                for tp, (_, after) in taken.items():
                    if tp in assigned:  # a rebalance during the write revoked it: keep nothing
                        self._positions[tp] = after
                if out:
                    self._prefill_target = _prefill_target(len(out), sum(map(len, out)))
                    self._schedule_prefill(decode)
            finally:
                self._arm_idle_timer()

    # --- prefill ---------------------------------------------------------------------------

    def _schedule_prefill(self, decode: Decode) -> None:
        """Prepare the next read while this one's client reads and parses its response.

        aiokafka fetches ahead, but turns the fetched bytes into records only when asked
        (``getmany``), and that plus decoding is most of a read's CPU. A client polling in a
        loop spends its own time between reads; doing both then leaves the next read only
        the slicing and the write. Records are taken only as aiokafka's background fetches
        bring them (each waited for up to PREFILL_WAIT_S, without holding the instance), up to the
        target, only for decoders that need nothing per read (``batch``, no ``prepare``), and
        never while another operation runs or waits. Buffered records are what a read would
        have taken anyway: seeks, rewinds and revocations drop them as they do today, and
        positions and commits never look at them.
        """
        batch: BatchDecode | None = getattr(decode, "batch", None)
        if batch is None or getattr(decode, "prepare", None) is not None or self.closed:
            return
        if self._prefill_task is None or self._prefill_task.done():
            self._prefill_task = asyncio.create_task(self._prefill(batch))

    async def _prefill(self, batch: BatchDecode) -> None:
        await asyncio.sleep(0)  # the read that scheduled this releases the lock first
        while True:
            if self._lock.locked() or self._waiting:
                return  # an operation is running or waiting: it does its own fetching
            async with self._lock:
                try:
                    short = await self._prefill_locked(batch)
                except Exception as exc:  # the next read meets the same trouble and reports it
                    log.debug("%s/%s: prefill stopped: %s", *self.key, describe(exc))
                    return
            # Short of the target and aiokafka holds nothing more: wait for its next fetch,
            # without the lock (an operation arriving meanwhile runs at once, and this stops).
            # Each wait is bounded; the whole ends at the target, at a wait that brings
            # nothing, or at the idle pause (no read for IDLE_PAUSE_S stops fetching).
            if not short or not await kafka_internals.wait_for_fetch(
                self._consumer, PREFILL_WAIT_S
            ):
                return

    async def _prefill_locked(self, batch: BatchDecode) -> bool:
        """Decode what aiokafka holds into the buffer, up to the target; True when the buffer
        is still short of it because aiokafka has nothing more yet (worth waiting for)."""
        max_records, max_bytes = self._prefill_target
        records_in = sum(len(c.records) - c.pos for c in self._buffer)
        bytes_in = sum(sum(c.sizes) for c in self._buffer)
        while records_in < max_records and bytes_in < max_bytes:
            if self.closed or self._idle or self._waiting or self._mode() is SubscriptionType.NONE:
                return False
            if kafka_internals.fetcher_dead(self._consumer):
                return False  # the next read heals it
            # No wait_for here: cancelling a getmany that already took records from aiokafka
            # would lose them. With timeout 0 it returns at once (it can wait only while a
            # group rebalance completes, as any read's getmany does).
            fetched = await self._consumer.getmany(timeout_ms=0, max_records=FETCH_BATCH)
            if not fetched:
                return True
            for tp, records in fetched.items():
                if records:
                    chunk = _Chunk(tp, records)
                    chunk.elements, chunk.sizes = batch(records)
                    chunk.decoded_by = batch
                    self._buffer.append(chunk)
                    records_in += len(records)
                    bytes_in += sum(chunk.sizes)
            await asyncio.sleep(0)  # let a read that just arrived queue up (and stop this)
        return False

    # --- idle pause ------------------------------------------------------------------------

    def _wake(self) -> None:
        """A read starts: fetch again (the read then waits on that fetch as usual)."""
        self._disarm_idle_timer()
        if self._idle:
            self._idle = False
            if self._fetcher_timeout is not None:
                # Before resuming: the wake-up resume() causes already uses it.
                kafka_internals.set_fetcher_timeout(self._consumer, self._fetcher_timeout)
            paused = self._consumer.paused()
            if paused:
                self._consumer.resume(*paused)

    def _arm_idle_timer(self) -> None:
        """Pause fetching IDLE_PAUSE_S after this moment unless a read starts before."""
        self._disarm_idle_timer()
        if not self.closed:
            loop = asyncio.get_running_loop()
            self._idle_timer = loop.call_later(IDLE_PAUSE_S, self._go_idle)

    def _disarm_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _go_idle(self) -> None:
        # A callback, not a task: a thousand sleeping tasks would cost memory and wake-ups for
        # nothing. Pausing is synchronous and touches no position: seeks, commits, rewinds
        # and drains work on paused partitions exactly as on fetching ones.
        self._idle_timer = None
        if self.closed:
            return
        self._idle = True
        self._pause_if_idle()

    def _pause_if_idle(self) -> None:
        """Pause every assigned partition of an idle instance (aiokafka starts a newly
        assigned partition, or a replaced consumer's, unpaused)."""
        if not self._idle:
            return
        current = kafka_internals.fetcher_timeout(self._consumer)
        if current is not None and current != IDLE_FETCHER_TIMEOUT_S:
            # Per consumer: a replaced consumer starts with aiokafka's default again.
            self._fetcher_timeout = current
            kafka_internals.set_fetcher_timeout(self._consumer, IDLE_FETCHER_TIMEOUT_S)
        todo = self._consumer.assignment() - self._consumer.paused()
        if todo:
            self._consumer.pause(*todo)

    def fetch_paused(self) -> bool:
        """Whether the instance is idle and fetches nothing (for tests and metrics)."""
        return self._idle

    def _rewind(self, taken: Mapping[TopicPartition, tuple[int, int]]) -> None:
        """Undo a read whose response was not written: fetch again from its first records."""
        assigned = self._consumer.assignment()
        for tp, (first, _) in taken.items():
            self._drop_buffered(tp)
            if tp in assigned:
                self._consumer.seek(tp, first)
        if taken:
            log.info(
                "%s/%s: response not written (client gone); rewound %d partition(s)",
                *self.key,
                len(taken),
            )

    async def _collect(
        self, limits: ReadLimits, decode: Decode
    ) -> tuple[list[Any], dict[TopicPartition, tuple[int, int]]]:
        """The response's elements, and per partition (first offset, offset after last).

        If the collecting itself is interrupted (the request's task is cancelled because the
        client went away, or a Kafka call fails after some records were taken), the records
        taken so far go back: they were never in any response.
        """
        taken: dict[TopicPartition, tuple[int, int]] = {}
        try:
            return await self._collect_into(taken, limits, decode)
        except BaseException:
            self._rewind(taken)
            raise

    async def _collect_into(
        self,
        taken: dict[TopicPartition, tuple[int, int]],
        limits: ReadLimits,
        decode: Decode,
    ) -> tuple[list[Any], dict[TopicPartition, tuple[int, int]]]:
        prepare: Callable[[Iterable[Record]], Awaitable[None]] | None = getattr(
            decode, "prepare", None
        )
        batch: BatchDecode | None = getattr(decode, "batch", None)
        self._require_subscription()
        await self._heal_fetcher()
        if prepare is not None and self._buffer:
            await prepare(self._buffered_records())
        out: list[Any] = []
        size = 0
        max_bytes = limits.max_bytes
        max_records = limits.max_records if limits.max_records > 0 else None
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
                fetched = await self._kafka(
                    self._consumer.getmany(
                        timeout_ms=0 if enough else max(int(remaining * 1000), 0),
                        max_records=FETCH_BATCH,
                    ),
                    allow=remaining + self._kafka_timeout,
                )
                self.touch()
                if enough and not fetched:
                    break
                for tp, records in fetched.items():
                    if records:
                        self._buffer.append(_Chunk(tp, records))
                if prepare is not None and self._buffer:
                    try:
                        await prepare(self._buffered_records())
                    except Exception:  # e.g. the registry is down: nothing is skipped
                        if out:
                            break  # the records so far are returned; the next read retries
                        raise
                continue
            chunk = self._buffer[0]
            if batch is not None:
                if chunk.decoded_by is not batch or chunk.pos > chunk.base + len(chunk.elements):
                    chunk.base = chunk.pos
                    chunk.elements, chunk.sizes = batch(chunk.records[chunk.pos :])
                    chunk.decoded_by = batch
                if chunk.pos < chunk.base + len(chunk.elements):
                    size, full = self._take_decoded(chunk, out, size, max_bytes, taken, max_records)
                    if full:
                        break
                    continue
                # The batch stopped here: this record goes through the per-record decoder
                # (its error is the poison record's answer), then the rest is batched again.
            try:
                size, full = self._take_one(chunk, out, size, max_bytes, taken, decode, max_records)
            finally:
                chunk.decoded_by = None
            if full:
                break
        return out, taken

    def _take_decoded(
        self,
        chunk: _Chunk,
        out: list[Any],
        size: int,
        max_bytes: int,
        taken: dict[TopicPartition, tuple[int, int]],
        max_records: int | None = None,
    ) -> tuple[int, bool]:
        """Move the longest run of decoded elements that fits ``max_bytes`` (and
        ``max_records``) into ``out``: (the new size, whether the response is full)."""
        i = chunk.pos - chunk.base
        sizes = chunk.sizes
        room = max_bytes - size
        end = len(sizes) if max_records is None else min(len(sizes), i + max_records - len(out))
        rest = sum(itertools.islice(sizes, i, end))
        if rest < room:
            n = end - i
            got = rest
        else:
            cumulative = list(itertools.accumulate(itertools.islice(sizes, i, end)))
            # Records while the total stays within max_bytes, and none past the one that
            # reaches it exactly (not even empty ones): what the one-at-a-time rule gives.
            n = min(bisect_right(cumulative, room), bisect_left(cumulative, room) + 1)
            if n == 0:
                if out:
                    return size, True  # stays buffered for the next read
                n = 1  # a record larger than max_bytes is returned alone
            got = cumulative[n - 1]
        elements = chunk.elements
        out.extend(elements if i == 0 and n == len(elements) else elements[i : i + n])
        records = chunk.records
        first = records[chunk.pos].offset
        chunk.pos += n
        self._note_taken(taken, chunk.tp, first, records[chunk.pos - 1].offset + 1)
        if chunk.pos == len(records):
            self._buffer.popleft()
        size += got
        return size, size >= max_bytes or (max_records is not None and len(out) >= max_records)

    def _take_one(
        self,
        chunk: _Chunk,
        out: list[Any],
        size: int,
        max_bytes: int,
        taken: dict[TopicPartition, tuple[int, int]],
        decode: Decode,
        max_records: int | None = None,
    ) -> tuple[int, bool]:
        """Decode one record into ``out``, as :meth:`_take_decoded` does for a run."""
        rec = chunk.records[chunk.pos]
        try:
            element, rsize = decode(rec)
        except DecodeError as exc:
            if out:
                return size, True  # return what came before; the next read reports this one
            self._advance(chunk)
            self._positions[chunk.tp] = rec.offset + 1
            raise PoisonRecord(
                f"Error deserializing key/value for partition {rec.topic}-{rec.partition} "
                f"at offset {rec.offset}: {exc}. The record was skipped; the next read "
                "continues after it."
            ) from exc
        if out and size + rsize > max_bytes:
            return size, True  # stays buffered for the next read
        self._advance(chunk)
        out.append(element)
        self._note_taken(taken, chunk.tp, rec.offset, rec.offset + 1)
        size += rsize
        return size, size >= max_bytes or (max_records is not None and len(out) >= max_records)

    def _advance(self, chunk: _Chunk) -> None:
        chunk.pos += 1
        if chunk.pos == len(chunk.records):
            self._buffer.popleft()

    @staticmethod
    def _note_taken(
        taken: dict[TopicPartition, tuple[int, int]], tp: TopicPartition, first: int, after: int
    ) -> None:
        before = taken.get(tp)
        taken[tp] = (first if before is None else before[0], after)

    def _buffered_records(self) -> Iterator[Record]:
        for chunk in self._buffer:
            yield from itertools.islice(chunk.records, chunk.pos, None)

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
        if self._lock.locked() and self._waiting >= MAX_WAITING:
            raise InstanceBusy(
                f"{self._waiting} requests are already waiting for this consumer instance; "
                "wait for their answers before sending more"
            )
        self._waiting += 1
        try:
            await self._lock.acquire()
        finally:
            self._waiting -= 1
        try:
            if self.closed:
                if self.handed_over:  # drained mid-request: the next try finds the new owner
                    raise Moving("Consumer instance is moving to another replica; retry")
                raise InstanceNotFound()
            self.touch()
            yield
            self.touch()
        finally:
            self._lock.release()

    def _drop_buffered(self, tp: TopicPartition) -> None:
        if self._buffer:
            self._buffer = collections.deque(c for c in self._buffer if c.tp != tp)

    def _forget(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:
            self._drop_buffered(tp)
            self._positions.pop(tp, None)
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
