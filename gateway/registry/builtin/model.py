"""The registry's vocabulary, shared by the log format, the in-memory view and the handlers.

Kept free of I/O so that the replay of the ``_schemas`` topic and the HTTP layer agree on one
meaning of "a schema": its type, its text and the exact versions it references.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..client import Reference as Reference  # one definition for client and registry

AVRO = "AVRO"
JSON = "JSON"
PROTOBUF = "PROTOBUF"
# Confluent lists them in this order on GET /schemas/types.
SCHEMA_TYPES = (JSON, PROTOBUF, AVRO)

NONE = "NONE"
BACKWARD = "BACKWARD"
LEVELS = (
    NONE,
    BACKWARD,
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
)
# Confluent's default for ``schema.compatibility.level``.
DEFAULT_LEVEL = BACKWARD


@dataclass(frozen=True)
class SchemaText:
    """A schema as clients send it and records hold it; identity is computed from this."""

    schema_type: str
    text: str
    references: tuple[Reference, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """``schema`` plus ``schemaType`` (omitted for AVRO) and ``references`` (if any),
        the shape Confluent answers for a schema on its own."""
        out: dict[str, Any] = {}
        if self.schema_type != AVRO:
            out["schemaType"] = self.schema_type
        if self.references:
            out["references"] = [r.to_json() for r in self.references]
        out["schema"] = self.text
        return out


@dataclass(frozen=True)
class Version:
    """One (subject, version) slot of the log; soft deletion keeps it, flagged."""

    subject: str
    version: int
    id: int
    deleted: bool = False
