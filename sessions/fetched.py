"""What a consumer instance's reads hand to the decoders: one fetched record.

aiokafka turns every fetched record into a ``ConsumerRecord``, a dataclass of eleven fields
built by a Python ``__init__``: on a read of tens of thousands of small records that
construction was the largest single cost of the whole consume path (more than decoding and
writing the response together). An instance's consumer hands out :class:`LeanRecord`
instead (:func:`sessions.kafka_internals.lean_records`): a named tuple made by one C call
from the fields the gateway reads.

The decoders and the read loop are typed against :class:`Record`, which both satisfy, so a
consumer that hands out ``ConsumerRecord`` (before the hook is installed, or in tests) reads
exactly the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol


class Record(Protocol):
    """The fields of a fetched record the gateway reads."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def timestamp_type(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


class LeanRecord(NamedTuple):
    """A :class:`Record` without ``ConsumerRecord``'s construction cost (see the module)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    timestamp_type: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]
