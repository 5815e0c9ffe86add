"""The ``json`` embedded format: any JSON value, stored as its compact UTF-8 text.

Confluent writes the value with Jackson, so ``"alice"`` is stored as the seven bytes
``"alice"`` (quotes included) and ``{"a": 1}`` as ``{"a":1}``. orjson produces the same compact
form for everything a JSON request body can contain.
"""

from __future__ import annotations

from typing import Any

import orjson

from .codec import PayloadError, nesting_depth


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


def answer_text(data: bytes | None) -> bytes:
    """Kafka bytes -> the JSON text a consumer sees, spliced into the response as stored.

    The read path builds its response as bytes (see :mod:`gateway.consume.decoding`), and the
    stored bytes already are JSON text, so parsing them into Python objects only to write
    them back out again (the cost of most of a json read) is skipped: the bytes are still
    parsed, because only valid JSON may be spliced and a record that is not must stay a
    poison record (:class:`PayloadError`, 408 / 40801) exactly as :func:`deserialize` makes
    it, too-deep nesting included. orjson's parser is strict RFC 8259 (no NaN, no BOM, no
    invalid UTF-8, no lone surrogates), so whatever it accepts is a valid JSON value to embed.
    The client may then see the producer's own spelling (whitespace, ``1.0``, an integer
    beyond 64 bits, which Confluent's Jackson keeps too) instead of orjson's re-encoding of
    it; the value is the same.
    """
    if not data:  # null, and empty bytes, as deserialize() reads them
        return b"null"
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(f"Failed to deserialize JSON record: {exc}") from None
    check_answerable(data, value)
    return data


# orjson reads 1,024 levels but writes at most 254: a stored value deeper than that could be
# read and never answered, so every read would fail on it. It is a record nobody can read.
MAX_ANSWER_DEPTH = 254


def check_answerable(data: bytes | memoryview, value: Any) -> None:
    """Raise :class:`PayloadError` for a value too deeply nested to be written back as JSON.

    Two cheap bounds spare almost every record the walk over its value: a value nested
    deeper than the limit has more than that many opening and as many closing brackets, so
    text of at most twice the limit in bytes cannot be (one length check, which matters on
    the read path, where it runs for every record); then the byte count of brackets (C speed).
    """
    if len(data) <= 2 * MAX_ANSWER_DEPTH:
        return
    raw = bytes(data)
    if raw.count(b"[") + raw.count(b"{") <= MAX_ANSWER_DEPTH:
        return
    if nesting_depth(value, MAX_ANSWER_DEPTH) > MAX_ANSWER_DEPTH:
        raise PayloadError(
            f"JSON value nested more than {MAX_ANSWER_DEPTH} levels deep; it cannot be "
            "returned as JSON"
        )
