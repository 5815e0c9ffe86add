"""Kafka client failures as v3 answers them, and one deadline for a request's Kafka work.

The table is Confluent's (rest-utils' KafkaExceptionMapper, reference 3.2): a client mistake
Kafka reports (topic exists, bad config, too few brokers) is 400/40002, a missing topic 404/40403,
authorisation 403/40301. Where Confluent answers 500 for what is only Kafka being unreachable
or slow, this answers 503/50003 with Retry-After: the client should simply try again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web
from aiokafka import errors as ke

from ..context import CONFIG
from ..errors import GatewayError, describe, kafka_error_code, kafka_unavailable

# Kafka's verdicts on what the request asked for (a client mistake): 400 / 40002.
_CLIENT_MISTAKES = (
    ke.TopicAlreadyExistsError,
    ke.InvalidReplicationFactorError,
    ke.InvalidPartitionsError,
    ke.InvalidConfigurationError,
    ke.InvalidRequestError,
    ke.PolicyViolationError,
    ke.InvalidTopicError,
    ke.InvalidReplicationAssignmentError,
    ke.UnsupportedVersionError,
    ke.SecurityDisabled,
    # Kafka's UNKNOWN_SERVER_ERROR, which Confluent maps to 400 as well: what a broker answers
    # e.g. a partition increase that would write more than its admin-record limit.
    ke.UnknownError,
)
# Kafka error codes with no aiokafka class of their own that are client mistakes as well.
TOPIC_DELETION_DISABLED = 73


def v3_failure(exc: BaseException) -> GatewayError:
    """The status, code and message a Kafka client exception is answered with."""
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, ke.UnknownTopicOrPartitionError):
        return GatewayError(
            404, 40403, _message(exc, "This server does not host this topic-partition.")
        )
    if isinstance(exc, _CLIENT_MISTAKES) or getattr(exc, "errno", None) == TOPIC_DELETION_DISABLED:
        return GatewayError(400, 40002, _message(exc, type(exc).__name__))
    if isinstance(exc, ke.BrokerNotAvailableError):
        return GatewayError(503, 50302, describe(exc), retry_after=1)
    code = kafka_error_code(exc)
    if code in (40101, 40301):
        return GatewayError(code // 100, code, describe(exc))
    if code == 50003:
        return kafka_unavailable(describe(exc))
    return GatewayError(500, 50002, describe(exc))


def _message(exc: BaseException, default: str) -> str:
    # aiokafka's str() of an error built from a Kafka answer is "[Error N] Name: text";
    # the client wants Kafka's text, as Confluent shows it.
    text = str(exc.args[0]) if exc.args and exc.args[0] else ""
    return text or getattr(exc, "description", "") or default


@asynccontextmanager
async def kafka_deadline(request: web.Request) -> AsyncIterator[None]:
    """One bound (``kafka.timeout.ms``) for all Kafka work of a request; failures mapped."""
    timeout_ms = request.app[CONFIG].kafka_timeout_ms
    try:
        async with asyncio.timeout(timeout_ms / 1000):
            yield
    except TimeoutError:
        raise kafka_unavailable(f"no answer from Kafka within {timeout_ms} ms") from None
    except ke.KafkaError as exc:
        raise v3_failure(exc) from exc
