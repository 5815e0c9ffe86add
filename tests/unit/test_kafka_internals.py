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
