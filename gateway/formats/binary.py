"""The ``binary`` embedded format: Kafka bytes travel as standard base64 JSON strings.

Decoding follows Confluent's (Guava's) rules exactly so that a payload one proxy accepts the
other accepts too: the ``+/`` alphabet only, padding optional, no whitespace or line breaks, no
URL-safe ``-_``. Accepting more (as Python's lenient decoder would) lets clients drift into
payloads that break the day they point at a Confluent proxy.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from .codec import DataError, json_text

# Guava trims every trailing pad character, then rejects a length of 1 (mod 4).
_BASE64 = re.compile(r"[A-Za-z0-9+/]*=*")


def serialize(value: Any) -> bytes | None:
    """JSON value from a request -> Kafka bytes; ``null`` means no key / a tombstone.

    Almost every client sends canonical, padded base64. ``binascii``'s strict mode accepts
    exactly that (the ``+/`` alphabet, padding only at the end and only as much as needed, no
    whitespace) in one C call, and it decodes what it accepts the same way Guava does, so it
    is tried first. Strict mode accepts a subset of Guava's rules, never more: whatever it
    refuses (unpadded or over-padded values, and every invalid one) goes through the
    Guava-compatible checks below, which decide between accepting it and the usual 400.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise _not_base64(value)
    try:
        return binascii.a2b_base64(value, strict_mode=True)
    except ValueError:  # binascii.Error, or a non-ASCII str: let Guava's rules decide
        pass
    if not _BASE64.fullmatch(value):
        raise _invalid(value)
    data = value.rstrip("=")
    if len(data) % 4 == 1:
        raise _invalid(value)
    try:
        return base64.b64decode(data + "=" * (-len(data) % 4), validate=True)
    except binascii.Error:  # unreachable after the checks above; kept as a guard
        raise _invalid(value) from None


def serialize_all(values: list[Any]) -> list[bytes | None]:
    """:func:`serialize` over a request's column: one C call per value when every value is
    canonical base64 (or null), the per-value rules otherwise (and for the error)."""
    a2b = binascii.a2b_base64
    try:
        return [None if v is None else a2b(v, strict_mode=True) for v in values]
    except (ValueError, TypeError):  # one value is not canonical (or not a string)
        return [serialize(v) for v in values]


def deserialize(data: bytes | None) -> str | None:
    """Kafka bytes -> the JSON string a consumer sees (padded, one line); ``None`` stays null."""
    if data is None:
        return None
    return binascii.b2a_base64(data, newline=False).decode("ascii")  # hot on the read path


def _not_base64(value: Any) -> DataError:
    return DataError(f"data={json_text(value)} is not a base64 string.")


def _invalid(value: Any) -> DataError:
    return DataError(f"data={json_text(value)} is not a valid base64 string.")
