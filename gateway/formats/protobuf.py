"""The ``protobuf`` embedded format: proto3 JSON over HTTP, protobuf binary in Kafka.

Schemas arrive as ``.proto`` source (what the registry stores), so they are compiled at run
time: grpcio-tools' bundled ``protoc`` turns the source, its registry references (written out
under their import names) and the well-known types it ships into a ``FileDescriptorSet``; a
private descriptor pool per schema then yields message classes. A private pool because two
versions of one schema declare the same message names with different fields.

protoc runs as a child process (``python -m grpc_tools.protoc``), not through grpcio-tools'
in-process entry point: that one prints errors and warnings straight to the process's stderr
where they cannot be captured, and a protoc crash on hostile input would take the gateway down
with it. The ~0.2 s this costs is paid once per schema id (codecs are cached), in a worker
thread (the caller runs :func:`compile_schema` off the event loop).

Produce writes the file's first message (Confluent's ``ProtobufSchema.toMessage`` choice) and
Confluent's message indexes before the payload (:mod:`gateway.formats.framing`). Consume reads
whichever message the indexes name. JSON follows Confluent's converter: ``JsonFormat`` field
names (lowerCamelCase), fields without presence printed even at their default, 64-bit integers
as strings, enums by name, bytes as base64, fields in field-number order.
"""

from __future__ import annotations

import os
import posixpath
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import DecodeError, Message

from .codec import DataError, SchemaError
from .framing import PayloadError, decode_indexes, encode_indexes

_PROTOC_TIMEOUT_S = 30
_FIRST_MESSAGE = encode_indexes([0])


def compile_schema(schema: str, references: Mapping[str, str] | None = None) -> ProtobufCodec:
    """Compile ``.proto`` source; ``references`` maps import paths to ``.proto`` source."""
    references = dict(references or {})
    main = "schema.proto"
    while main in references:
        main = "_" + main
    files = _compile(main, schema, references)
    pool = descriptor_pool.DescriptorPool()
    for proto in files.file:
        pool.Add(proto)
    root = next(p for p in files.file if p.name == main)
    if not root.message_type:
        raise SchemaError("The schema declares no message")
    package = f"{root.package}." if root.package else ""
    top = [pool.FindMessageTypeByName(package + m.name) for m in root.message_type]
    return ProtobufCodec(top)


class ProtobufCodec:
    format = "protobuf"

    def __init__(self, top_level: list[Any]) -> None:
        self._top = top_level
        self._classes: dict[tuple[int, ...], type[Message]] = {}
        self._first = self._class((0,))

    def encode(self, value: Any) -> bytes | None:
        message = self._first()
        if not isinstance(value, dict):
            # JsonFormat's answer for anything but an object where a message is expected.
            kind = "null" if value is None else type(value).__name__
            raise DataError(f"Expect message object but got: {kind}")
        try:
            json_format.ParseDict(value, message)
        except json_format.ParseError as exc:
            raise DataError(str(exc)) from None
        data: bytes = message.SerializeToString()
        return _FIRST_MESSAGE + data

    def decode(self, payload: bytes | memoryview) -> Any:
        indexes, used = decode_indexes(payload)
        cls = self._class(tuple(indexes))
        try:
            message = cls.FromString(bytes(payload[used:]))
        except DecodeError as exc:
            raise PayloadError(f"Malformed protobuf data: {exc}") from None
        return to_json(message)

    def _class(self, indexes: tuple[int, ...]) -> type[Message]:
        cls = self._classes.get(indexes)
        if cls is None:
            cls = message_factory.GetMessageClass(self._descriptor(indexes))
            self._classes[indexes] = cls
        return cls

    def _descriptor(self, indexes: tuple[int, ...]) -> Any:
        try:
            descriptor = self._top[indexes[0]]
            for i in indexes[1:]:
                descriptor = descriptor.nested_types[i]
        except IndexError:
            raise PayloadError(
                f"Invalid message indexes {list(indexes)}: the schema has no such message"
            ) from None
        return descriptor


def to_json(message: Message) -> Any:
    """Confluent's ``JsonFormat.printer().includingDefaultValueFields()`` output."""
    printed = json_format.MessageToDict(message, always_print_fields_with_no_presence=True)
    return _in_field_order(printed, message.DESCRIPTOR)


def _in_field_order(value: Any, descriptor: Any) -> Any:
    # Java prints fields in field-number order; Python prints set fields first, then the
    # defaults. Same JSON object, but clients that diff outputs deserve the same text.
    if not isinstance(value, dict) or descriptor.full_name.startswith("google.protobuf."):
        return value
    out = {}
    for field in sorted(descriptor.fields, key=lambda f: f.number):
        key = field.json_name
        if key not in value:
            continue
        item = value[key]
        sub = field.message_type
        if sub is not None:
            if sub.GetOptions().map_entry:
                inner = sub.fields_by_name["value"].message_type
                if inner is not None:
                    item = {k: _in_field_order(v, inner) for k, v in item.items()}
            elif _repeated(field):
                item = [_in_field_order(v, sub) for v in item]
            else:
                item = _in_field_order(item, sub)
        out[key] = item
    for key, item in value.items():  # extensions, printed as "[full.name]"
        out.setdefault(key, item)
    return out


def _repeated(field: Any) -> bool:
    flag = getattr(field, "is_repeated", None)
    if flag is not None:
        return bool(flag)
    return bool(field.label == field.LABEL_REPEATED)  # protobuf before 6.x


# --- protoc -------------------------------------------------------------------------------------


def _compile(main: str, schema: str, references: Mapping[str, str]) -> Any:
    with tempfile.TemporaryDirectory(prefix="event-gateway-proto-") as root:
        for name, text in {**references, main: schema}.items():
            _write(root, name, text)
        out = os.path.join(root, "__descriptor_set__.pb")
        try:
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "grpc_tools.protoc",
                    f"-I{root}",
                    "--include_imports",
                    f"--descriptor_set_out={out}",
                    main,
                ],
                cwd=root,
                capture_output=True,
                timeout=_PROTOC_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise SchemaError(f"protoc did not finish within {_PROTOC_TIMEOUT_S} s") from None
        if done.returncode != 0:
            errors = [
                line.replace(root + os.sep, "")
                for line in done.stderr.decode("utf-8", "replace").splitlines()
                if line.strip() and "warning:" not in line
            ]
            raise SchemaError("; ".join(errors) or f"protoc failed ({done.returncode})")
        with open(out, "rb") as fh:
            return descriptor_pb2.FileDescriptorSet.FromString(fh.read())


def _write(root: str, name: str, text: str) -> None:
    clean = posixpath.normpath(name)
    if not name or clean.startswith(("/", "..")) or "\\" in name:
        raise SchemaError(f"Invalid reference name {name!r}: it must be a relative import path")
    path = os.path.join(root, *clean.split("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
