"""Confluent Schema Registry's ``_schemas`` record format, read and written byte-compatibly.

An existing ``_schemas`` topic written by Confluent's registry must replay here, and records
written here must replay there; compaction also needs our keys to be byte-identical to the
keys Confluent writes for the same slot, so keys are serialized exactly as its Jackson
classes do (field order ``keytype, subject, version, magic``; null fields omitted, so the
global CONFIG key has no ``subject``).

Key types understood: SCHEMA (value: one subject version; null value = permanent delete),
CONFIG (compatibility level; null value = level removed), DELETE_SUBJECT (soft-delete of every
version up to ``version``). NOOP, MODE, CONTEXT, CLEAR_SUBJECT, ASSOC and unknown types are
skipped. A record that does not parse raises :class:`BadRecord` (the caller logs, counts and
skips it): anything may have written the topic, and Confluent's reader likewise skips what it
cannot deserialize. Numbers must fit Confluent's ``int`` (ids and versions are Java ints, and
an id is 4 bytes in the wire format: one crafted id of 2**40 would otherwise become ``max_id``
and every later registration would allocate ids no client can frame).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from .model import AVRO, LEVELS, Reference, SchemaText

_INT_MAX = 2**31 - 1


class BadRecord(ValueError):
    """A record this registry cannot interpret; replay skips it."""


@dataclass(frozen=True)
class SchemaRecord:
    subject: str
    version: int
    id: int
    schema: SchemaText
    deleted: bool = False


@dataclass(frozen=True)
class SchemaTombstone:
    subject: str
    version: int


@dataclass(frozen=True)
class ConfigRecord:
    subject: str | None  # None: the global level
    level: str | None  # None: removed (tombstone, or a config without a level)


@dataclass(frozen=True)
class DeleteSubjectRecord:
    subject: str
    version: int


Record = SchemaRecord | SchemaTombstone | ConfigRecord | DeleteSubjectRecord


# --- writing ---------------------------------------------------------------------------------


def schema_key(subject: str, version: int) -> bytes:
    return orjson.dumps({"keytype": "SCHEMA", "subject": subject, "version": version, "magic": 1})


def encode_schema(rec: SchemaRecord) -> tuple[bytes, bytes]:
    value: dict[str, Any] = {"subject": rec.subject, "version": rec.version, "id": rec.id}
    if rec.schema.schema_type != AVRO:
        value["schemaType"] = rec.schema.schema_type
    if rec.schema.references:
        value["references"] = [r.to_json() for r in rec.schema.references]
    value["schema"] = rec.schema.text
    value["deleted"] = rec.deleted
    return schema_key(rec.subject, rec.version), orjson.dumps(value)


def encode_tombstone(subject: str, version: int) -> tuple[bytes, None]:
    return schema_key(subject, version), None


def config_key(subject: str | None) -> bytes:
    key: dict[str, Any] = {"keytype": "CONFIG"}
    if subject is not None:
        key["subject"] = subject
    key["magic"] = 0
    return orjson.dumps(key)


def encode_config(subject: str | None, level: str | None) -> tuple[bytes, bytes | None]:
    if level is None:
        return config_key(subject), None
    value: dict[str, Any] = {}
    if subject is not None:
        value["subject"] = subject  # modern Confluent repeats it; older readers ignore it
    value["compatibilityLevel"] = level
    return config_key(subject), orjson.dumps(value)


def encode_delete_subject(subject: str, version: int) -> tuple[bytes, bytes]:
    key = orjson.dumps({"keytype": "DELETE_SUBJECT", "subject": subject, "magic": 0})
    return key, orjson.dumps({"subject": subject, "version": version})


# --- reading ---------------------------------------------------------------------------------


def decode(key: bytes | None, value: bytes | None) -> Record | None:
    """The record's meaning, or None for key types that do not affect the registry."""
    if key is None:
        raise BadRecord("record without a key")
    k = _object(key, "key")
    keytype = k.get("keytype")
    if keytype == "SCHEMA":
        subject, version = _str(k, "subject"), _int(k, "version")
        if value is None:
            return SchemaTombstone(subject, version)
        return _schema_value(_object(value, "value"), subject, version)
    if keytype == "CONFIG":
        scope = k.get("subject")  # None: the global level
        if scope is not None and not isinstance(scope, str):
            raise BadRecord("CONFIG key with a non-string subject")
        if value is None:
            return ConfigRecord(scope, None)
        level = _object(value, "value").get("compatibilityLevel")
        if level is None:
            return ConfigRecord(scope, None)
        if not isinstance(level, str) or level.upper() not in LEVELS:
            raise BadRecord(f"unknown compatibilityLevel {str(level)[:50]!r}")
        return ConfigRecord(scope, level.upper())
    if keytype == "DELETE_SUBJECT":
        if value is None:
            return None
        v = _object(value, "value")
        return DeleteSubjectRecord(_str(v, "subject", k.get("subject")), _int(v, "version"))
    return None


def _schema_value(v: dict[str, Any], subject: str, version: int) -> SchemaRecord:
    raw_refs = v.get("references") or []
    if not isinstance(raw_refs, list) or not all(isinstance(r, dict) for r in raw_refs):
        raise BadRecord("'references' is not a list of objects")
    refs = tuple(
        # Only ever looked up, never allocated from: any int will do.
        Reference(_str(r, "name"), _str(r, "subject"), _int(r, "version", lo=-_INT_MAX - 1))
        for r in raw_refs
    )
    schema_type = v.get("schemaType") or AVRO
    if not isinstance(schema_type, str):
        raise BadRecord("non-string 'schemaType'")
    text = SchemaText(schema_type.upper(), _str(v, "schema"), refs)
    return SchemaRecord(
        subject=subject,  # the key names the slot compaction keeps; it is authoritative
        version=version,
        id=_int(v, "id"),
        schema=text,
        deleted=bool(v.get("deleted", False)),
    )


def _object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRecord(f"{what} is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise BadRecord(f"{what} is not a JSON object")
    return doc


def _str(doc: dict[str, Any], name: str, default: Any = None) -> str:
    value = doc.get(name, default)
    if not isinstance(value, str):
        raise BadRecord(f"missing or non-string {name!r}")
    return value


def _int(doc: dict[str, Any], name: str, default: Any = None, lo: int = 1) -> int:
    value = doc.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadRecord(f"missing or non-integer {name!r}")
    if not lo <= value <= _INT_MAX:
        raise BadRecord(f"{name!r} {value} is outside [{lo}, {_INT_MAX}]")
    return value
