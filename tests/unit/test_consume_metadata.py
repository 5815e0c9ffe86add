"""``include.metadata`` decoding: the batch and per-record paths agree byte for byte."""

from __future__ import annotations

import orjson
from aiokafka import ConsumerRecord

from gateway.consume.decoding import DECODERS_WITH_METADATA, BatchDecoder, metadata_text


def record(offset: int, headers: list[tuple[str, bytes | None]], ts: int, ts_type: int = 0):  # type: ignore[no-untyped-def]
    return ConsumerRecord(
        topic="t",
        partition=3,
        offset=offset,
        timestamp=ts,
        timestamp_type=ts_type,
        key=None if offset % 3 == 0 else b'"k"',
        value=b'{"a":%d}' % offset,
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=7,
        headers=headers,
    )


RECORDS = [
    record(0, [], 5),
    record(1, [("h", b"\x00\xff"), ("h", None), ('é"', b"")], 1_700_000_000_000, 1),
    record(2, [("x", b"y")], -1),
]


def test_metadata_text_is_json() -> None:
    element = b'{"offset":1' + metadata_text(RECORDS[1])
    assert orjson.loads(element) == {
        "offset": 1,
        "headers": [
            {"name": "h", "value": "AP8="},
            {"name": "h", "value": None},
            {"name": 'é"', "value": ""},
        ],
        "timestamp": 1_700_000_000_000,
        "timestamp_type": "LOG_APPEND_TIME",
    }
    no_ts = orjson.loads(b"{" + metadata_text(RECORDS[2])[1:])
    assert (no_ts["timestamp"], no_ts["timestamp_type"]) == (None, None)


def test_batch_and_one_agree() -> None:
    for fmt, decoder in DECODERS_WITH_METADATA.items():
        assert isinstance(decoder, BatchDecoder)
        elements, sizes = decoder.batch(RECORDS)
        singles = [decoder.one(r) for r in RECORDS]
        assert elements == [e for e, _ in singles], fmt
        assert sizes == [s for _, s in singles], fmt
        for e in elements:
            parsed = orjson.loads(e)
            assert list(parsed)[-3:] == ["headers", "timestamp", "timestamp_type"]
