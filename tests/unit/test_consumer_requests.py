"""Consumer request parsing: Confluent's validation rules without its 500s."""

from __future__ import annotations

from collections.abc import Callable

import orjson
import pytest
from aiokafka import TopicPartition

from gateway import body
from gateway.body import INT64, as_int
from gateway.consume.requests import (
    compile_topic_pattern,
    parse_commit,
    parse_create,
    parse_partitions,
    parse_seek,
    parse_subscription,
    parse_timestamp,
)
from gateway.errors import GatewayError


def test_create_defaults_and_generated_name() -> None:
    spec = parse_create("g", None, "proxy1")
    assert spec.format == "binary"
    assert spec.name.startswith("rest-consumer-proxy1-")
    assert spec.auto_commit_enable is None and spec.auto_offset_reset is None


def test_create_coerces_like_jackson() -> None:
    spec = parse_create(
        "g",
        {
            "name": "n",
            "format": "JSON",
            "auto.commit.enable": False,
            "fetch.min.bytes": "10",
            "requestWaitMs": 250,
        },
    )
    assert (
        spec.format,
        spec.auto_commit_enable,
        spec.fetch_min_bytes,
        spec.request_timeout_ms,
    ) == ("json", False, 10, 250)


def test_legacy_id_wins_over_name() -> None:
    spec = parse_create("g", {"id": "legacy", "name": "n"})
    assert (spec.name, spec.consumer_id) == ("legacy", "legacy")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"format": "xml"}, 422, 422),
        ({"auto.offset.reset": "bad-config"}, 422, 42204),
        ({"auto.commit.enable": "maybe"}, 422, 42204),
        ({"fetch.min.bytes": -2}, 422, 40001),
        ({"fetch.min.bytes": 10_000_001}, 422, 40001),
        ({"unknown": 1}, 422, 422),
        ({"name": "a/b"}, 422, 422),
        ({"fetch.min.bytes": "lots"}, 400, 400),
        ([], 400, 400),
    ],
)
def test_create_rejections(body, status, code) -> None:
    with pytest.raises(GatewayError) as err:
        parse_create("g", body)
    assert (err.value.status, err.value.error_code) == (status, code)


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        ("2020-10-30T19:39:45Z", 1604086785000),
        ("2020-10-30T19:39:45.5Z", 1604086785500),
        ("2020-10-30T21:39:45+0200", 1604086785000),
        ("2020-10-30T21:39:45+02:00", 1604086785000),
        (1604086785, 1604086785000),
    ],
)
def test_timestamps(value, ms) -> None:
    assert parse_timestamp(value) == ms


@pytest.mark.parametrize("value", ["yesterday", "2020-10-30T19:39:45", None, True, {}])
def test_bad_timestamps(value) -> None:
    with pytest.raises(GatewayError) as err:
        parse_timestamp(value)
    assert err.value.status == 422


# --- hostile input: every number range-checked, names bounded, patterns linear ---------------

INT32_OVER, INT64_MAX = 2**31, 2**63 - 1


def _refused(call: Callable[[], object]) -> GatewayError:
    with pytest.raises(GatewayError) as err:
        call()
    return err.value


@pytest.mark.parametrize(
    ("value", "status"),
    [
        (1e300, 400),  # past Java's int: Jackson's 400
        (2**64, 400),
        ("18446744073709551616", 400),
        (-1, 422),
        (300_001, 422),
    ],
)
def test_create_wait_is_bounded(value: object, status: int) -> None:
    err = _refused(lambda: parse_create("g", {"consumer.request.timeout.ms": value}))
    assert err.status == status
    alias = _refused(lambda: parse_create("g", {"requestWaitMs": value}))
    assert alias.status == status


def test_create_wait_limit_is_the_configured_maximum_and_named() -> None:
    assert parse_create("g", {"requestWaitMs": 300_000}).request_timeout_ms == 300_000
    err = _refused(lambda: parse_create("g", {"requestWaitMs": 5001}, max_wait_ms=5000))
    assert (err.status, err.error_code) == (422, 42204)
    assert "5000" in err.message and "consumer.request.timeout.max.ms" in err.message
    assert parse_create("g", {"requestWaitMs": 5000}, max_wait_ms=5000).request_timeout_ms == 5000


def test_create_fetch_min_bytes_past_int_is_a_4xx() -> None:
    assert _refused(lambda: parse_create("g", {"fetch.min.bytes": 1e300})).status == 400


@pytest.mark.parametrize(
    "body",
    [
        {"name": "n" * 256},
        {"id": "n" * 256},
        {"name": "new\nline"},
        {"name": "nul\x00"},
        {"name": "del\x7f"},
        {"name": "c1\x85"},
    ],
)
def test_instance_names_are_bounded(body: dict[str, str]) -> None:
    err = _refused(lambda: parse_create("g", body))
    assert (err.status, err.error_code) == (422, 422)


@pytest.mark.parametrize("group", ["g" * 256, "tab\tgroup", ""])
def test_group_names_are_bounded(group: str) -> None:
    assert _refused(lambda: parse_create(group, None)).status == 422


def test_names_up_to_the_limit_with_any_printable_text_are_fine() -> None:
    spec = parse_create("g" * 255, {"name": "~ ü é spaced " + "n" * 200})
    assert (len(spec.group), spec.name[:13]) == (255, "~ ü é spaced ")
    # A generated name is not the client's: a long configured id never refuses a create.
    assert parse_create("g", None, proxy_id="p" * 300).name.startswith("rest-consumer-ppp")


@pytest.mark.parametrize(
    ("item", "status"),
    [
        ({"topic": "t", "partition": INT32_OVER, "offset": 0}, 400),
        ({"topic": "t", "partition": -1, "offset": 0}, 422),
        ({"topic": "t", "partition": 0, "offset": 2**63}, 400),
        ({"topic": "t", "partition": 0, "offset": INT64_MAX}, 422),  # Kafka stores it + 1
        ({"topic": "t", "partition": 0, "offset": -2}, 422),
        ({"topic": "t", "partition": 0, "offset": 1e300}, 400),
        ({"topic": "t" * 250, "partition": 0, "offset": 0}, 422),
        ({"topic": "a b", "partition": 0, "offset": 0}, 422),
        ({"topic": "..", "partition": 0, "offset": 0}, 422),
    ],
)
def test_commit_ranges(item: dict[str, object], status: int) -> None:
    assert _refused(lambda: parse_commit({"offsets": [item]})).status == status


def test_commit_extremes_that_fit() -> None:
    got = parse_commit(
        {
            "offsets": [
                {"topic": "t" * 249, "partition": 2**31 - 1, "offset": INT64_MAX - 1},
                {"topic": "a.b_c-D9", "partition": 0, "offset": -1},
            ]
        }
    )
    assert got == {
        TopicPartition("t" * 249, 2**31 - 1): (INT64_MAX - 1, ""),
        TopicPartition("a.b_c-D9", 0): (-1, ""),
    }


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"offsets": [{"topic": "t", "partition": 0, "offset": 2**63}]}, 400),
        ({"offsets": [{"topic": "t", "partition": 0, "offset": "9223372036854775808"}]}, 400),
        ({"offsets": [{"topic": "t", "partition": 0, "offset": -1}]}, 422),
        ({"offsets": [{"topic": "t", "partition": INT32_OVER, "offset": 0}]}, 400),
        ({"timestamps": [{"topic": "t", "partition": 0, "timestamp": 1e300}]}, 422),
        ({"timestamps": [{"topic": "t", "partition": 0, "timestamp": -1}]}, 422),
    ],
)
def test_seek_ranges(body: dict[str, object], status: int) -> None:
    assert _refused(lambda: parse_seek(body)).status == status


def test_seek_to_the_largest_offset_is_accepted() -> None:
    offsets, _ = parse_seek({"offsets": [{"topic": "t", "partition": 0, "offset": INT64_MAX}]})
    assert offsets == {TopicPartition("t", 0): INT64_MAX}


@pytest.mark.parametrize(
    "value",
    [
        "+10000-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "0001-01-01T00:00:00Z",
        -0.5,
        1e300,
        "2020-10-30T19:39:45Z" + " " * 100,
    ],
)
def test_timestamps_out_of_range(value: object) -> None:
    assert _refused(lambda: parse_timestamp(value)).status == 422


def test_timestamps_at_the_edges_are_exact() -> None:
    assert parse_timestamp("1970-01-01T00:00:00Z") == 0
    # Year 9999 to the millisecond: no float rounding.
    assert parse_timestamp("9999-12-31T23:59:59.999Z") == 253402300799999


@pytest.mark.parametrize(
    "body",
    [
        {"partitions": [{"topic": "t", "partition": INT32_OVER}]},
        {"partitions": [{"topic": "t", "partition": -1}]},
        {"partitions": [{"topic": "nul\x00", "partition": 0}]},
    ],
)
def test_partition_lists_are_range_checked(body: dict[str, object]) -> None:
    assert 400 <= _refused(lambda: parse_partitions(body)).status < 500


def test_subscription_topics_must_be_legal_names() -> None:
    assert parse_subscription({"topics": ["a", "b.c_d-1"]}) == (["a", "b.c_d-1"], None)
    for bad in ("", "t" * 250, "ü", "a/b", "."):
        assert _refused(lambda bad=bad: parse_subscription({"topics": [bad]})).status == 422


@pytest.mark.parametrize(
    "pattern",
    [
        "(a)\\1",  # backreference
        "(?=a)a",  # lookahead
        "(?<!a)b",  # lookbehind
        "a*+",  # possessive
        "(",  # plain syntax error
        "a" * 5000,  # too long
        "\\pL{1000}",  # past RE2's program size
    ],
)
def test_patterns_re2_cannot_run_linearly_are_422(pattern: str) -> None:
    err = _refused(lambda: parse_subscription({"topic_pattern": pattern}))
    assert (err.status, err.error_code) == (422, 422)
    assert "topic_pattern" in err.message


def test_a_catastrophic_pattern_compiles_and_matches_in_linear_time() -> None:
    import time

    assert parse_subscription({"topic_pattern": "([\\w.-]|[\\w.-])*!"})[1] is not None
    compiled = compile_topic_pattern("([\\w.-]|[\\w.-])*!")
    began = time.monotonic()
    assert compiled.match("a" * 249) is None  # 2^249 steps for a backtracking engine
    assert time.monotonic() - began < 0.5
    assert compile_topic_pattern("orders-\\d+").match("orders-12")


@pytest.mark.parametrize(
    ("value", "expected"),
    [(" 12 ", 12), ("+5", 5), ("-7", -7), (12.0, 12), ("2147483647", 2**31 - 1)],
)
def test_as_int_takes_what_java_takes(value: object, expected: int) -> None:
    assert as_int(value, "f") == expected


@pytest.mark.parametrize(
    "value", ["1_000", "\u0661\u0662", "\uff11", "1e3", "--5", "", "-", "9" * 5000, 2**31]
)
def test_as_int_refuses_what_java_refuses(value: object) -> None:
    assert _refused(lambda: as_int(value, "f")).status == 400


def test_as_int_long_range() -> None:
    assert as_int(str(INT64_MAX), "f", INT64) == INT64_MAX
    assert _refused(lambda: as_int(2**63, "f", INT64)).status == 400
    assert _refused(lambda: as_int(-(2**63) - 1, "f", INT64)).status == 400


# --- JSON nesting ----------------------------------------------------------------------------


def _nested(depth: int) -> bytes:
    return b'{"a":' * (depth - 1) + b"[1]" + b"}" * (depth - 1)


def test_nesting_depth_is_exact_and_never_recursive() -> None:
    assert body.nesting_depth(1) == 0
    assert body.nesting_depth({"a": [1, {"b": []}]}) == 4
    deep: list[object] = []
    for _ in range(100_000):  # far past Python's recursion limit
        deep = [deep]
    assert body.nesting_depth(deep) == 100_001
    assert body.nesting_depth(deep, stop_above=10) == 11


@pytest.mark.parametrize("walk_only", [False, True])
def test_depth_limit(monkeypatch: pytest.MonkeyPatch, walk_only: bool) -> None:
    """The limit holds on both paths: orjson's write limit as the fast check, and the walk
    (an orjson without such a limit, or one whose refusal must be confirmed)."""
    if walk_only:
        monkeypatch.setattr(body, "_WRAP", None)
    limit = body.MAX_DEPTH
    for depth, too_deep in [(limit - 1, False), (limit, False), (limit + 1, True)]:
        raw = _nested(depth)
        assert body._too_deep(raw, orjson.loads(raw)) is too_deep, depth
    # Wide but shallow (thousands of records): well past the bracket count, not too deep.
    wide = orjson.dumps({"records": [{"value": {"a": [1]}} for _ in range(5000)]})
    assert body._too_deep(wide, orjson.loads(wide)) is False


def test_orjson_write_limit_leaves_room_for_the_fast_check() -> None:
    # If orjson ever writes deeper (or without limit) the walk takes over; either way the
    # fast check must not be able to pass a body deeper than MAX_DEPTH.
    limit = body._DUMPS_LIMIT
    assert limit is None or limit > body.MAX_DEPTH
