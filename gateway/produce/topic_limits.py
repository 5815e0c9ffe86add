"""How large a record batch for each topic may be: the producer's ``batch.size``, within what
the topic's ``max.message.bytes`` lets the broker take.

Concurrent requests' records share a partition's batch (``sender.py``), so a batch can grow to
``batch.size`` (64 KiB by default) from records that each fit the topic easily. Kafka refuses
a batch over the topic's ``max.message.bytes`` whole, and with aiokafka's one produce request
per broker at a time the next batch of that partition is usually on its way before the refusal
arrives, so a refused batch cannot always be sent again without reordering a request's
records. So the limit is asked once per topic (DescribeConfigs, the first time the producer
waits for the topic's partitions) and batches are made to fit it. Until it is known, or when
it cannot be asked (no DescribeConfigs permission, a timeout), a topic gets Java's default
batch size, 16 KiB, which is what every topic got before. A refusal seen later (the limit was
lowered since) puts the topic back there.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from sessions import kafka_internals

from ..kafka import KafkaClients

log = logging.getLogger(__name__)

# Java's default batch.size: for a topic whose limit is not known.
SAFE_BATCH_BYTES = 16384
# A batch's size as aiokafka counts it leaves out the log overhead the broker adds; this keeps
# a full batch clearly under the limit.
_MARGIN = 512
# Topics remembered; beyond, the oldest is forgotten (and asked again if it is produced to).
_REMEMBERED = 10_000


class TopicLimits:
    """Each topic's ``max.message.bytes`` as this replica learned it (None: not known)."""

    def __init__(self, clients: KafkaClients) -> None:
        self._clients = clients
        self._limits: dict[str, int | None] = {}
        self._asking: dict[str, asyncio.Future[None]] = {}

    def knows(self, topic: str) -> bool:
        return topic in self._limits

    def batch_bytes(self, producer: AIOKafkaProducer, topic: str) -> int:
        """The batch size for the topic's records."""
        configured = kafka_internals.batch_size(producer)
        limit = self._limits.get(topic)
        if limit is None:
            return min(configured, SAFE_BATCH_BYTES)
        return max(1, min(configured, limit - _MARGIN))

    async def learn(self, topic: str, timeout: float) -> None:  # noqa: ASYNC109 (a bound on one ask)
        """Ask the topic's ``max.message.bytes``, within ``timeout``; unknown if that fails.

        Requests that all wait for a new topic's partitions at once share one ask, rather
        than sending the broker one DescribeConfigs each; a waiter that gives up (its
        client went) does not cancel it for the others.
        """
        task = self._asking.get(topic)
        if task is None:
            task = self._asking[topic] = asyncio.ensure_future(self._ask(topic, timeout))
            task.add_done_callback(lambda _: self._asking.pop(topic, None))
        await asyncio.shield(task)

    async def _ask(self, topic: str, timeout: float) -> None:  # noqa: ASYNC109
        limit: int | None = None
        try:
            async with asyncio.timeout(timeout):
                admin = await self._clients.admin()
                responses = await admin.describe_configs(
                    [ConfigResource(ConfigResourceType.TOPIC, topic, {"max.message.bytes": None})]
                )
            limit = _max_message_bytes(responses, topic)
        except Exception as exc:  # any failure (denied, timed out) leaves the safe size
            log.debug("max.message.bytes of %s not known: %r", topic, exc)
        self._remember(topic, limit)

    def refused(self, topic: str) -> None:
        """Kafka refused a batch of the topic as too large: the limit was lowered since."""
        self._remember(topic, None)

    def _remember(self, topic: str, limit: int | None) -> None:
        self._limits.pop(topic, None)
        self._limits[topic] = limit
        if len(self._limits) > _REMEMBERED:
            del self._limits[next(iter(self._limits))]


def _max_message_bytes(responses: list[object], topic: str) -> int | None:
    for response in responses:
        for resource in response.to_object()["resources"]:  # type: ignore[attr-defined]
            if resource["error_code"] or resource["resource_name"] != topic:
                continue
            for entry in resource["config_entries"]:
                if entry["config_names"] == "max.message.bytes" and entry["config_value"]:
                    return int(entry["config_value"])
    return None
