"""Lag rows, their order, the summary and the 404s (gateway/v3/lags.py), without a broker."""

from __future__ import annotations

import pytest
from aiokafka.protocol.group import MemberAssignment

from gateway.errors import GatewayError
from gateway.v3.group_kafka import Group, Member, decode_assignment
from gateway.v3.lags import (
    find_lag,
    lag_rows,
    require_group,
    require_lags,
    require_offsets,
    summarize,
)

ALICE = Member("alice-1", None, "alice", "/10.0.0.1", (("a", 0), ("b", 1)))
BOB = Member("bob-1", "static-bob", "bob", "/10.0.0.2", (("a", 1),))


def test_rows_name_the_owner_and_never_lag_below_zero() -> None:
    committed = {("a", 0): 5, ("a", 1): 9, ("b", 1): 3, ("c", 0): 1}
    ends = {("a", 0): 5, ("a", 1): 7, ("b", 1): 10, ("c", 0): 4}
    rows = {(r.topic, r.partition): r for r in lag_rows(committed, ends, [ALICE, BOB])}
    assert rows[("a", 1)].lag == 0  # committed past the last stable offset
    assert (rows[("a", 1)].consumer_id, rows[("a", 1)].instance_id) == ("bob-1", "static-bob")
    assert (rows[("b", 1)].client_id, rows[("b", 1)].lag) == ("alice", 7)
    unowned = rows[("c", 0)]
    assert (unowned.consumer_id, unowned.client_id, unowned.instance_id) == ("", "", None)


def test_rows_without_a_log_end_are_left_out() -> None:
    rows = lag_rows({("a", 0): 1, ("gone", 0): 1}, {("a", 0): 2}, [])
    assert [(r.topic, r.partition) for r in rows] == [("a", 0)]


def test_order_is_lag_descending_then_topic_then_partition() -> None:
    committed = {("b", 0): 0, ("a", 2): 0, ("a", 1): 0, ("c", 0): 0, ("a", 0): 0}
    ends = {("b", 0): 3, ("a", 2): 3, ("a", 1): 5, ("c", 0): 0, ("a", 0): 3}
    rows = lag_rows(committed, ends, [])
    assert [(r.topic, r.partition, r.lag) for r in rows] == [
        ("a", 1, 5),
        ("a", 0, 3),
        ("a", 2, 3),
        ("b", 0, 3),
        ("c", 0, 0),
    ]


def test_summary_totals_and_picks_the_first_largest() -> None:
    rows = lag_rows(
        {("b", 0): 0, ("a", 3): 0, ("a", 1): 4}, {("b", 0): 2, ("a", 3): 2, ("a", 1): 4}, []
    )
    summary = summarize(rows)
    assert summary.total_lag == 4
    assert (summary.max.topic, summary.max.partition, summary.max.lag) == ("a", 3, 2)
    all_zero = summarize(lag_rows({("z", 0): 1, ("y", 5): 1}, {("z", 0): 1, ("y", 5): 1}, []))
    assert (all_zero.total_lag, all_zero.max.topic, all_zero.max.partition) == (0, "y", 5)


def _raises(call: object, message: str) -> None:
    assert callable(call)
    with pytest.raises(GatewayError) as caught:
        call()
    assert (caught.value.status, caught.value.error_code, caught.value.message) == (
        404,
        404,
        message,
    )


def test_the_404s_and_their_messages() -> None:
    dead = Group("g1", "Dead", "", "", (), 1)
    _raises(lambda: require_group(dead), "Consumer Group g1 could not be found.")
    empty = Group("g1", "Empty", "consumer", "", (), 1)
    assert require_group(empty) is empty
    _raises(lambda: require_offsets({}), "Consumer group offsets could not be found.")
    require_offsets({("a", 0): 0})
    _raises(lambda: require_lags([]), "Consumer lags not found.")
    rows = lag_rows({("a", 0): 0}, {("a", 0): 1}, [])
    assert find_lag(rows, "a", 0) is rows[0]
    _raises(lambda: find_lag(rows, "a", 1), "HTTP 404 Not Found")
    _raises(lambda: find_lag(rows, "b", 0), "HTTP 404 Not Found")


def test_assignment_bytes_decode_sorted_and_tolerate_garbage() -> None:
    data = MemberAssignment(1, [("t", [2, 0]), ("a", [7])], b"user").encode()
    assert decode_assignment(data) == (("a", 7), ("t", 0), ("t", 2))
    assert decode_assignment(b"") == ()
    assert decode_assignment(None) == ()
    assert decode_assignment(b"\x00\x00\x00\x00\x00\x05ab") == ()
