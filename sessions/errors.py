"""What can go wrong with a consumer instance, said without HTTP.

``sessions`` knows nothing of status codes or Confluent's ``error_code``: it raises these, and
the HTTP layer (:func:`gateway.errors.from_session_error`) maps each type to Confluent's answer
in one place. A type per failure the client must act on differently: fix the request
(:class:`IllegalState`), give up (:class:`InstanceNotFound`), or retry (:class:`Retriable` and
its subclasses, which carry no Confluent code of their own but always mean "try again").
"""

from __future__ import annotations


class SessionError(Exception):
    """Base of every failure ``sessions`` reports; ``message`` is safe to show a client."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InstanceNotFound(SessionError):
    """No such instance anywhere in the cluster (deleted, expired, or never created)."""

    def __init__(self, message: str = "Consumer instance not found.") -> None:
        super().__init__(message)


class InstanceExists(SessionError):
    """The (group, name) is taken, on this replica or another."""

    def __init__(
        self,
        message: str = (
            "Consumer with specified consumer ID already exists in the specified consumer group."
        ),
    ) -> None:
        super().__init__(message)


class IllegalState(SessionError):
    """The request does not fit the instance's state (e.g. seek on an unassigned partition)."""


class TooManyInstances(SessionError):
    """A cap on consumer instances is reached: on this replica (another may have room: retry)
    or in the whole cluster (delete instances first)."""

    def __init__(self, limit: int, scope: str) -> None:
        super().__init__(
            f"Too many consumer instances: this {scope} already holds its maximum of {limit}"
            + ("; delete unused instances first" if scope == "cluster" else "; retry the request")
        )
        self.limit = limit
        self.scope = scope


class InstanceBusy(SessionError):
    """Too many requests are already waiting for this one instance (it serves one at a
    time); the client should wait for its earlier requests before sending more."""


class PoisonRecord(SessionError):
    """A record the instance's format can never decode; the read stepped past it."""


class Retriable(SessionError):
    """Nothing is wrong with the request: the same request succeeds later."""


class Moving(Retriable):
    """The instance is changing hands (drain, adoption race, shutdown): retry finds its owner."""


class StoreUnavailable(Retriable):
    """The session store (Redis) cannot be reached."""


class KafkaUnavailable(Retriable):
    """Kafka did not answer in time, or answered with a retriable error."""


class KafkaFailure(SessionError):
    """Kafka refused the operation with a non-retriable error."""
