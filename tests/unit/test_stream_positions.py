"""Topic streams' positions (gateway/streams/positions.py) and the test SSE reader it is read
back with (tests/support/sse.py): the event id must round-trip exactly, refuse anything it
could not have produced, and ``from`` must mean the instant the client wrote."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest

from gateway.errors import GatewayError
from gateway.streams import positions
from gateway.streams.positions import BEGINNING, END, Start, decode_id, encode_id, parse_from
from tests.support.sse import Event, read_events


@pytest.mark.parametrize(
    "given",
    [{0: 0}, {0: 15, 1: 7, 2: 0}, {2**31 - 1: 2**63 - 1}, {p: p * 1000 for p in range(500)}],
)
def test_ids_round_trip(given: dict[int, int]) -> None:
    text = encode_id(given)
    assert text.isascii() and "\n" not in text and "\r" not in text
    assert decode_id(text) == given


def test_ids_are_sorted_and_compact() -> None:
    assert encode_id({2: 0, 0: 15, 1: 7}) == "0:15,1:7,2:0"


# aiohttp's limit on one header field (and so on Last-Event-ID), with its default settings.
HEADER_FIELD_MAX = 8190


@pytest.mark.parametrize("partitions", [300, 1000, 1300])
def test_ids_of_many_partitions_are_compact_and_fit_a_header(partitions: int) -> None:
    """A busy topic: offsets in the millions, spread over a few thousand between partitions."""
    rng = random.Random(partitions)
    given = {p: 4_000_000 + rng.randrange(50_000) for p in range(partitions)}
    text = encode_id(given)
    assert text.startswith("c0.") and len(text) <= HEADER_FIELD_MAX
    assert decode_id(text) == given
    assert text.isascii() and "\n" not in text


def test_short_ids_and_ids_with_holes_stay_readable() -> None:
    assert encode_id({p: 10**12 for p in range(40)}).startswith("0:1000000000000,1:")
    holes = {p: 10**12 for p in range(0, 600, 2)}  # a partition= filter: every second one
    assert len(encode_id(holes)) > positions.READABLE_MAX
    assert decode_id(encode_id(holes)) == holes
    assert encode_id(holes).startswith("0:")


def test_event_ids_follow_every_position_change() -> None:
    """The incremental ids name exactly the current positions, in either form (and a
    position may move below where it started: a reset to the end of a re-created
    partition)."""
    rng = random.Random(7)
    start = {p: 1_000_000 + rng.randrange(1000) for p in range(5, 805)}
    ids = positions.EventIds(start)
    current = dict(start)
    assert ids.text() == encode_id(current)
    for i in range(2000):
        p = rng.randrange(5, 805)
        current[p] = max(0, current[p] + rng.randrange(-50, 5000))
        ids.set(p, current[p])
        if i % 50 == 0:
            assert decode_id(ids.text()) == current
    text = ids.text()  # compact, with the base it started from
    assert decode_id(text) == current and text.startswith("c5.")


@pytest.mark.parametrize(
    "text",
    [
        "c",
        "c0",
        "c0.1",
        "c0.1.",
        "c0.1.x",
        "c0.1.2,",
        "c0.1.,2",
        "c-1.0.0",
        "c0.0.-1",  # an offset below zero
        f"c0.{2**63}.0",
        f"c0.{2**63 - 1}.1",  # past Kafka's offsets
        f"c{2**31 - 1}.0.0,0",  # past Kafka's partitions
        "c0.1.2 ,3",
        "c0.1.2\n",
        "c0.1." + "1," * 40_000 + "1",  # too long to even look at
    ],
)
def test_bad_compact_ids_are_400(text: str) -> None:
    with pytest.raises(GatewayError) as caught:
        decode_id(text)
    assert (caught.value.status, caught.value.error_code) == (400, 400)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0",
        "0:",
        ":1",
        "0:1,",
        ",0:1",
        "0:1,0:2",  # a partition twice
        "-1:0",
        "0:-1",
        "0:1;1:2",
        "0:1 ,1:2",
        "a:b",
        "0:1\n",
        "٣:1",  # a non-ASCII digit
        f"{2**31}:0",
        f"0:{2**63}",
        "0:" + "9" * 30,
        "0:1," * 20_000 + "0:1",  # too long to even look at
    ],
)
def test_bad_ids_are_400(text: str) -> None:
    with pytest.raises(GatewayError) as caught:
        decode_id(text)
    assert (caught.value.status, caught.value.error_code) == (400, 400)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, END),
        ("", END),
        ("end", END),
        ("beginning", BEGINNING),
        ("Beginning", BEGINNING),
        ("0", Start(None, 0)),
        ("1718000000123", Start(None, 1718000000123)),
        ("1970-01-01T00:00:00Z", Start(None, 0)),
        ("2024-06-10T08:00:00.123Z", Start(None, 1718006400123)),
        ("2024-06-10T10:00:00.123+02:00", Start(None, 1718006400123)),
        ("2024-06-10T08:00:00.123999", Start(None, 1718006400123)),  # no offset: UTC
        ("2024-06-10", Start(None, 1717977600000)),
    ],
)
def test_from(text: str | None, expected: Start) -> None:
    assert parse_from(text) == expected


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("yesterday", 400),
        ("-1", 400),
        ("2024-13-01T00:00:00Z", 400),
        ("2024-06-10T08:00:00+25:00", 400),
        ("9" * 30, 400),
        ("1969-12-31T23:59:59Z", 422),
        ("0001-01-01T00:00:00+01:00", 422),
    ],
)
def test_bad_from(text: str, status: int) -> None:
    with pytest.raises(GatewayError) as caught:
        parse_from(text)
    assert caught.value.status == status


def test_partition_lists() -> None:
    assert positions.parse_partitions(None) is None
    assert positions.parse_partitions("") is None
    assert positions.parse_partitions("2,0, 2") == [0, 2]
    for bad in ("x", "-1", "0,,1", "1.0", str(2**31)):
        with pytest.raises(GatewayError):
            positions.parse_partitions(bad)


def test_resume_keeps_only_the_streams_partitions() -> None:
    assert positions.resume([0, 1, 2], {1: 5, 7: 9}) == ({1: 5}, [0, 2])
    assert positions.resume([0], None) == ({}, [0])


# --- the test SSE reader (shared by the streaming tests) ------------------------------------


class _Content:
    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    async def iter_any(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk


class _Response:
    def __init__(self, chunks: list[bytes]) -> None:
        self.content = _Content(chunks)


async def _read(chunks: list[bytes]) -> list[Event]:
    return [ev async for ev in read_events(_Response(chunks))]


async def test_sse_reader_follows_the_spec_at_every_chunk_boundary() -> None:
    raw = (
        "\ufeffretry: 1000\n\nid: 0:0\n\n: keep-alive\n\nevent: record\r\nid: 0:1\r\n"
        'data: {"k":"ü"}\r\n\r\ndata: x\rdata:y\r\rid: 0:2\ndata: z\n\nevent: e\n\ndata: cut'
    ).encode()
    whole = await _read([raw])
    assert [(e.kind, e.event, e.id, e.data, e.retry) for e in whole] == [
        ("retry", "", None, "", 1000),
        ("checkpoint", "", "0:0", "", None),
        ("heartbeat", "", "0:0", "keep-alive", None),
        ("event", "record", "0:1", '{"k":"ü"}', None),
        ("event", "message", "0:1", "x\ny", None),
        ("event", "message", "0:2", "z", None),
    ]
    assert whole[3].json() == {"k": "ü"}
    for cut in range(1, len(raw)):
        assert await _read([raw[:cut], raw[cut:]]) == whole, cut
