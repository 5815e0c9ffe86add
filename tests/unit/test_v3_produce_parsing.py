"""v3 produce without a broker: the body splitter, record validation, result timestamps."""

from __future__ import annotations

import random

import orjson
import pytest

from gateway.v3.records_request import RecordError, parse_record
from gateway.v3.records_schemas import record_name
from gateway.v3.records_sender import instant
from gateway.v3.records_stream import TOO_LARGE, StreamBroken, ValueSplitter


def split(chunks: list[bytes], limit: int = 1 << 20) -> list[object]:
    splitter = ValueSplitter(limit)
    out: list[object] = []
    for chunk in chunks:
        splitter.feed(chunk)
        while (item := splitter.take()) is not None:
            out.append(item[0])
    splitter.end()
    while (item := splitter.take()) is not None:
        out.append(item[0])
    return out


OBJECTS = [
    {"value": {"type": "STRING", "data": 'a "quoted" } { value \\ é🙂'}},
    {},
    {"key": {"type": "JSON", "data": [1, 2.5, -3e2, True, False, None, {"x": "}"}]}},
    {"value": {"type": "JSON", "data": 12345678901234567890}},
]


@pytest.mark.parametrize("sep", ["", "\n", " \r\n\t "])
def test_every_cut_of_the_body_gives_the_same_values(sep: str) -> None:
    body = sep.join(orjson.dumps(o).decode() for o in OBJECTS).encode()
    for cut in range(1, len(body)):  # each byte position, UTF-8 characters included
        assert split([body[:cut], body[cut:]]) == OBJECTS, cut
    rng = random.Random(3)
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(body)), 5))
        parts = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
        assert split(parts) == OBJECTS


def test_bare_scalars_wait_for_their_end() -> None:
    assert split([b"12", b"3 4", b"5"]) == [123, 45]
    assert split([b"tr", b"ue nu", b"ll"]) == [True, None]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"a": nope} {}', "Error processing JSON: Expecting value"),
        (
            b'{"a": 1,, }',
            "Error processing JSON: Expecting property name enclosed in double quotes",
        ),
        (b'{"a": NaN}', "Error processing JSON: Non-standard token 'NaN'"),
        (b'{"a": 1', "Error processing JSON: Expecting ',' delimiter"),
        (b'{"a": "\xff"}', None),
        (b"[" * 5000 + b"]" * 5000, None),
    ],
)
def test_malformed_bodies_break_the_stream(body: bytes, message: str | None) -> None:
    with pytest.raises(StreamBroken) as caught:
        split([body])
    if message is not None:
        assert caught.value.message == message


def test_a_malformed_value_is_reported_without_waiting_for_the_end() -> None:
    splitter = ValueSplitter(1 << 20)
    splitter.feed(b'{"a": 1} {"b": oops} {"c": ')
    assert splitter.take() == ({"a": 1}, 8)
    with pytest.raises(StreamBroken):
        splitter.take()


def test_a_value_over_the_limit_breaks_the_stream_before_it_is_whole() -> None:
    splitter = ValueSplitter(100)
    splitter.feed(b'{"ok": 1}{"big": "' + b"x" * 150)
    assert splitter.take() == ({"ok": 1}, 9)
    with pytest.raises(StreamBroken) as caught:
        splitter.take()
    assert caught.value.message == TOO_LARGE
    whole = ValueSplitter(20)
    whole.feed(b'{"big": "' + b"x" * 30 + b'"}')
    with pytest.raises(StreamBroken):
        whole.take()


def test_latin1_bodies() -> None:
    splitter = ValueSplitter(1000, "latin-1")
    splitter.feed('{"v": "café"}'.encode("latin-1"))
    assert splitter.take() == ({"v": "café"}, 14)  # its size as UTF-8


def test_records_parse_into_kafka_parts() -> None:
    record = parse_record(
        {
            "partition_id": "2",
            "key": {"type": "BINARY", "data": "AAE"},  # unpadded: Guava's rules accept it
            "value": {"type": "JSON", "data": {"b": [1, "x"]}},
            "headers": [
                {"name": "a", "value": "AQ=="},
                {"name": "b", "value": None},
                {"name": "a", "value": ""},
            ],
            "timestamp": "2024-05-01T12:00:00.1239+02:00",
        }
    )
    assert record.partition == 2
    assert (record.key, record.value) == (b"\x00\x01", b'{"b":[1,"x"]}')
    assert record.headers == [("a", b"\x01"), ("a", b""), ("b", None)]
    assert record.timestamp == 1_714_557_600_123
    assert (record.key_info, record.value_info) == ({"type": "BINARY"}, {"type": "JSON"})


@pytest.mark.parametrize(
    ("stamp", "millis"),
    [
        (1_714_557_600, 1_714_557_600_000),
        (1_714_557_600.5, 1_714_557_600_500),
        (1.001, 1001),
        ("1970-01-01T00:00:00Z", 0),
        ("2024-05-01T10:00:00.123456Z", 1_714_557_600_123),
    ],
)
def test_timestamps(stamp: object, millis: int) -> None:
    assert parse_record({"timestamp": stamp}).timestamp == millis


@pytest.mark.parametrize(
    "obj",
    [
        {"timestamp": True},
        {"timestamp": [1]},
        {"headers": [{"name": "\ud800", "value": None}]},
        {"value": {"type": "STRING", "data": "\ud800"}},
        {"value": {"type": "JSON", "data": 1 << 70}},
        {"key": {"subject": "s", "subject_name_strategy": "TOPIC_NAME"}},
        {"key": {"subject_name_strategy": "OTHER"}},
        {"key": {"schema": "{}"}},
        {"key": "AAAA"},
    ],
)
def test_record_mistakes_are_400(obj: object) -> None:
    with pytest.raises(RecordError) as caught:
        parse_record(obj)
    assert caught.value.code == 400
    assert caught.value.message.startswith("Bad Request: ")


def test_null_sides_are_absent_sides() -> None:
    record = parse_record({"key": None, "value": {"type": "STRING"}})
    assert (record.key, record.value, record.key_info) == (None, None, None)
    assert record.value_info == {"type": "STRING"}


@pytest.mark.parametrize(
    ("millis", "text"),
    [
        (0, "1970-01-01T00:00:00Z"),
        (1_678_370_843_592, "2023-03-09T14:07:23.592Z"),
        (1_678_370_843_500, "2023-03-09T14:07:23.500Z"),
        (1_678_370_843_000, "2023-03-09T14:07:23Z"),
        (1_678_370_843_005, "2023-03-09T14:07:23.005Z"),
    ],
)
def test_result_timestamps_are_java_instants(millis: int, text: str) -> None:
    assert instant(millis) == text
    assert instant(millis) == text  # the cached path too


def test_record_names_for_the_record_name_strategies() -> None:
    avro = '{"type":"record","name":"User","namespace":"ex.ns","fields":[]}'
    assert record_name("AVRO", avro) == "ex.ns.User"
    assert (
        record_name("AVRO", '{"type":"record","name":"a.B","namespace":"x","fields":[]}') == "a.B"
    )
    assert record_name("JSON", '{"title":"Order","type":"object"}') == "Order"
    assert (
        record_name("PROTOBUF", 'syntax = "proto3";\npackage shop;\nmessage Item {}') == "shop.Item"
    )
    assert record_name("AVRO", '"string"') is None


def test_an_object_closed_without_a_newline_is_taken_at_once() -> None:
    """Full duplex: a client sends one object (no newline) and waits for its result."""
    splitter = ValueSplitter(1 << 20)
    splitter.feed(b'{"value": {"type": "STRING", ')
    assert splitter.take() is None
    splitter.feed(b'"data": "x"}}')
    assert splitter.take() == ({"value": {"type": "STRING", "data": "x"}}, 42)


def test_pretty_printed_objects_over_many_lines() -> None:
    body = b'{\n  "value": {\n    "type": "JSON",\n    "data": [1,\n 2]\n  }\n}\n{"key": null}\n'
    expected = [{"value": {"type": "JSON", "data": [1, 2]}}, {"key": None}]
    for cut in range(1, len(body)):
        assert split([body[:cut], body[cut:]]) == expected, cut


def test_a_large_object_in_small_chunks_is_not_rescanned_every_chunk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    big = orjson.dumps({"value": {"type": "JSON", "data": [{"n": i} for i in range(20_000)]}})
    scans = 0
    original = ValueSplitter._scan

    def counted(self: ValueSplitter) -> None:
        nonlocal scans
        scans += 1
        original(self)

    monkeypatch.setattr(ValueSplitter, "_scan", counted)
    chunks = [big[i : i + 300] for i in range(0, len(big), 300)]  # about 1,000 chunks
    assert split(chunks) == [orjson.loads(big)]
    assert scans < 100  # each rescan waits for a quarter more (or a closing brace at the end)
