"""What every schema format (avro, jsonschema, protobuf) offers the produce and consume paths.

A *codec* is one compiled schema. It turns a request's JSON value into the payload Confluent's
serializer would write (framing aside) and a stored payload back into the JSON Confluent's
REST Proxy would show. Codecs are pure and synchronous: compiling one may be slow and runs in a
worker thread (:mod:`gateway.registry.schemas`), using one is cheap and runs on the loop.

Three failures, three different culprits, so three exception types, shared by every format
(the schema-less ones too) and mapped to HTTP in one place (:func:`gateway.errors.to_gateway_error`):

* :class:`SchemaError`: the schema text itself is unusable (Confluent's 42205).
* :class:`DataError`: the request's data does not fit the schema (Confluent's 400).
* :class:`~gateway.formats.framing.PayloadError`: stored bytes cannot be read (408 40801).
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson

from .framing import PayloadError

# Our embedded format name -> the registry's ``schemaType`` (absent in answers means AVRO).
SCHEMA_TYPES = {"avro": "AVRO", "jsonschema": "JSON", "protobuf": "PROTOBUF"}
FORMATS = {v: k for k, v in SCHEMA_TYPES.items()}

__all__ = [
    "FORMATS",
    "SCHEMA_TYPES",
    "Codec",
    "DataError",
    "PayloadError",
    "SchemaError",
    "json_text",
    "nesting_depth",
]


class SchemaError(ValueError):
    """Schema text that does not compile; the message says why."""


class DataError(ValueError):
    """A JSON value from a request that its format does not accept (Confluent's 400)."""


def json_text(value: Any) -> str:
    """The value as JSON text, as Confluent quotes offending data in its messages."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return repr(value)


class Codec(Protocol):
    """One compiled schema of one format."""

    format: str  # "avro" | "jsonschema" | "protobuf"

    def encode(self, value: Any) -> bytes | None:
        """The payload for ``value`` (protobuf: message indexes included); ``None``: no bytes.

        Raises :class:`DataError` when ``value`` does not fit the schema.
        """
        ...

    def decode(self, payload: bytes | memoryview) -> Any:
        """The JSON value a consumer sees; :class:`PayloadError` when unreadable."""
        ...


def nesting_depth(value: Any, stop_above: int | None = None) -> int:
    """Levels of arrays/objects in ``value`` (a scalar: 0); iterative, so any depth is safe.

    One walk for every bound on nesting (request bodies, stored values answered as JSON,
    registry schemas), so all of them agree on what a level is.

    With ``stop_above``, returns as soon as the depth is known to exceed it.
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > deepest:
            deepest = depth
            if stop_above is not None and deepest > stop_above:
                return deepest
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest
