"""aiokafka's private attributes the gateway relies on are still where it reads them.

Every accessor in ``sessions.kafka_internals`` is called here on real aiokafka objects (no
broker needed: none of them does I/O before ``start()``). After an aiokafka upgrade that moves
one, this fails with an ``AttributeError`` naming it, instead of the gateway quietly behaving
differently.
"""

from __future__ import annotations

import inspect

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError
from aiokafka.record.memory_records import MemoryRecords

from sessions import kafka_internals as internals

NOWHERE = "127.0.0.1:9"  # never contacted: nothing here starts a client


async def test_consumer_subscription_kind() -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=NOWHERE)
    assert internals.subscription_type(consumer) is internals.SubscriptionType.NONE
    assert internals.auto_assigned(consumer) is False
    consumer.assign([TopicPartition("t", 0)])
    assert internals.subscription_type(consumer) is internals.SubscriptionType.USER_ASSIGNED
    assert internals.auto_assigned(consumer) is False
    consumer.unsubscribe()
    consumer.subscribe(topics=["t"])
    assert internals.subscription_type(consumer) is internals.SubscriptionType.AUTO_TOPICS
    assert internals.auto_assigned(consumer) is True


async def test_consumer_subscribes_with_a_compiled_re2_pattern() -> None:
    from sessions.instance import compile_pattern

    consumer = AIOKafkaConsumer(bootstrap_servers=NOWHERE)
    internals.subscribe_pattern(consumer, compile_pattern(r"orders-\d+"), None)
    assert internals.subscription_type(consumer) is internals.SubscriptionType.AUTO_PATTERN
    assert internals.auto_assigned(consumer) is True
    matcher = consumer._subscription.subscribed_pattern  # what aiokafka's coordinator calls
    assert matcher.match("orders-12") and not matcher.match("payments")


async def test_consumer_fetcher_liveness_is_readable() -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=NOWHERE)
    assert internals.fetcher_dead(consumer) is False  # not started: no fetcher yet
    assert hasattr(consumer, "_fetcher") and hasattr(consumer, "_closed")
    from aiokafka.consumer.fetcher import Fetcher

    assert "_fetch_task" in inspect.getsource(Fetcher.__init__)


async def test_consumer_committed_with_metadata_uses_the_coordinator() -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=NOWHERE)
    assert hasattr(consumer, "_coordinator")  # set to a GroupCoordinator by start()
    params = inspect.signature(GroupCoordinator.fetch_committed_offsets).parameters
    assert list(params) == ["self", "partitions"]


async def test_consumer_fetcher_timeout_is_read_and_set_on_the_started_fetcher() -> None:
    from aiokafka.consumer.fetcher import Fetcher

    consumer = AIOKafkaConsumer(bootstrap_servers=NOWHERE)
    assert internals.fetcher_timeout(consumer) is None  # no fetcher before start()
    internals.set_fetcher_timeout(consumer, 5.0)  # and setting it then is a no-op
    # start() needs a broker: check the attribute the accessors use on a Fetcher itself.
    params = inspect.signature(Fetcher.__init__).parameters
    assert params["fetcher_timeout"].default == 0.2
    fetcher = object.__new__(Fetcher)
    fetcher._fetcher_timeout = 0.2
    consumer._fetcher = fetcher
    assert internals.fetcher_timeout(consumer) == 0.2
    internals.set_fetcher_timeout(consumer, 5.0)
    assert internals.fetcher_timeout(consumer) == 5.0
    assert "self._fetcher_timeout" in inspect.getsource(Fetcher._get_actions_per_node)


def _batch(records: list[tuple[int, bytes | None, bytes | None, list[tuple[str, bytes]]]]) -> bytes:
    from aiokafka.record.default_records import DefaultRecordBatchBuilder

    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    for offset, key, value, headers in records:
        builder.append(
            offset, timestamp=1_700_000_000_000 + offset, key=key, value=value, headers=headers
        )
    return bytes(builder.build())


async def test_lean_records_unpack_the_same_fields_as_consumer_records() -> None:
    """What the hook changes, on aiokafka's own unpacking classes: the fetcher's table puts a
    per-record hook on every partition's records, and iterating them gives LeanRecord tuples
    with the values ConsumerRecord would have had, skipping what aiokafka skips (the records
    below the fetch offset)."""
    from aiokafka.consumer.fetcher import FetchResult, PartitionRecords
    from aiokafka.record.memory_records import MemoryRecords

    from sessions.fetched import LeanRecord

    tp = TopicPartition("orders", 3)
    data = _batch(
        [
            (0, None, b"skipped", []),
            (1, b"k", b"v", [("h", b"1"), ("h2", b"")]),
            (2, None, None, []),
            (3, b"", b"", []),
        ]
    )

    def fetched() -> FetchResult:
        records = PartitionRecords(tp, MemoryRecords(data), [], 1, None, None, True, 0)
        return FetchResult(tp, assignment=None, partition_records=records, backoff=0)

    table = internals._LeanResults()
    table[tp] = lean = fetched()
    plain = fetched()
    got = list(lean._partition_records)
    want = list(plain._partition_records)
    assert [type(r) for r in got] == [LeanRecord] * 3

    def values(r: object) -> tuple[object, ...]:
        return tuple(
            tuple(getattr(r, f)) if f == "headers" else getattr(r, f) for f in LeanRecord._fields
        )

    assert [values(r) for r in got] == [values(r) for r in want]
    assert [r.offset for r in got] == [1, 2, 3]
    assert (
        lean._partition_records.next_fetch_offset == plain._partition_records.next_fetch_offset == 4
    )


async def test_lean_records_needs_a_started_consumer_without_deserializers() -> None:
    from aiokafka.consumer.fetcher import Fetcher

    consumer = AIOKafkaConsumer(bootstrap_servers=NOWHERE)
    with pytest.raises(RuntimeError):
        internals.lean_records(consumer)  # no fetcher before start()
    fetcher = object.__new__(Fetcher)
    fetcher._key_deserializer = fetcher._value_deserializer = None
    fetcher._records = {}
    consumer._fetcher = fetcher
    internals.lean_records(consumer)
    assert type(fetcher._records) is internals._LeanResults
    fetcher._value_deserializer = bytes.decode
    with pytest.raises(ValueError):
        internals.lean_records(consumer)
    # The table is the fetcher's own, made in __init__ and never replaced.
    assert "self._records = collections.OrderedDict()" in inspect.getsource(Fetcher.__init__)
    source = inspect.getsource(Fetcher)
    assert source.count("self._records = ") == 1


async def test_wait_for_fetch_waits_on_the_fetchers_waiters_and_cleans_up() -> None:
    import asyncio

    from aiokafka.consumer.fetcher import Fetcher

    consumer = AIOKafkaConsumer(bootstrap_servers=NOWHERE)
    assert await internals.wait_for_fetch(consumer, 5.0) is False  # not started: no wait
    fetcher = object.__new__(Fetcher)
    fetcher._loop = asyncio.get_running_loop()
    fetcher._fetch_waiters = set()
    consumer._fetcher = fetcher
    consumer._closed = False
    # New records: aiokafka's fetch routine resolves every waiter.
    waiting = asyncio.create_task(internals.wait_for_fetch(consumer, 5.0))
    await asyncio.sleep(0)
    assert len(fetcher._fetch_waiters) == 1
    for waiter in fetcher._fetch_waiters:
        fetcher._notify(waiter)
    assert await asyncio.wait_for(waiting, 1.0) is True
    assert fetcher._fetch_waiters == set()
    # Nothing comes: the bound ends the wait, and the waiter does not stay behind.
    assert await internals.wait_for_fetch(consumer, 0.01) is False
    await asyncio.sleep(0)  # a cancelled future's callbacks run on the next turn
    assert fetcher._fetch_waiters == set()
    consumer._closed = True
    assert await internals.wait_for_fetch(consumer, 5.0) is False
    assert "for waiter in self._fetch_waiters:" in inspect.getsource(Fetcher)


async def test_producer_limits_and_partitioner() -> None:
    producer = AIOKafkaProducer(bootstrap_servers=NOWHERE, max_request_size=2048)
    try:
        assert internals.max_request_size(producer) == 2048
        assert internals.batch_size(producer) == 16384
        assert internals.request_timeout_ms(producer) == 40000
        choose = internals.partitioner(producer)
        assert choose(b"alice", [0, 1, 2], [0, 1, 2]) in (0, 1, 2)
        internals.check_record_size(producer, b"k", b"v")  # fits: no exception
        with pytest.raises(MessageSizeTooLargeError):
            internals.check_record_size(producer, None, b"x" * 4096)
    finally:
        await producer.stop()


async def test_producer_forgets_a_topic_the_cluster_does_not_know() -> None:
    producer = AIOKafkaProducer(bootstrap_servers=NOWHERE)
    try:
        producer.client.set_topics(["missing", "other"])  # as partitions_for() adds them
        assert internals.metadata_topics(producer) == {"missing", "other"}
        assert internals.forget_missing_topic(producer, "missing") is True
        assert internals.metadata_topics(producer) == {"other"}
        assert internals.forget_missing_topic(producer, "missing") is False  # already gone
    finally:
        await producer.stop()


async def test_producer_appends_a_run_of_records_to_the_open_batch() -> None:
    producer = AIOKafkaProducer(bootstrap_servers=NOWHERE, max_batch_size=1024)
    tp = TopicPartition("t", 0)
    records = [(None, b"v%d" % i, 1_700_000_000_000 + i, []) for i in range(3)]
    n, first_run = internals.append_to_open_batch(producer, tp, records)
    assert n == 3
    # A second run shares the batch aiokafka has open (as send() would).
    n, second_run = internals.append_to_open_batch(producer, tp, records[:1])
    assert n == 1
    [batch] = producer._message_accumulator._batches[tp]
    assert batch.record_count == 4
    # Fill it: a run that does not fit is cut where the batch is full, then none fits.
    big = [(None, b"x" * 100, None, [])] * 50
    n, _ = internals.append_to_open_batch(producer, tp, big)
    assert 0 < n < 50
    with pytest.raises(internals.BatchFull):
        internals.append_to_open_batch(producer, tp, big)
    # The acknowledgement resolves each run's future with its first record's offset.
    batch.done(base_offset=100, timestamp=-1)
    assert (first_run.result().offset, second_run.result().offset) == (100, 103)
    assert first_run.result().timestamp == 1_700_000_000_000


async def test_append_records_fills_a_batch_builder_as_its_own_append_would() -> None:
    producer = AIOKafkaProducer(bootstrap_servers=NOWHERE, max_batch_size=1024)
    builder = producer.create_batch()
    assert builder.append(timestamp=None, key=None, value=b"first") is not None
    values = [b"v%03d" % i + b"x" * 96 for i in range(20)]
    keys: list[bytes | None] = [None] * 20
    stamps = [1_700_000_000_000 + i for i in range(20)]
    # From record 2 on, until the 1024-byte batch is full: then it is closed, as append() does.
    n = internals.append_records(builder, keys, values, stamps, 2)
    assert 0 < n < 18
    assert builder.append(timestamp=None, key=None, value=b"late") is None
    assert internals.append_records(builder, keys, values, stamps, 2 + n) == 0
    batch = MemoryRecords(bytes(builder._build())).next_batch()
    records = list(batch)
    assert [r.offset for r in records] == list(range(n + 1))  # offsets follow the first append
    assert [r.value for r in records] == [b"first", *values[2 : 2 + n]]
    assert [r.timestamp for r in records[1:]] == stamps[2 : 2 + n]
    assert all(r.key is None and r.headers == [] for r in records)


async def test_append_records_takes_aiokafkas_path_for_a_builder_with_serialisers() -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=NOWHERE, value_serializer=lambda v: v.upper(), max_batch_size=1024
    )
    builder = producer.create_batch()
    assert internals.append_records(builder, [None, None], [b"a", b"b"], None, 0) == 2
    batch = MemoryRecords(bytes(builder._build())).next_batch()
    assert [r.value for r in batch] == [b"A", b"B"]


async def test_batch_builder_of_a_chosen_size() -> None:
    producer = AIOKafkaProducer(bootstrap_servers=NOWHERE, max_batch_size=65536)
    small = internals.batch_builder(producer, 1024)
    values = [b"x" * 300] * 10
    assert internals.append_records(small, [None] * 10, values, None, 0) == 3  # about 1 KB
    big = internals.batch_builder(producer, 1024)
    assert internals.append_records(big, [None], [b"y" * 5000], None, 0) == 1  # alone, whole
    assert internals.append_records(big, [None], [b"z"], None, 0) == 0
    assert [r.value for r in MemoryRecords(bytes(big._build())).next_batch()] == [b"y" * 5000]


async def test_admin_raw_request_method_exists() -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=NOWHERE)
    try:
        assert inspect.iscoroutinefunction(admin._send_request)
        # ListOffsets goes to a partition's leader: the node is the second parameter.
        assert list(inspect.signature(admin._send_request).parameters)[1] == "node_id"
        assert internals.admin_request.__module__ == "sessions.kafka_internals"
    finally:
        await admin.close()


async def test_ping_brokers_reaches_for_a_connection_per_broker() -> None:
    """No broker here: every connection attempt fails, so the ping raises, having asked the
    client's private connection getter (which a rename would turn into AttributeError)."""
    producer = AIOKafkaProducer(bootstrap_servers=NOWHERE)
    try:
        assert inspect.iscoroutinefunction(producer.client._get_conn)
        with pytest.raises(KafkaConnectionError):
            await internals.ping_brokers(producer.client)
    finally:
        await producer.stop()


def test_no_other_module_reads_aiokafka_private_attributes() -> None:
    """The adapter is the only door: grep the code for the private names it wraps."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    private = (
        "._subscription",
        "._coordinator",
        "._partitioner",
        "._max_request_size",
        "._message_accumulator",
        "._request_timeout_ms",
        "._serialize(",
        "._send_request(",
        "._get_conn(",
        "client._topics",
        "consumer._fetcher",
        "._partition_records",
        "._consumer_record",
    )
    offenders = [
        f"{path.relative_to(root)}: {name}"
        for package in ("gateway", "sessions")
        for path in (root / package).rglob("*.py")
        if path.name != "kafka_internals.py"
        for name in private
        if name in path.read_text()
    ]
    assert offenders == []
