"""The process-wide Kafka clients (one producer, one admin) and Java-setting translation.

The clients start lazily and restart after failures, so the gateway comes up while Kafka is
down and heals by itself when it returns; every start is bounded by ``kafka.timeout.ms``.
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

from . import kafka_security
from .config import Config
from .errors import describe, kafka_unavailable

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
        self._producer_kwargs = kafka_kwargs(
            config.producer_settings(), AIOKafkaProducer, source="producer"
        ) | dict(credentials or {})
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
                kwargs = {
                    "acks": "all",
                    "enable_idempotence": False,
                    "linger_ms": 0,
                    "request_timeout_ms": max(self.config.kafka_timeout_ms, 1000),
                    **self._producer_kwargs,
                }
                p = AIOKafkaProducer(bootstrap_servers=self.config.bootstrap_servers, **kwargs)
                await self._start(p.start(), p.stop, kwargs)
                self._producer = p
        return self._producer

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
