"""Avro reader/writer compatibility (the built-in registry's checker), case by case.

Expectations follow the Avro specification's schema-resolution rules as Avro's Java
``SchemaCompatibility`` (what Confluent's registry runs) applies them.
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway.registry.builtin.avro import AvroSchema, InvalidAvro, parse_avro
from gateway.registry.builtin.avro_compat import incompatibilities, is_compatible
from gateway.registry.builtin.compatibility import avro_level_errors


def avro(doc: Any) -> AvroSchema:
    return parse_avro(doc)


def record(*fields: dict[str, Any], name: str = "R", **extra: Any) -> AvroSchema:
    return avro({"type": "record", "name": name, "fields": list(fields), **extra})


def f(name: str, type_: Any, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, **extra}


def reads(reader: AvroSchema, writer: AvroSchema) -> bool:
    return is_compatible(reader, writer)


# --- primitives and promotions ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("writer", "reader"),
    [
        ("int", "int"),
        ("int", "long"),
        ("int", "float"),
        ("int", "double"),
        ("long", "float"),
        ("long", "double"),
        ("float", "double"),
        ("string", "bytes"),
        ("bytes", "string"),
        ("null", "null"),
    ],
)
def test_promotions_that_resolve(writer: str, reader: str) -> None:
    assert reads(avro(reader), avro(writer))


@pytest.mark.parametrize(
    ("writer", "reader"),
    [
        ("long", "int"),
        ("double", "float"),
        ("float", "long"),
        ("int", "string"),
        ("boolean", "int"),
        ("null", "string"),
        ("string", "null"),
    ],
)
def test_narrowing_or_unrelated_types_do_not_resolve(writer: str, reader: str) -> None:
    problems = incompatibilities(avro(reader), avro(writer))
    assert problems and "TYPE_MISMATCH" in problems[0]


def test_logical_types_are_ignored_as_avro_does() -> None:
    decimal = avro({"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 2})
    assert reads(decimal, avro("bytes"))
    assert reads(avro("bytes"), decimal)


# --- records ---------------------------------------------------------------------------------


def test_field_added_with_default_is_backward_not_forward_breaking() -> None:
    old = record(f("a", "int"))
    new = record(f("a", "int"), f("b", "string", default=""))
    assert reads(new, old)  # new reader fills b from its default
    assert reads(old, new)  # old reader skips b


def test_field_added_without_default_breaks_backward_only() -> None:
    old = record(f("a", "int"))
    new = record(f("a", "int"), f("b", "string"))
    problems = incompatibilities(new, old)
    assert len(problems) == 1 and "READER_FIELD_MISSING_DEFAULT_VALUE" in problems[0]
    assert "'b'" in problems[0]
    assert reads(old, new)


def test_removed_field_needs_a_default_in_the_old_reader_for_forward() -> None:
    with_default = record(f("a", "int"), f("b", "string", default="x"))
    without_default = record(f("a", "int"), f("b", "string"))
    new = record(f("a", "int"))
    assert reads(new, with_default) and reads(new, without_default)  # backward: fine
    assert reads(with_default, new)  # forward: old reader uses its default
    assert not reads(without_default, new)


def test_field_type_promotion_and_narrowing_inside_records() -> None:
    assert reads(record(f("a", "long")), record(f("a", "int")))
    assert not reads(record(f("a", "int")), record(f("a", "long")))


def test_field_renamed_through_a_reader_alias() -> None:
    old = record(f("old_name", "int"))
    new = record(f("new_name", "int", aliases=["old_name"]))
    assert reads(new, old)
    assert not reads(record(f("new_name", "int")), old)


def test_records_match_by_unqualified_name_or_alias() -> None:
    a = record(f("x", "int"), name="a.Rec")
    b = record(f("x", "int"), name="b.Rec")
    assert reads(a, b)  # namespaces differ, names equal: Avro Java accepts
    other = record(f("x", "int"), name="Other")
    problems = incompatibilities(other, a)
    assert problems and "NAME_MISMATCH" in problems[0]
    renamed = record(f("x", "int"), name="Other", aliases=["a.Rec"])
    assert reads(renamed, a)


def test_nested_record_changes_are_found_with_their_path() -> None:
    def outer(inner_fields: list[dict[str, Any]]) -> AvroSchema:
        inner = {"type": "record", "name": "Inner", "fields": inner_fields}
        return record(f("inner", inner))

    old = outer([f("x", "int")])
    new = outer([f("x", "int"), f("y", "int")])
    problems = incompatibilities(new, old)
    assert problems and "/fields/0/type/fields/1" in problems[0]


def test_recursive_schemas_terminate() -> None:
    def linked(extra: list[dict[str, Any]]) -> AvroSchema:
        return record(
            f("value", "int"), f("next", ["null", "Node"], default=None), *extra, name="Node"
        )

    assert reads(linked([]), linked([]))
    assert reads(linked([f("tag", "string", default="")]), linked([]))
    assert not reads(linked([f("tag", "string")]), linked([]))


# --- unions ----------------------------------------------------------------------------------


def test_reader_union_needs_a_branch_for_the_writer_type() -> None:
    assert reads(avro(["null", "int"]), avro("int"))
    assert reads(avro(["null", "long"]), avro("int"))  # via promotion
    problems = incompatibilities(avro(["null", "string"]), avro("int"))
    assert problems and "MISSING_UNION_BRANCH" in problems[0]


def test_writer_union_needs_every_branch_readable() -> None:
    assert not reads(avro("int"), avro(["null", "int"]))  # the null branch
    assert reads(avro("long"), avro(["int", "long"]))
    assert reads(avro(["null", "int", "string"]), avro(["null", "int"]))  # branch added
    assert not reads(avro(["null", "int"]), avro(["null", "int", "string"]))  # branch removed


def test_making_a_field_optional_is_backward_compatible() -> None:
    old = record(f("a", "string"))
    new = record(f("a", ["null", "string"], default=None))
    assert reads(new, old)
    assert not reads(old, new)


# --- enums, fixed, arrays, maps --------------------------------------------------------------


def enum(*symbols: str, **extra: Any) -> AvroSchema:
    return avro({"type": "enum", "name": "E", "symbols": list(symbols), **extra})


def test_enum_symbols() -> None:
    assert reads(enum("A", "B", "C"), enum("A", "B"))  # reader knows more
    problems = incompatibilities(enum("A", "B"), enum("A", "B", "C"))
    assert problems and "MISSING_ENUM_SYMBOLS" in problems[0] and "C" in problems[0]
    assert reads(enum("A", "B", default="A"), enum("A", "B", "C"))  # reader default
    renamed = avro({"type": "enum", "name": "F", "symbols": ["A", "B"]})
    assert not reads(renamed, enum("A", "B"))


def test_fixed_size_and_name() -> None:
    def fixed(size: int, name: str = "F") -> AvroSchema:
        return avro({"type": "fixed", "name": name, "size": size})

    assert reads(fixed(16), fixed(16))
    problems = incompatibilities(fixed(16), fixed(8))
    assert problems and "FIXED_SIZE_MISMATCH" in problems[0]
    assert not reads(fixed(16, "G"), fixed(16))


def test_arrays_and_maps_compare_recursively() -> None:
    assert reads(avro({"type": "array", "items": "long"}), avro({"type": "array", "items": "int"}))
    assert not reads(
        avro({"type": "array", "items": "int"}), avro({"type": "array", "items": "long"})
    )
    assert reads(
        avro({"type": "map", "values": "double"}), avro({"type": "map", "values": "float"})
    )
    problems = incompatibilities(
        avro({"type": "map", "values": "int"}), avro({"type": "map", "values": "string"})
    )
    assert problems and "/values" in problems[0]
    assert not reads(
        avro({"type": "array", "items": "int"}), avro({"type": "map", "values": "int"})
    )


# --- levels ----------------------------------------------------------------------------------

V1 = record(f("f", "string"))
V2 = record()  # f removed
V3 = record(f("f", "int", default=0))  # f back, with another type


def test_backward_checks_only_the_latest_and_transitive_checks_all() -> None:
    newest_first = [V2, V1]
    assert avro_level_errors("BACKWARD", V3, newest_first) == []
    problems = avro_level_errors("BACKWARD_TRANSITIVE", V3, newest_first)
    assert problems and "TYPE_MISMATCH" in problems[0]


def test_forward_and_full_levels() -> None:
    old = record(f("a", "int"), f("b", "int"))
    new = record(f("a", "int"))  # removes b, which has no default in old
    assert avro_level_errors("BACKWARD", new, [old]) == []
    assert avro_level_errors("FORWARD", new, [old])
    assert avro_level_errors("FULL", new, [old])
    added = record(f("a", "int"), f("b", "int"), f("c", "int", default=1))
    assert avro_level_errors("FULL", added, [old]) == []
    assert avro_level_errors("FORWARD_TRANSITIVE", added, [old, record(f("a", "int"))]) == []
    assert avro_level_errors("FULL_TRANSITIVE", new, [record(f("a", "int")), old])


def test_none_and_first_version_always_pass() -> None:
    assert avro_level_errors("NONE", avro("string"), [avro("int")]) == []
    assert avro_level_errors("FULL_TRANSITIVE", avro("string"), []) == []


# --- what the parser refuses (Confluent would too) ---------------------------------------------


@pytest.mark.parametrize(
    "doc",
    [
        {"type": "record", "name": "R", "fields": [f("a", "int"), f("a", "long")]},
        {"type": "record", "name": "R"},
        {"type": "record", "name": "1R", "fields": []},
        {"type": "record", "name": "R", "fields": [f("a", "int", default="x")]},
        {"type": "enum", "name": "E", "symbols": ["A", "A"]},
        {"type": "fixed", "name": "F"},
        ["int", "int"],
        ["null", ["int", "string"]],
        {"type": "nosuchtype"},
        {"type": "record", "name": "R", "fields": [f("a", "Missing")]},
    ],
)
def test_invalid_schemas_are_refused(doc: Any) -> None:
    with pytest.raises(InvalidAvro):
        parse_avro(doc)


def test_references_supply_named_types() -> None:
    dep = {
        "type": "record",
        "name": "Address",
        "namespace": "acme",
        "fields": [f("city", "string")],
    }
    schema = parse_avro(
        {"type": "record", "name": "User", "fields": [f("addr", "acme.Address")]}, [dep]
    )
    assert "acme.Address" in schema.names
    newer_dep = {
        "type": "record",
        "name": "Address",
        "namespace": "acme",
        "fields": [f("city", "string"), f("zip", "string")],
    }
    newer = parse_avro(
        {"type": "record", "name": "User", "fields": [f("addr", "acme.Address")]}, [newer_dep]
    )
    problems = incompatibilities(newer, schema)
    assert problems and "zip" in problems[0]
