"""The ``jsonschema`` embedded format: JSON documents validated against a JSON Schema.

The payload is the document's compact JSON text, as Confluent's ``KafkaJsonSchemaSerializer``
writes it; a consumer sees the stored document unchanged. Validation happens on produce only
(Confluent's deserializer does not validate by default either), so a consumer can always read
what is in the topic.

The draft comes from the schema's ``$schema`` and defaults to draft 7, as Confluent's does.
``format`` keywords are checked (Confluent's validator checks them too). ``$ref`` to another
document resolves against the registry's schema references, by reference name, and by ``$id``
when the referenced schema declares one; nothing is ever fetched from the network.

A JSON ``null`` is validated like any other value and, when the schema allows it, stored as the
four bytes ``null`` (Confluent's converter hands its serializer a JSON null *node*, not a Java
null, so no tombstone is written).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from jsonschema import Draft7Validator, exceptions, validators
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource, Unresolvable
from referencing.jsonschema import DRAFT7

from .codec import DataError, SchemaError
from .framing import PayloadError
from .json import check_answerable


def compile_schema(schema: str, references: Mapping[str, str] | None = None) -> JsonSchemaCodec:
    """Compile schema text; ``references`` maps reference names to schema text."""
    document = _load(schema, "Schema")
    if not isinstance(document, dict | bool):
        raise SchemaError("Schema must be a JSON object or a boolean")
    cls = validators.validator_for(document, default=Draft7Validator)
    try:
        cls.check_schema(document)
    except exceptions.SchemaError as exc:
        raise SchemaError(f"{_where(exc.absolute_path)}: {exc.message}") from None
    resources: dict[str, Resource[Any]] = {}
    for name, text in (references or {}).items():
        ref = _load(text, f"Referenced schema {name!r}")
        resource = Resource.from_contents(ref, default_specification=DRAFT7)
        resources[name] = resource
        if isinstance(ref, dict) and isinstance(ref.get("$id"), str):
            resources[ref["$id"]] = resource
    # referencing's attrs classes take these keywords; its annotations hide them from mypy.
    registry: Registry[Any] = Registry(retrieve=_by_name(resources)).with_resources(  # type: ignore[call-arg]
        resources.items()
    )
    return JsonSchemaCodec(cls(document, registry=registry, format_checker=cls.FORMAT_CHECKER))


class JsonSchemaCodec:
    format = "jsonschema"

    def __init__(self, validator: Any) -> None:
        self._validator = validator

    def encode(self, value: Any) -> bytes | None:
        try:
            error = exceptions.best_match(self._validator.iter_errors(value))
        except Unresolvable as exc:  # a $ref no reference provides: the schema's fault
            raise SchemaError(f"Unresolvable reference: {exc}") from None
        except RecursionError:  # a value deep enough to exhaust the validator's recursion
            raise DataError("the value is nested too deeply to validate") from None
        if error is not None:
            raise DataError(f"{_where(error.absolute_path)}: {error.message}")
        return orjson.dumps(value)

    def decode(self, payload: bytes | memoryview) -> Any:
        try:
            value = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise PayloadError(f"Malformed JSON payload: {exc}") from None
        check_answerable(payload, value)
        return value


def _load(text: str, what: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise SchemaError(f"{what} is not valid JSON: {exc}") from None


def _where(path: Any) -> str:
    """A JSON pointer in everit's style (``#/items/0``), as Confluent's messages show it."""
    return "#" + "".join(f"/{p}" for p in path)


def _by_name(resources: Mapping[str, Resource[Any]]) -> Any:
    """Find a reference whose name ends the requested URI: a ``$ref: "other.json"`` inside a
    schema with an ``$id`` resolves to an absolute URI that only ends in the reference name."""

    def retrieve(uri: str) -> Resource[Any]:
        for name, resource in resources.items():
            if uri.endswith("/" + name) or uri.rstrip("#") == name:
                return resource
        raise NoSuchResource(ref=uri)  # type: ignore[call-arg]

    return retrieve
