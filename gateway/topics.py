"""Which topics REST clients may not produce to or consume from (unless an operator allows it).

- The schema registry's topic (``schema.registry.topic``, default ``_schemas``). The registry
  alone writes it, under its cluster-wide lock, after allocating the id and checking
  compatibility; a record produced by a client skips all three, and every replica replays it
  as truth. It is protected whether or not this gateway serves the built-in registry: the
  default name is the one Confluent's own registry uses, and a gateway pointed at an external
  registry usually shares that registry's cluster; a replica with the built-in registry
  switched off must not become the back door to the replicas that have it on.
- Kafka's ``__*`` topics (``__consumer_offsets``, ``__transaction_state``, ...): the brokers'
  own bookkeeping, in formats no REST client should write or needs to read.

Only producing and consuming (subscribe, assign) are refused; metadata (``GET /topics/...``)
stays open, as it exposes names and partitions, not contents. A refusal is 403 with 40301, the
code Confluent answers a Kafka authorization failure with, since to a client it is exactly
that: this proxy is not authorized to touch the topic on its behalf.

``topics.internal.allowed`` lists the protected topics clients may use after all (``*``: all),
e.g. ``__consumer_offsets`` for a monitoring tool; writing the registry's topic through the
proxy remains the operator's explicit decision.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .config import Config
from .errors import GatewayError

FORBIDDEN = 40301
ALL = "*"
KAFKA_INTERNAL_PREFIX = "__"


def is_protected(config: Config, topic: str) -> bool:
    """Protected by default, whatever ``topics.internal.allowed`` says."""
    return topic == config.schema_registry_topic or topic.startswith(KAFKA_INTERNAL_PREFIX)


def client_may_use(config: Config, topic: str) -> bool:
    allowed = config.topics_internal_allowed
    return not is_protected(config, topic) or topic in allowed or ALL in allowed


def client_topic_filter(config: Config) -> Callable[[str], bool]:
    """The predicate a topic-pattern subscription must apply to every topic it would match:
    a protected topic is simply never matched (a pattern is not a request for it)."""
    return lambda topic: client_may_use(config, topic)


def check_client_topics(config: Config, topics: Iterable[str]) -> None:
    """Raise 403/40301 naming every protected topic among ``topics``; call it before anything
    is sent or subscribed, so a refused request changes nothing."""
    refused = sorted({t for t in topics if not client_may_use(config, t)})
    if refused:
        raise GatewayError(
            403,
            FORBIDDEN,
            f"Not authorized to access topics: [{', '.join(refused)}] (reserved for the schema "
            "registry or Kafka itself; an operator may allow it with topics.internal.allowed)",
        )
