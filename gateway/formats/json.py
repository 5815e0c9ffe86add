"""The ``json`` embedded format: any JSON value, stored as its compact UTF-8 text.

Confluent writes the value with Jackson, so ``"alice"`` is stored as the seven bytes
``"alice"`` (quotes included) and ``{"a": 1}`` as ``{"a":1}``. orjson produces the same compact
form for everything a JSON request body can contain.
"""

from __future__ import annotations

from typing import Any

import orjson

from .codec import PayloadError


def serialize(value: Any) -> bytes | None:
    """JSON value from a request -> Kafka bytes; ``null`` means no key / a tombstone."""
    if value is None:
        return None
    return orjson.dumps(value)


def deserialize(data: bytes | None) -> Any:
    """Kafka bytes -> JSON value for a consumer; null and empty bytes read as ``null``.

    Bytes that are not JSON are the producer's mistake, not the reader's: Confluent answers
    them with its serializer error (408 / 40801), so :class:`PayloadError` (mapped to that)
    rather than a 500.
    """
    if not data:  # null, and empty bytes, which a JSON reader cannot parse either: null
        return None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(f"Failed to deserialize JSON record: {exc}") from None
