"""Records and bytes moved through this replica, counted where the handlers know them.

Plain integers behind an app key, so the produce and consume handlers record traffic without
depending on the metrics library (or on anything else here); /metrics reads them on scrape.
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Traffic:
    records_produced: int = 0
    bytes_produced: int = 0  # keys and values as written to Kafka (after encoding)
    records_consumed: int = 0
    bytes_consumed: int = 0  # records responses as written to the client
    # Per-record produce failures by Confluent code (50003: Kafka unavailable, ...): they
    # travel inside a 200, so counting answers by status would miss them.
    record_errors: Counter[int] = field(default_factory=Counter)


TRAFFIC = web.AppKey("traffic", Traffic)
_ERROR_CODE = operator.methodcaller("get", "error_code")  # one C call per entry


def produced(
    app: web.Application,
    offsets: Sequence[Mapping[str, Any]],
    keys: Sequence[bytes | None],
    values: Sequence[bytes | None],
) -> None:
    """Count the records Kafka acknowledged: a per-record error moved nothing."""
    traffic = app.get(TRAFFIC)
    if traffic is None:
        return
    if set(map(_ERROR_CODE, offsets)) <= {None}:  # the usual answer: all written
        traffic.records_produced += len(offsets)
        traffic.bytes_produced += sum(map(len, filter(None, keys))) + sum(
            map(len, filter(None, values))
        )
        return
    for offset, key, value in zip(offsets, keys, values, strict=False):
        code = offset.get("error_code")
        if code is None:
            traffic.records_produced += 1
            traffic.bytes_produced += len(key or b"") + len(value or b"")
        elif isinstance(code, int):
            traffic.record_errors[code] += 1


def consumed(app: web.Application, records: int, nbytes: int) -> None:
    """Count a records response once it was fully written (delivered, as commits see it)."""
    traffic = app.get(TRAFFIC)
    if traffic is not None:
        traffic.records_consumed += records
        traffic.bytes_consumed += nbytes
