"""Confluent error codes, the HTTP layer's exception, and the one map from domain errors.

Clients of a v2 proxy branch on ``error_code`` (not only on the HTTP status), so every failure
leaves the process as ``{"error_code": int, "message": str}``. Handlers raise
:class:`GatewayError`; the layers below speak their own language (``sessions.errors``, the
formats' ``DataError`` / ``PayloadError``) and :func:`to_gateway_error` is the only place that
turns those into a status and a Confluent code. The middleware in :mod:`gateway.app` renders
both.
"""

from __future__ import annotations

import orjson
from aiohttp import web
from aiokafka import errors as kafka_errors

from sessions import errors as session_errors

from .formats.codec import DataError, PayloadError, json_text

# Canonical messages that v2 clients and Confluent's own tests match on.
FORMAT_MISMATCH = (
    "The requested embedded data format does not match the deserializer for this consumer instance"
)
TOPIC_NOT_FOUND = "Topic not found."
PARTITION_NOT_FOUND = "Partition not found."

JSON = "application/json"


class GatewayError(Exception):
    """A failure with a Confluent ``error_code`` and the HTTP status it is sent with.

    ``retry_after`` (seconds) marks failures a client should simply retry: it becomes a
    ``Retry-After`` header, which generic HTTP clients and load balancers understand.
    """

    def __init__(
        self,
        status: int,
        error_code: int,
        message: str,
        *,
        retry_after: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message
        self.retry_after = retry_after
        self.headers = headers or {}  # e.g. WWW-Authenticate on a 401

    def __repr__(self) -> str:
        return f"GatewayError({self.status}, {self.error_code}, {self.message!r})"


def error_body(error_code: int, message: str) -> bytes:
    return orjson.dumps({"error_code": error_code, "message": message})


def error_response(
    exc: GatewayError, content_type: str = JSON, headers: dict[str, str] | None = None
) -> web.Response:
    """Render ``exc``; ``content_type`` is the negotiated type when a route was matched."""
    hdrs = {**exc.headers, **(headers or {})}
    if exc.retry_after is not None:
        hdrs["Retry-After"] = str(exc.retry_after)
    return web.Response(
        status=exc.status,
        body=error_body(exc.error_code, exc.message),
        content_type=content_type,
        headers=hdrs,
    )


# --- constructors for the errors raised in more than one place -----------------------------


def unprocessable(message: str, error_code: int = 422) -> GatewayError:
    return GatewayError(422, error_code, message)


def bad_request(message: str) -> GatewayError:
    return GatewayError(400, 400, message)


def unrecognized_field(name: str) -> GatewayError:
    return GatewayError(422, 422, f"Unrecognized field: {name}")


def illegal_state(detail: str) -> GatewayError:
    return GatewayError(409, 40903, f"Illegal state: {detail}")


def topic_not_found(message: str = TOPIC_NOT_FOUND) -> GatewayError:
    # A real cluster answers an unknown topic with UnknownTopicOrPartition, which Confluent
    # maps to 40403 (reference, note A); we do the same so drop-in clients see one code.
    return GatewayError(404, 40403, message)


def partition_not_found() -> GatewayError:
    return GatewayError(404, 40402, PARTITION_NOT_FOUND)


def kafka_unavailable(detail: str) -> GatewayError:
    """Kafka could not be reached within the bounded wait: retriable, never a hang."""
    return GatewayError(503, 50003, f"Kafka is unavailable: {detail}", retry_after=1)


DomainError = session_errors.SessionError | DataError | PayloadError


def to_gateway_error(exc: DomainError) -> GatewayError:
    """The status and Confluent code a domain failure is answered with (the one map)."""
    if isinstance(exc, DataError):  # the request's data does not fit its format
        return GatewayError(400, 400, f"Bad Request: {exc}")
    if isinstance(exc, PayloadError):  # stored bytes the requested format cannot read
        return serialization_error(str(exc))
    message = exc.message
    match exc:
        case session_errors.InstanceNotFound():
            return GatewayError(404, 40403, message)
        case session_errors.InstanceExists():
            return GatewayError(409, 40902, message)
        case session_errors.IllegalState():
            return illegal_state(message)
        case session_errors.TooManyInstances(scope="replica"):
            return GatewayError(503, 50303, message, retry_after=1)
        case session_errors.TooManyInstances():
            return GatewayError(429, 42901, message)
        case session_errors.InstanceBusy():
            return GatewayError(429, 42902, message, retry_after=1)
        case session_errors.PoisonRecord():
            return serialization_error(message)
        case session_errors.StoreUnavailable():
            return GatewayError(
                503, 50301, f"Consumer session store is unavailable: {message}", retry_after=1
            )
        case session_errors.Moving():
            return GatewayError(503, 50301, message, retry_after=1)
        case session_errors.KafkaUnavailable():
            return GatewayError(503, 50003, message, retry_after=1)
        case session_errors.KafkaFailure():
            return GatewayError(500, 50002, message)
    return GatewayError(500, 500, message)


# The value as JSON text, as Confluent quotes offending data in its messages.
json_detail = json_text


def describe(exc: BaseException) -> str:
    """A one-line message for an exception from a client library (never a stack trace)."""
    text = str(exc).strip()
    return text or type(exc).__name__


def serialization_error(message: str) -> GatewayError:
    """Stored bytes the requested format cannot read (Confluent's SerializationException)."""
    return GatewayError(408, 40801, message)


# --- Kafka client exceptions -> Confluent codes (reference 5.6) -------------------------------

_AUTHENTICATION = (
    kafka_errors.AuthenticationFailedError,
    kafka_errors.AuthenticationMethodNotSupported,
    kafka_errors.SaslAuthenticationFailed,
    kafka_errors.UnsupportedSaslMechanismError,
    kafka_errors.IllegalSaslStateError,
)
_AUTHORIZATION = (
    kafka_errors.TopicAuthorizationFailedError,
    kafka_errors.GroupAuthorizationFailedError,
    kafka_errors.ClusterAuthorizationFailedError,
    kafka_errors.TransactionalIdAuthorizationFailed,
    kafka_errors.DelegationTokenAuthorizationFailed,
)


def kafka_error_code(exc: BaseException) -> int:
    """Confluent's code for a Kafka client failure; ``code // 100`` is its HTTP status.

    The split clients act on is retriable (50003: try again) versus not (50002: the request
    itself is wrong for this topic); authentication and authorization get their own codes
    because Confluent answers those with 401 / 403 instead of 200.
    """
    if isinstance(exc, _AUTHENTICATION):
        return 40101
    if isinstance(exc, _AUTHORIZATION):
        return 40301
    if isinstance(exc, TimeoutError | kafka_errors.KafkaTimeoutError):
        return 50003
    if getattr(exc, "retriable", False):
        return 50003
    return 50002
