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
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(f"Failed to deserialize JSON record: {exc}") from None
    check_answerable(data, value)
    return value


# orjson reads 1,024 levels but writes at most 254: a stored value deeper than that could be
# read and never answered, so every read would fail on it. It is a record nobody can read.
MAX_ANSWER_DEPTH = 254


def check_answerable(data: bytes | memoryview, value: Any) -> None:
    """Raise :class:`PayloadError` for a value too deeply nested to be written back as JSON.

    The byte count of brackets is a cheap bound (C speed) that spares almost every record
    the walk over its value.
    """
    raw = bytes(data)
    if raw.count(b"[") + raw.count(b"{") <= MAX_ANSWER_DEPTH:
        return
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > MAX_ANSWER_DEPTH:
            raise PayloadError(
                f"JSON value nested more than {MAX_ANSWER_DEPTH} levels deep; it cannot be "
                "returned as JSON"
            )
        stack.extend((child, depth + 1) for child in children)
