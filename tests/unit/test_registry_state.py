"""Replay of the ``_schemas`` log into the built-in registry's view, and its record format."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiokafka import ConsumerRecord

from gateway.config import Config
from gateway.registry.builtin import RegistryService, wire
from gateway.registry.builtin.identity import MAX_NESTING, SchemaTooDeep, identity
from gateway.registry.builtin.model import Reference, SchemaText
from gateway.registry.builtin.parsing import InvalidSchema, parse
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


def test_an_id_orphaned_by_a_racing_writer_is_not_given_to_another_schema() -> None:
    """Two writers without the lock register A under x v1 with ids 3 and 4; the second record
    overwrites the slot, leaving id 3 without users, but the first writer already answered 3.
    A third writer's record giving 3 to B must be ignored (its writer retries), or id 3 would
    decode two schemas (seen in CI: test_without_the_lock_ids_still_never_collide)."""
    state = replay(schema("x", 1, 3, A), schema("x", 1, 4, A), schema("y", 1, 3, B))
    assert state.schema(3) is not None and state.schema(3).schema == A
    assert state.version("y", 1) is None


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


# --- malformed records: anything may write the topic; replay skips them, never stalls ----------


def nested_avro(depth: int) -> str:
    return '{"type":' * depth + '"int"' + "}" * depth


def nested_json(depth: int) -> str:
    return "[" * depth + "]" * depth


def schema_value(**v: Any) -> bytes:
    return orjson.dumps({"subject": "s", "version": 1, "id": 1, "schema": A.text, **v})


SCHEMA_KEY = wire.schema_key("s", 1)
MALFORMED: list[tuple[bytes | None, bytes | None]] = [
    (None, b"{}"),
    (b"\xff\xfe\x00 not json", b"\x00garbage"),
    (b"[1, 2]", b"{}"),
    (nested_json(2000).encode(), b"{}"),  # a key too deep for any JSON parser here
    (SCHEMA_KEY, b"not json"),
    (SCHEMA_KEY, schema_value(schema=nested_avro(1000))),  # RecursionError when normalized
    (SCHEMA_KEY, schema_value(schema=nested_json(5000), schemaType="JSON")),
    (SCHEMA_KEY, schema_value(schema=nested_json(201), schemaType="JSON")),  # just too deep
    (SCHEMA_KEY, schema_value(id=2**40)),  # no client could frame it: must not become max_id
    (SCHEMA_KEY, schema_value(id=0)),
    (SCHEMA_KEY, schema_value(id="1")),
    (SCHEMA_KEY, schema_value(references="oops")),
    (SCHEMA_KEY, schema_value(references=[1])),
    (SCHEMA_KEY, schema_value(schemaType=5)),
    (b'{"keytype":"SCHEMA","subject":"s","version":-1,"magic":1}', schema_value()),
    (wire.config_key(None), b'{"compatibilityLevel":"LOOSE"}'),  # would read as no checks
    (wire.config_key("s"), b'{"compatibilityLevel":7}'),
]


def record(offset: int, key: bytes | None, value: bytes | None) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord("_schemas", 0, offset, 0, 0, key, value, None, 0, 0, [])


def test_each_malformed_record_is_refused_by_the_decoder() -> None:
    for key, value in MALFORMED:
        with pytest.raises((wire.BadRecord, SchemaTooDeep, RecursionError)):
            rec = wire.decode(key, value)
            if isinstance(rec, wire.SchemaRecord):
                identity(rec.schema)


def test_nesting_bound_is_exact_and_deterministic() -> None:
    ok = SchemaText("JSON", nested_json(MAX_NESTING))
    assert identity(ok) == identity(SchemaText("JSON", " " + ok.text))
    for depth in (MAX_NESTING + 1, 1000, 5000):
        with pytest.raises(SchemaTooDeep):
            identity(SchemaText("JSON", nested_json(depth)))
    # An object as "type" is no primitive (and no reason to crash the normalizer).
    for text in ('{"type": {"type": "int"}}', '{"type": ["null", "int"]}'):
        assert isinstance(orjson.loads(identity(SchemaText("AVRO", text))[1]), dict)
    # A client's schema this deep is an invalid schema (422), not a crash.
    for text in (nested_avro(1000), nested_json(5000)):
        with pytest.raises(InvalidSchema, match="levels deep"):
            parse(SchemaText("AVRO", text))


async def test_replay_skips_and_counts_malformed_records_between_good_ones() -> None:
    service = RegistryService(Config())
    good = [
        schema("a", 1, 1, A),
        *MALFORMED,
        wire.encode_config(None, "FULL"),
        schema("b", 1, 2, B),
    ]
    await service._apply([record(i, k, v) for i, (k, v) in enumerate(good)])
    assert service.skipped_records == len(MALFORMED)
    state = service.state
    assert state.subjects() == ["a", "b"] and state.max_id == 2
    assert state.schema(1) is not None and state.schema(1).schema == A
    assert state.level(None) == "FULL"
    # The skip is per record: a later batch is applied as usual.
    await service._apply([record(len(good), *schema("c", 1, 3, A))])
    assert state.subjects() == ["a", "b", "c"] and service.skipped_records == len(MALFORMED)
