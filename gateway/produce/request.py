"""The v2 produce request body, checked completely before anything reaches Kafka.

A produce request is all-or-nothing at the validation stage: one bad record must reject the
whole request before a single record is sent, or a client that retries its corrected request
would duplicate the good records. Jackson's rules decide the status (see :mod:`gateway.body`).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import repeat
from typing import Any

from ..body import INT32, as_int, as_list, as_str, expect_object
from ..errors import unprocessable

_BODY_FIELDS = frozenset(
    {"key_schema", "key_schema_id", "value_schema", "value_schema_id", "records"}
)
_RECORD_FIELDS = frozenset({"key", "value", "partition"})


_DICT = frozenset({dict})  # what every record's type must be


@dataclass(frozen=True, slots=True)
class ProduceRequest:
    """Records as parallel lists: formats then convert a whole column in one comprehension."""

    keys: list[Any]
    values: list[Any]
    partitions: list[int | None]
    key_schema: str | None = None
    key_schema_id: int | None = None
    value_schema: str | None = None
    value_schema_id: int | None = None

    def __len__(self) -> int:
        return len(self.keys)


def parse_produce_request(body: Any) -> ProduceRequest:
    """The request, or the Confluent error for the first problem found (422 or 400)."""
    if body is None:
        raise unprocessable("Request body is empty: a produce request needs 'records'.")
    body = expect_object(body, _BODY_FIELDS)
    records = as_list(body.get("records"), "records")
    if not records:
        raise unprocessable("records must not be empty.")
    # Column by column, each a C-level map over the records: a request carries hundreds of
    # them, and per-record Python (a loop, or a comprehension's attribute lookups and calls)
    # was most of this function's time.
    if not (set(map(type, records)) == _DICT and all(map(_RECORD_FIELDS.issuperset, records))):
        for record in records:
            expect_object(record, _RECORD_FIELDS, "record")  # raises the precise error
    keys: list[Any] = list(map(dict.get, records, repeat("key")))
    values: list[Any] = list(map(dict.get, records, repeat("value")))
    partitions: list[Any] = list(map(dict.get, records, repeat("partition")))
    if partitions.count(None) != len(partitions):
        lo, hi = INT32
        # Java's Integer, else Jackson's 400. A partition the topic lacks (negative ones
        # included) is refused with its range once the topic's partitions are known.
        partitions = [
            p if p is None or (type(p) is int and lo <= p <= hi) else as_int(p, "partition")
            for p in partitions
        ]
    return ProduceRequest(
        keys,
        values,
        partitions,
        key_schema=as_str(body.get("key_schema"), "key_schema"),
        key_schema_id=as_int(body.get("key_schema_id"), "key_schema_id"),
        value_schema=as_str(body.get("value_schema"), "value_schema"),
        value_schema_id=as_int(body.get("value_schema_id"), "value_schema_id"),
    )
