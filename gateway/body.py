"""Request-body reading with Confluent's (Jackson's) rules, shared by every v2 handler.

Jackson decides what v2 clients can get away with: unknown fields are a 422, malformed JSON
or a wrong type is a 400, scalars are coerced (``false`` for a string field, ``"100"`` for an
int field), and an empty body reads as ``null``. Matching those rules keeps curl scripts written
against Confluent working, and keeps every client mistake a 4xx.

What Jackson bounds, we bound too, before any value reaches code that could choke on it: the
body's size (413), its nesting depth (400), and every number's range (Java's ``int`` / ``long``:
400, as Jackson's overflow error; a range the field's meaning imposes: 422).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import orjson
from aiohttp import web

from .errors import GatewayError, bad_request, json_detail, unprocessable, unrecognized_field
from .formats.codec import nesting_depth

MAX_BODY = 64 * 1024 * 1024

# Deepest nesting a body may have (the top-level object counts 1). orjson.loads stops at 1024,
# but much less already breaks what runs on a body's values later: orjson.dumps (the json
# format, error messages) refuses 255 levels, and jsonschema validation recurses in Python and
# exhausts the interpreter's stack from about 125 levels with nested combinators. 100 is
# protobuf's own JSON parsing limit, and far beyond any real record.
MAX_DEPTH = 100

INT32 = (-(2**31), 2**31 - 1)  # Java int: partitions, schema ids, millisecond settings
INT64 = (-(2**63), 2**63 - 1)  # Java long: offsets, timestamps


async def read_json(request: web.Request) -> Any:
    """The decoded body, or ``None`` when the body is empty."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        limit = request.client_max_size
        raise GatewayError(
            413, 413, f"Request body is too large: the limit is {limit} bytes"
        ) from exc
    if not raw.strip():
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if not _utf8(raw):
            raise bad_request("Malformed JSON: the request body is not valid UTF-8") from None
        raise bad_request(f"Malformed JSON: {exc}") from None
    if _too_deep(raw, value):
        raise bad_request(f"Malformed JSON: nested deeper than {MAX_DEPTH} levels")
    return value


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# --- nesting depth ------------------------------------------------------------------------------
#
# A depth check must not cost what the parse cost: produce bodies carry thousands of records.
# orjson.dumps, which refuses to write past a fixed depth, is asked to write the value wrapped
# in enough extra lists that only a value deeper than MAX_DEPTH takes it past that limit (C
# speed, about a fifth of the parse; the wrapping lists are built once, and the value is put
# into the innermost one for the call). Only when it refuses does a Python walk give the exact
# answer, so an orjson whose limit changes can never let a deep body through. Without such a
# limit, a body with at most MAX_DEPTH brackets cannot nest deeper (two byte counts in C), and
# only the others are walked.


def _dumps_limit() -> int | None:
    """The deepest list nesting orjson.dumps writes, or None if it writes 2048 levels."""

    def writes(depth: int) -> bool:
        value: list[Any] = []
        for _ in range(depth - 1):
            value = [value]
        try:
            orjson.dumps(value)
        except orjson.JSONEncodeError:
            return False
        return True

    lo, hi = 1, 2048
    if writes(hi):
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if writes(mid) else (lo, mid)
    return lo


def _wrapping(levels: int) -> tuple[list[Any], list[Any]]:
    """``levels`` nested lists: (the outermost, the innermost, empty)."""
    inner: list[Any] = []
    outer = inner
    for _ in range(levels - 1):
        outer = [outer]
    return outer, inner


_DUMPS_LIMIT = _dumps_limit()
_WRAP = _DUMPS_LIMIT - MAX_DEPTH if _DUMPS_LIMIT is not None else None
# The value goes in the innermost list, one level below the outermost: _WRAP levels above it.
_OUTER, _INNER = _wrapping(_WRAP) if _WRAP is not None and _WRAP >= 1 else ([], [])


def _too_deep(raw: bytes, value: Any) -> bool:
    if _WRAP is not None and _WRAP >= 1:
        # Synchronous from append to clear: nothing else can see the value in the wrapping.
        _INNER.append(value)
        try:
            orjson.dumps(_OUTER)
        except orjson.JSONEncodeError:
            pass  # deeper than MAX_DEPTH, most likely: the walk says for sure
        else:
            return False
        finally:
            _INNER.clear()
    elif raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return False
    return nesting_depth(value, MAX_DEPTH) > MAX_DEPTH


# --- Jackson's coercions ------------------------------------------------------------------------


def expect_object(
    value: Any, allowed: Collection[str], what: str = "request body"
) -> dict[str, Any]:
    """``value`` as a JSON object with only ``allowed`` keys (422 names the first stranger)."""
    if not isinstance(value, dict):
        raise bad_request(
            f"Cannot deserialize {what}: expected a JSON object, got {json_detail(value)}"
        )
    for key in value:
        if key not in allowed:
            raise unrecognized_field(key)
    return value


def as_int(value: Any, name: str, java: tuple[int, int] = INT32) -> int | None:
    """Jackson's int coercion: ints, integral floats and numeric strings; null stays None.

    ``java`` is the field's Java type range (``INT32`` or ``INT64``): a number outside it is
    the 400 Jackson answers, whatever the field means (its own range is the caller's 422).
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise bad_request(f"Cannot deserialize value of type `int` from Boolean for field '{name}'")
    number: int | None = None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str):
        text = value.strip()
        digits = text[1:] if text[:1] in ("+", "-") else text
        # ASCII digits only: int() also takes "1_000" and non-ASCII digits, Java does not.
        if digits.isascii() and digits.isdigit():
            try:
                number = int(text)
            except ValueError:  # past int()'s digit limit: not a number we could range-check
                pass
    if number is None:
        raise bad_request(
            f"Cannot deserialize value of type `int` from {json_detail(value)} for field '{name}'"
        )
    lo, hi = java
    if not lo <= number <= hi:
        kind = "int" if java == INT32 else "long"
        raise bad_request(
            f"Numeric value ({json_detail(value)}) out of range of {kind} ({lo} - {hi}) "
            f"for field '{name}'"
        )
    return number


def in_range(value: int, name: str, lo: int, hi: int, error_code: int = 422) -> int:
    """``value`` if within ``[lo, hi]``, else the 422 naming the field and the range."""
    if not lo <= value <= hi:
        raise unprocessable(f"Invalid {name} {value}: it must be in [{lo}, {hi}]", error_code)
    return value


def as_str(value: Any, name: str) -> str | None:
    """Jackson's String coercion: scalars become their text (``false`` -> ``"false"``)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json_detail(value)
    raise bad_request(
        f"Cannot deserialize value of type `String` from {json_detail(value)} for field '{name}'"
    )


def as_list(value: Any, name: str) -> list[Any] | None:
    if value is None or isinstance(value, list):
        return value
    raise bad_request(
        f"Cannot deserialize field '{name}': expected a JSON array, got {json_detail(value)}"
    )
