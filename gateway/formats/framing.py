"""Confluent's wire format for schema formats: what makes our bytes readable by their clients.

Every record value (or key) written by a Confluent serializer starts with a magic byte ``0``
and the schema's registry id as a 4-byte big-endian integer, then the payload. Protobuf puts
the *message indexes* between the id and the payload: which message of the ``.proto`` file was
written, as a path through nested message declarations, because one schema may declare many.

The indexes are Kafka's zig-zag varints (``ByteUtils.writeVarint``): the count, then each
index. The overwhelmingly common case, the first top-level message (``[0]``), is written as
the single byte ``0`` (a count of zero), and a count of zero reads back as ``[0]``. Getting
any of this wrong makes the bytes unreadable to every other Confluent client, so these rules
are kept in one module with no dependencies.
"""

from __future__ import annotations

import struct

MAGIC = 0
_HEADER = struct.Struct(">bI")
HEADER_SIZE = _HEADER.size  # 5
_MAX_VARINT_BYTES = 5  # a 32-bit varint never needs more


class PayloadError(ValueError):
    """Stored bytes that a schema format cannot read (Confluent's SerializationException)."""


def frame(schema_id: int, payload: bytes, indexes: bytes = b"") -> bytes:
    """The bytes a Confluent serializer would write for ``payload`` under ``schema_id``."""
    return _HEADER.pack(MAGIC, schema_id) + indexes + payload


def unframe(data: bytes) -> tuple[int, memoryview]:
    """``(schema id, rest)``: ``rest`` is the protobuf indexes + payload, or the payload."""
    if len(data) < HEADER_SIZE or data[0] != MAGIC:
        raise PayloadError("Unknown magic byte!")
    _, sid = _HEADER.unpack_from(data)
    return sid, memoryview(data)[HEADER_SIZE:]


def schema_id(data: bytes | None) -> int | None:
    """The id a framed record names, or ``None`` when it is null or not framed at all."""
    if data is None or len(data) < HEADER_SIZE or data[0] != MAGIC:
        return None
    return int.from_bytes(data[1:HEADER_SIZE], "big")


# --- protobuf message indexes --------------------------------------------------------------


def encode_indexes(indexes: list[int] | tuple[int, ...]) -> bytes:
    """Message indexes as Confluent's ``MessageIndexes.toByteArray`` writes them."""
    if list(indexes) == [0]:
        return b"\x00"  # Confluent's optimization for the first message: a count of zero
    out = bytearray(_zigzag_varint(len(indexes)))
    for index in indexes:
        out += _zigzag_varint(index)
    return bytes(out)


def decode_indexes(data: memoryview | bytes) -> tuple[list[int], int]:
    """``(indexes, bytes consumed)``; a count of zero is the first message, ``[0]``."""
    count, pos = _read_zigzag(data, 0)
    if count == 0:
        return [0], pos
    if count < 0 or count > len(data):
        raise PayloadError(f"Invalid message indexes: count {count}")
    indexes = []
    for _ in range(count):
        index, pos = _read_zigzag(data, pos)
        if index < 0:
            raise PayloadError(f"Invalid message index {index}")
        indexes.append(index)
    return indexes, pos


def _zigzag_varint(value: int) -> bytes:
    n = ((value << 1) ^ (value >> 31)) & 0xFFFFFFFF
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _read_zigzag(data: memoryview | bytes, pos: int) -> tuple[int, int]:
    n = shift = 0
    for i in range(_MAX_VARINT_BYTES):
        if pos + i >= len(data):
            raise PayloadError("Invalid message indexes: truncated varint")
        b = data[pos + i]
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return (n >> 1) ^ -(n & 1), pos + i + 1
        shift += 7
    raise PayloadError("Invalid message indexes: varint longer than 5 bytes")
