"""Avro binary -> JSON in Avro's JSON encoding, as Confluent's ``AvroConverter`` shows it.

Our own small decoder rather than fastavro's reader: the JSON must name the union branch that
was written, and a value fastavro hands back (a Python ``int``) no longer knows whether it was
an ``int`` or a ``long``. Built once per schema as nested closures over a byte cursor.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import Any

from .avro_schema import INT_MAX, INT_MIN, NamedTypeBuilder
from .framing import PayloadError

_MAX_EMPTY_ITEMS = 1_000_000
_F32 = struct.Struct("<f")
_F64 = struct.Struct("<d")

Reader = Callable[["Buf"], Any]


class Buf:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0


def _read_long(b: Buf) -> int:
    data = b.data
    pos = b.pos
    byte = data[pos]
    pos += 1
    n = byte & 0x7F
    shift = 7
    while byte & 0x80:
        if shift > 63:
            raise PayloadError("Malformed Avro data: invalid long encoding")
        byte = data[pos]
        pos += 1
        n |= (byte & 0x7F) << shift
        shift += 7
    b.pos = pos
    return (n >> 1) ^ -(n & 1)


def _read_int(b: Buf) -> int:
    n = _read_long(b)
    if not INT_MIN <= n <= INT_MAX:
        raise PayloadError("Malformed Avro data: invalid int encoding")
    return n


def _read_raw(b: Buf, n: int) -> bytes:
    if n < 0 or b.pos + n > len(b.data):
        raise PayloadError("Malformed Avro data: invalid length")
    start = b.pos
    b.pos = start + n
    return b.data[start : b.pos]


def _non_finite(x: float) -> Any:
    if x != x:
        return "NaN"
    return "Infinity" if x > 0 else "-Infinity"


def _read_float(b: Buf) -> Any:
    (x,) = _F32.unpack_from(b.data, b.pos)
    b.pos += 4
    if not math.isfinite(x):
        return _non_finite(x)
    # Java prints a float with the fewest digits that read back as the same float ("0.1"),
    # not the digits of the double it widens to (0.10000000149011612).
    for digits in range(1, 10):
        shortest = float(f"{x:.{digits}g}")
        if _F32.unpack(_F32.pack(shortest))[0] == x:
            return shortest
    return x


def _read_double(b: Buf) -> Any:
    (x,) = _F64.unpack_from(b.data, b.pos)
    b.pos += 8
    return x if math.isfinite(x) else _non_finite(x)


def _read_boolean(b: Buf) -> Any:
    value = b.data[b.pos] == 1
    b.pos += 1
    return value


def _read_bytes(b: Buf) -> Any:
    return _read_raw(b, _read_long(b)).decode("latin-1")


def _read_string(b: Buf) -> Any:
    # Java decodes malformed UTF-8 with replacement characters rather than failing.
    return _read_raw(b, _read_long(b)).decode("utf-8", errors="replace")


_PRIMITIVE_READERS: dict[str, Reader] = {
    "null": lambda b: None,
    "boolean": _read_boolean,
    "int": _read_int,
    "long": _read_long,
    "float": _read_float,
    "double": _read_double,
    "bytes": _read_bytes,
    "string": _read_string,
}


def _read_blocks(b: Buf, read_item: Callable[[], None]) -> None:
    """Avro's blocked encoding of arrays and maps (a negative count carries a byte size)."""
    while True:
        count = _read_long(b)
        if count == 0:
            return
        if count < 0:
            count = -count
            _read_long(b)  # block size in bytes, only useful for skipping
        # Items take at least a byte, except nulls and empty records: a count far beyond the
        # bytes left is corrupt data, not a reason to spin.
        if count > len(b.data) - b.pos + _MAX_EMPTY_ITEMS:
            raise PayloadError("Malformed Avro data: invalid block count")
        for _ in range(count):
            read_item()


class ReaderBuilder(NamedTypeBuilder[Reader]):
    """Compiles a schema into one function Avro binary -> Avro JSON encoding."""

    def top(self, schema: Any) -> Reader:
        """The top-level reader, with Confluent's quirk: no wrapper around a top-level union
        (nor around the union values of a top-level map, whose schema Confluent derives from
        the first value)."""
        t = self.types.resolve(schema)
        if isinstance(t, list):
            return self._union(t, wrap=False)
        if isinstance(t, dict) and t["type"] == "map":
            values = self.types.resolve(t["values"])
            if isinstance(values, list):
                return self._map_of(self._union(values, wrap=False))
        return self.build(schema)

    def build(self, schema: Any) -> Reader:
        t = self.types.resolve(schema)
        if isinstance(t, str):
            return _PRIMITIVE_READERS[t]
        if isinstance(t, list):
            return self._union(t, wrap=True)
        if "name" in t:
            return self._named(t)
        if t["type"] == "array":
            return self._array(t)
        return self._map_of(self.build(t["values"]))

    def _enum(self, t: dict[str, Any]) -> Reader:
        symbols = list(t["symbols"])

        def read(b: Buf) -> Any:
            i = _read_int(b)
            if not 0 <= i < len(symbols):
                raise PayloadError(f"Malformed Avro data: enum index {i} out of range")
            return symbols[i]

        return read

    def _fixed(self, t: dict[str, Any]) -> Reader:
        size = t["size"]
        return lambda b: _read_raw(b, size).decode("latin-1")

    def _record(self, t: dict[str, Any]) -> Reader:
        fields = [(f["name"], self.build(f["type"])) for f in t["fields"]]

        def read(b: Buf) -> Any:
            return {name: reader(b) for name, reader in fields}

        return read

    def _array(self, t: dict[str, Any]) -> Reader:
        item = self.build(t["items"])

        def read(b: Buf) -> Any:
            out: list[Any] = []
            _read_blocks(b, lambda: out.append(item(b)))
            return out

        return read

    def _map_of(self, value: Reader) -> Reader:
        def read(b: Buf) -> Any:
            out: dict[str, Any] = {}

            def entry() -> None:
                key = _read_string(b)
                out[key] = value(b)

            _read_blocks(b, entry)
            return out

        return read

    def _union(self, branches: list[Any], *, wrap: bool) -> Reader:
        labels = [self.types.label(x) for x in branches]
        readers = [self.build(x) for x in branches]
        count = len(branches)

        def read(b: Buf) -> Any:
            i = _read_long(b)
            if not 0 <= i < count:
                raise PayloadError(f"Malformed Avro data: union index {i} out of range")
            value = readers[i](b)
            if not wrap or labels[i] == "null":
                return value
            return {labels[i]: value}

        return read
