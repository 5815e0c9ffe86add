"""Replay of the ``_schemas`` log into the built-in registry's view, and its record format."""

from __future__ import annotations

import orjson

from gateway.registry.builtin import wire
from gateway.registry.builtin.identity import identity
from gateway.registry.builtin.model import Reference, SchemaText
from gateway.registry.builtin.state import RegistryState

A = SchemaText("AVRO", '{"type":"record","name":"A","fields":[]}')
B = SchemaText("AVRO", '{"type":"record","name":"B","fields":[]}')


def replay(*records: tuple[bytes, bytes | None]) -> RegistryState:
    state = RegistryState()
    for key, value in records:
        rec = wire.decode(key, value)
        if rec is not None:
            state.apply(rec)
    return state


def schema(
    subject: str, version: int, schema_id: int, text: SchemaText, deleted: bool = False
) -> tuple[bytes, bytes]:
    return wire.encode_schema(wire.SchemaRecord(subject, version, schema_id, text, deleted))


def test_keys_are_byte_identical_to_confluents() -> None:
    key, value = schema("s", 3, 7, SchemaText("JSON", "{}", (Reference("r", "t", 1),)))
    assert key == b'{"keytype":"SCHEMA","subject":"s","version":3,"magic":1}'
    assert orjson.loads(value) == {
        "subject": "s",
        "version": 3,
        "id": 7,
        "schemaType": "JSON",
        "references": [{"name": "r", "subject": "t", "version": 1}],
        "schema": "{}",
        "deleted": False,
    }
    assert wire.encode_config(None, "FULL") == (
        b'{"keytype":"CONFIG","magic":0}',
        b'{"compatibilityLevel":"FULL"}',
    )
    assert wire.encode_config("s", None) == (b'{"keytype":"CONFIG","subject":"s","magic":0}', None)
    assert wire.encode_delete_subject("s", 2) == (
        b'{"keytype":"DELETE_SUBJECT","subject":"s","magic":0}',
        b'{"subject":"s","version":2}',
    )
    _, avro_value = schema("s", 1, 1, A)
    assert b"schemaType" not in avro_value and b"references" not in avro_value


def test_first_record_claiming_an_id_wins() -> None:
    state = replay(schema("x", 1, 1, A), schema("y", 1, 1, B), schema("y", 2, 2, B))
    assert state.schema(1).schema == A
    assert state.versions("y") and [v.version for v in state.versions("y")] == [2]
    assert state.max_id == 2
    # The same schema under another id is not a conflict (a registry may hold duplicates).
    state = replay(schema("x", 1, 1, A), schema("z", 1, 5, A))
    assert state.schema(5).schema == A and state.id_for(identity(A)) == 1


def test_delete_subject_and_tombstones() -> None:
    state = replay(
        schema("s", 1, 1, A),
        schema("s", 2, 2, B),
        wire.encode_delete_subject("s", 1),
        wire.encode_tombstone("s", 2),
    )
    assert [v.deleted for v in state.versions("s", include_deleted=True)] == [True]
    assert state.schema(2) is None  # every version holding it is gone
    assert state.schema(1) is not None  # soft-deleted: still decodable
    assert state.next_version("s") == 2


def test_an_id_freed_by_permanent_deletes_may_name_another_schema() -> None:
    state = replay(schema("s", 1, 4, A), wire.encode_tombstone("s", 1), schema("t", 1, 4, B))
    assert state.schema(4).schema == B
    assert state.id_for(identity(A)) is None and state.id_for(identity(B)) == 4


def test_levels() -> None:
    state = replay(wire.encode_config(None, "FULL"), wire.encode_config("s", "NONE"))
    assert (state.level("s"), state.level("t"), state.configured_level("t")) == (
        "NONE",
        "FULL",
        None,
    )
    state.apply(wire.decode(*wire.encode_config("s", None)))
    assert state.level("s") == "FULL"


def test_identity_ignores_formatting_but_not_meaning() -> None:
    pretty = SchemaText("AVRO", '{\n  "name": "A", "type": "record",\n "fields": []}')
    assert identity(pretty) == identity(A)
    assert identity(SchemaText("AVRO", '{"type": "int"}')) == identity(SchemaText("AVRO", '"int"'))
    with_default = '{"type":"record","name":"A","fields":[{"name":"f","type":"int","default":1}]}'
    without = '{"type":"record","name":"A","fields":[{"name":"f","type":"int"}]}'
    assert identity(SchemaText("AVRO", with_default)) != identity(SchemaText("AVRO", without))
    assert identity(SchemaText("JSON", A.text)) != identity(A)
    referenced = SchemaText("AVRO", A.text, (Reference("n", "s", 1),))
    assert identity(referenced) != identity(A)
