"""Pass-through (``kafka.credentials=principal``): each caller talks to Kafka as itself.

Kafka's ACLs then decide what a caller may do, with no second rule set in the gateway to
drift from them. A Basic caller's password goes to Kafka as SASL PLAIN or SCRAM
(``kafka.principal.sasl.mechanism``), a bearer token as OAUTHBEARER. A caller without a
secret (anonymous, or mTLS, whose private key never reaches the gateway) cannot be passed
through and is answered 401 rather than served under the gateway's own identity.

Each caller gets its own producer and admin client (an aiokafka client authenticates once,
per connection), kept in a pool bounded by ``kafka.principal.clients.max`` and closed after
``kafka.principal.clients.idle.ms`` unused. A request holds its caller's clients until it
ends, so eviction only ever closes clients no request is using.

Consumer instances are built with the credentials of the request that creates (or adopts)
them: the middleware puts them in :data:`CREDENTIALS`, a context variable the instance
factory reads, so they never enter the instance spec the directory stores in Redis. An
instance orphaned by a crashed replica is adopted on its creator's next request, which
carries the credentials again.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from . import kafka_security
from .config import Config, ConfigError
from .context import KAFKA, PRODUCER
from .errors import GatewayError, kafka_unavailable
from .kafka import KafkaClients
from .produce.sender import ProducerGate
from .security.principal import Principal, principal_of

log = logging.getLogger(__name__)

# The current request's Kafka credentials in pass-through mode (None: none to pass).
CREDENTIALS: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "kafka_credentials", default=None
)


@dataclass(eq=False)
class _Entry:
    clients: KafkaClients
    gate: ProducerGate
    token: kafka_security.StaticToken | None
    users: int = 0
    last_used: float = field(default_factory=time.monotonic)


class PrincipalKafka:
    """The per-caller Kafka clients of this replica. Explicit ``start()`` / ``stop()``."""

    def __init__(self, config: Config) -> None:
        protocol = kafka_security.security_kwargs(config.admin_settings(), source="admin").get(
            "security_protocol", "PLAINTEXT"
        )
        if not str(protocol).startswith("SASL_"):
            raise ConfigError(
                "kafka.credentials: principal needs client.security.protocol SASL_PLAINTEXT "
                "or SASL_SSL (callers' credentials go to Kafka over SASL)"
            )
        self._config = config
        self._protocol = str(protocol)
        self._mechanism = config.kafka_principal_sasl_mechanism
        self._max = config.kafka_principal_clients_max
        self._idle = config.kafka_principal_clients_idle_ms / 1000
        self._entries: dict[tuple[str, str, str], _Entry] = {}  # in LRU order
        self._closing: set[asyncio.Task[None]] = set()
        self._reaper: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._entries)

    async def start(self) -> None:
        self._reaper = asyncio.create_task(self._reap_loop())

    async def stop(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        entries = list(self._entries.values())
        self._entries.clear()
        for entry in entries:
            self._close(entry)
        if self._closing:
            await asyncio.wait(set(self._closing))

    def credentials(self, principal: Principal) -> dict[str, Any]:
        """aiokafka arguments that authenticate as ``principal``; 401 if it has no secret."""
        if principal.secret is None or principal.method not in ("basic", "bearer"):
            raise GatewayError(
                401,
                40101,
                "Kafka pass-through (kafka.credentials=principal) needs a caller "
                "authenticated with Basic or Bearer credentials.",
            )
        return kafka_security.principal_kwargs(
            principal.method,
            principal.name,
            principal.secret,
            protocol=self._protocol,
            mechanism=self._mechanism,
        )

    def acquire(self, principal: Principal) -> _Entry:
        """The caller's clients, held until :meth:`release`; created on first use."""
        creds = self.credentials(principal)
        # A changed password is another identity to Kafka: never reuse clients across it.
        # A bearer token is renewed in place (aiokafka asks for one at every connection).
        digest = "" if principal.method == "bearer" else _digest(principal.secret or "")
        key = (principal.method, principal.name, digest)
        entry = self._entries.pop(key, None)
        if entry is None:
            self._make_room()
            token = creds.get("sasl_oauth_token_provider")
            clients = KafkaClients(self._config, creds)
            entry = _Entry(clients, ProducerGate(clients), token)
        elif entry.token is not None and principal.secret is not None:
            entry.token.value = principal.secret
        self._entries[key] = entry  # most recently used last
        entry.users += 1
        entry.last_used = time.monotonic()
        return entry

    def release(self, entry: _Entry) -> None:
        entry.users -= 1
        entry.last_used = time.monotonic()

    def _make_room(self) -> None:
        if len(self._entries) < self._max:
            return
        for key, entry in self._entries.items():  # least recently used first
            if entry.users == 0:
                del self._entries[key]
                self._close(entry)
                return
        raise kafka_unavailable(
            f"{self._max} callers are using Kafka through this replica at once "
            "(kafka.principal.clients.max); retry"
        )

    def _close(self, entry: _Entry) -> None:
        task = asyncio.ensure_future(entry.clients.stop())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def expire(self, now: float | None = None) -> int:
        """Close the clients of callers idle for ``kafka.principal.clients.idle.ms``."""
        now = time.monotonic() if now is None else now
        stale = [
            k for k, e in self._entries.items() if e.users == 0 and now - e.last_used >= self._idle
        ]
        for key in stale:
            self._close(self._entries.pop(key))
        return len(stale)

    async def _reap_loop(self) -> None:
        while True:
            await asyncio.sleep(min(self._idle / 2, 30.0))
            self.expire()


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


POOL = web.AppKey("principal_kafka", PrincipalKafka)
_LEASE: web.RequestKey[_Entry] = web.RequestKey("principal_kafka_lease", _Entry)


@web.middleware
async def pass_through_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Makes the caller's credentials available to this request's Kafka work, and holds its
    clients (once used) until the response is done. Runs after authentication."""
    pool = request.app[POOL]
    principal = principal_of(request)
    token = CREDENTIALS.set(pool.credentials(principal) if principal.secret is not None else None)
    try:
        return await handler(request)
    finally:
        CREDENTIALS.reset(token)
        entry = request.get(_LEASE)
        if entry is not None:
            pool.release(entry)


def _entry(request: web.Request) -> _Entry | None:
    pool = request.app.get(POOL)
    if pool is None:
        return None
    entry = request.get(_LEASE)
    if entry is None:
        entry = request[_LEASE] = pool.acquire(principal_of(request))
    return entry


def kafka_of(request: web.Request) -> KafkaClients:
    """The Kafka clients this request must use: the caller's in pass-through mode."""
    entry = _entry(request)
    return request.app[KAFKA] if entry is None else entry.clients


def producer_of(request: web.Request) -> ProducerGate:
    """The producer gate this request must use: the caller's in pass-through mode."""
    entry = _entry(request)
    return request.app[PRODUCER] if entry is None else entry.gate


def consumer_credentials(config: Config) -> Mapping[str, Any]:
    """Credentials for a consumer instance being built now (empty in gateway mode)."""
    if config.kafka_credentials != "principal":
        return {}
    creds = CREDENTIALS.get()
    if creds is None:
        raise GatewayError(
            401,
            40101,
            "Kafka pass-through (kafka.credentials=principal): this consumer instance can "
            "only be created or taken over on a request of its authenticated creator.",
        )
    return creds
