"""The process-wide Kafka clients (one producer, one admin) and Java-setting translation.

The clients start lazily and restart after failures, so the gateway comes up while Kafka is
down and heals by itself when it returns; every start is bounded by ``kafka.timeout.ms``.

The producer writes with ``acks=all`` and, by default, idempotently (see
:func:`producer_options` for what that takes and what it changes).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    IncompatibleBrokerVersion,
    UnsupportedVersionError,
)

from sessions.kafka_internals import keep_sequences_dense

from . import kafka_security
from .config import Config
from .errors import GatewayError, describe, kafka_unavailable

log = logging.getLogger(__name__)

# Java client keys whose aiokafka name is not simply dots -> underscores.
_RENAMES = {
    "max.in.flight.requests.per.connection": None,  # aiokafka pipelines per connection itself
    "batch.size": "max_batch_size",
}


def kafka_kwargs(settings: Mapping[str, str], cls: type, *, source: str) -> dict[str, Any]:
    """Translate Java-style client settings (``linger.ms``) into ``cls`` keyword arguments.

    A setting aiokafka has no equivalent for is logged and dropped rather than failing
    start-up: migrated Confluent files carry many JVM-only keys. Security settings
    (``security.protocol``, ``sasl.*``, ``ssl.*`` files) are built by
    :mod:`gateway.kafka_security`, so every client made through here authenticates alike.
    """
    params = inspect.signature(cls).parameters
    out: dict[str, Any] = kafka_security.security_kwargs(settings, source=source)
    for key, raw in settings.items():
        if key in kafka_security.KEYS:
            continue
        name = _RENAMES.get(key, key.replace(".", "_").replace("-", "_"))
        if name is None or name not in params or name in ("loop", "bootstrap_servers"):
            log.warning("%s setting %r has no aiokafka equivalent; ignored", source, key)
            continue
        default = params[name].default
        out[name] = _coerce(raw, default, f"{source}.{key}")
    return out


def _coerce(raw: str, default: Any, key: str) -> Any:
    from .config import ConfigError

    text = str(raw).strip()
    try:
        if isinstance(default, bool):
            if text.lower() not in ("true", "false"):
                raise ValueError(text)
            return text.lower() == "true"
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
        if default is None and re.fullmatch(r"-?\d+", text):
            return int(text)  # e.g. max.poll.records: optional ints default to None
    except ValueError:
        raise ConfigError(f"{key}: {raw!r} is not a valid value") from None
    return text


# The producer's batch.size unless producer.batch.size says otherwise: four times Java's 16 KiB.
# aiokafka sends one produce request per broker at a time and at most one batch per partition
# in it, so a batch is all a partition moves per round trip. Concurrent requests' records
# share the partition's open batch (gateway/produce/sender.py), and with 16 KiB a batch could
# not hold two 100-record requests: 64 KiB moved 1.2x the records per second for 100-record
# requests and 1.5x for 500-record ones (BENCHMARKS.md, 2026-12-03 morning). A batch larger
# than a topic's max.message.bytes is sent again in 16 KiB batches (sender.py).
DEFAULT_BATCH_SIZE = 65536

# Why a broker may refuse InitProducerId: it predates idempotence (Kafka < 0.11), or the
# principal may neither IdempotentWrite the cluster nor Write any topic (KIP-679).
_IDEMPOTENCE_REFUSED = (
    ClusterAuthorizationFailedError,
    UnsupportedVersionError,
    IncompatibleBrokerVersion,
)


def producer_options(config: Config, settings: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """The producer's keyword arguments, and whether a refused idempotence may be dropped.

    ``settings`` are the translated ``producer.*``/``client.*`` settings (and credentials).

    **What idempotence is for.** A produce request whose answer is lost (the leader was killed
    after appending, a connection dropped) is retried by aiokafka; without idempotence the
    retry appends the batch a second time. With it the producer owns a producer id and numbers
    every batch per partition, the broker keeps the last numbers with the log (replicated, so
    a new leader knows them too) and acknowledges a retried batch without appending it again.

    **What aiokafka requires with it**: ``acks=all`` (anything else is a ``ValueError`` at
    construction, hence the check below, as Java's producer does: ``auto`` quietly gives
    idempotence up for ``producer.acks=0/1``, ``true`` refuses to start), and one
    ``InitProducerId`` round trip before the first send (inside ``start()``, bounded like
    the rest of it by ``kafka.timeout.ms``). Only ``auto`` falls back to a plain producer when
    the brokers refuse that request (see ``_IDEMPOTENCE_REFUSED``); ``true`` then answers 503.
    aiokafka never has more than one batch per partition in flight, so Kafka's limit of five
    is met without ``max.in.flight.requests.per.connection``.

    **What it changes for the gateway's batch path** (``gateway/produce/sender.py`` hands whole
    ``BatchBuilder`` batches to ``send_batch``): nothing the gateway must do. Such a batch is
    built with a placeholder producer id; aiokafka's accumulator stamps the producer id, epoch
    and the partition's next base sequence into every batch when the sender first drains it
    (``MessageAccumulator._pop_batch``), whether it came from ``send()`` or ``send_batch()``,
    and a retried batch keeps its numbers. Two behaviours do change:

    * a batch is no longer failed once older than the request timeout while retriable errors
      last (aiokafka retries an idempotent batch until it is written): the gateway still
      answers within its own bound (50003 for records not acknowledged in time), and such a
      record may be written later, but once only;
    * aiokafka (0.14) does not renumber after a batch the broker *rejected* (an invalid
      record, e.g. a keyless record on a compacted topic, a timestamp outside the topic's
      range, a record too large for the topic): its sequence numbers stay used, and every
      later batch of this producer to that partition failed with OUT_OF_ORDER_SEQUENCE_NUMBER
      until the replica restarted (``tests/integration/test_idempotence.py`` shows it). Java's
      producer repairs this; here ``sessions.kafka_internals.keep_sequences_dense`` does.
    """
    kwargs: dict[str, Any] = {
        "linger_ms": 0,
        "max_batch_size": DEFAULT_BATCH_SIZE,
        "request_timeout_ms": max(config.kafka_timeout_ms, 1000),
        **settings,
    }
    kwargs["acks"] = acks = _acks(kwargs.get("acks", "all"))
    wanted = config.producer_enable_idempotence
    if wanted == "true" and acks != "all":
        from .config import ConfigError

        raise ConfigError(
            f"producer.enable.idempotence: true needs producer.acks=all, not {acks!r}"
        )
    kwargs["enable_idempotence"] = idempotent = wanted != "false" and acks == "all"
    return kwargs, idempotent and wanted == "auto"


def _acks(raw: Any) -> Any:
    """Java's ``acks`` values (``all``, ``-1``, ``0``, ``1``) as aiokafka takes them."""
    text = str(raw).strip().lower()
    if text in ("all", "-1"):
        return "all"
    if text in ("0", "1"):
        return int(text)
    from .config import ConfigError

    raise ConfigError(f"producer.acks: {raw!r} is not one of all, -1, 0, 1")


class KafkaClients:
    """Owns the shared producer and admin client; explicit ``start()`` / ``stop()``."""

    def __init__(self, config: Config, credentials: Mapping[str, Any] | None = None) -> None:
        """``credentials`` (aiokafka SASL arguments) replace the configured identity: the
        clients of one pass-through caller (see :mod:`gateway.kafka_pool`)."""
        self.config = config
        self._producer: AIOKafkaProducer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._lock = asyncio.Lock()
        self._stopped = False
        self._timeout = config.kafka_timeout_ms / 1000
        self._producer_kwargs, self._may_drop_idempotence = producer_options(
            config,
            kafka_kwargs(config.producer_settings(), AIOKafkaProducer, source="producer")
            | dict(credentials or {}),
        )
        self._admin_kwargs = kafka_kwargs(
            config.admin_settings(), AIOKafkaAdminClient, source="admin"
        ) | dict(credentials or {})

    async def start(self) -> None:
        """Connect eagerly when Kafka is up; a down Kafka is retried on first use."""
        try:
            await self.producer()
            await self.admin()
        except Exception as exc:  # start anyway: the gateway must heal when Kafka returns
            log.warning("Kafka not reachable at start-up (%s); will retry on demand", exc)

    async def stop(self) -> None:
        """Close both clients; nothing is re-created after this (requests get a 503)."""
        self._stopped = True
        producer, admin = self._producer, self._admin
        self._producer = self._admin = None
        if producer is not None:
            await _bounded(producer.stop(), self._timeout)
        if admin is not None:
            await _bounded(admin.close(), self._timeout)

    async def producer(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        async with self._lock:
            self._check_running()
            if self._producer is None:
                try:
                    self._producer = await self._start_producer(self._producer_kwargs)
                except GatewayError as exc:
                    if not (
                        self._may_drop_idempotence
                        and isinstance(exc.__cause__, _IDEMPOTENCE_REFUSED)
                    ):
                        raise
                    log.warning(
                        "Kafka refused an idempotent producer (%s); producing without"
                        " idempotence (set producer.enable.idempotence=false to skip the try)",
                        describe(exc.__cause__),
                    )
                    self._producer_kwargs["enable_idempotence"] = False
                    self._may_drop_idempotence = False
                    self._producer = await self._start_producer(self._producer_kwargs)
        return self._producer

    async def _start_producer(self, kwargs: Mapping[str, Any]) -> AIOKafkaProducer:
        p = AIOKafkaProducer(bootstrap_servers=self.config.bootstrap_servers, **kwargs)
        keep_sequences_dense(p)
        await self._start(p.start(), p.stop, kwargs)
        return p

    async def admin(self) -> AIOKafkaAdminClient:
        if self._admin is not None:
            return self._admin
        async with self._lock:
            self._check_running()
            if self._admin is None:
                kwargs = {"request_timeout_ms": self.config.kafka_timeout_ms, **self._admin_kwargs}
                a = AIOKafkaAdminClient(bootstrap_servers=self.config.bootstrap_servers, **kwargs)
                await self._start(a.start(), a.close, kwargs)
                self._admin = a
        return self._admin

    def _check_running(self) -> None:
        if self._stopped:
            raise kafka_unavailable("this replica is shutting down")

    async def _start(self, starting: Any, cleanup: Any, kwargs: Mapping[str, Any]) -> None:
        try:
            await asyncio.wait_for(starting, self._timeout)
        except (TimeoutError, Exception) as exc:
            await _bounded(cleanup(), self._timeout)
            detail = "timed out" if isinstance(exc, asyncio.TimeoutError) else describe(exc)
            refused = await kafka_security.refused_credentials(
                self.config.bootstrap_servers, kwargs, self._timeout
            )
            if refused is not None:
                raise kafka_unavailable(refused) from exc
            raise kafka_unavailable(
                f"cannot connect to {self.config.bootstrap_servers} ({detail})"
            ) from exc


async def _bounded(coro: Any, limit: float) -> None:
    try:
        await asyncio.wait_for(coro, limit)
    except Exception as exc:
        log.warning("Kafka client shutdown did not complete cleanly: %s", exc)
