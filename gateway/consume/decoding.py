"""Kafka records -> v2 response elements, per embedded format (the consume path's formats).

Each decoder returns the element as its finished JSON text (``{"topic":…,"offset":…}``) and its
size for ``max_bytes`` accounting: the raw key + value byte length for binary and json, the
length of the JSON text for schema formats (both as Confluent counts them). The records
handler joins the elements into the response body with one ``b",".join``.

Why text and not dicts for a final ``orjson.dumps``: a read handles up to tens of thousands of
records, and for json the stored bytes already are the JSON text the client sees; building a
Python value per record only to serialize it again was most of a json read's CPU. The topic's
part of every element is encoded once per topic (:func:`_head`), not once per record.

Schema formats need the registry, which is asynchronous, while the instance's read loop decodes
synchronously, record by record. :class:`SchemaDecoder` therefore has an async ``prepare``
hook the read loop awaits for every batch before decoding it: it fetches and compiles every
schema id the batch names, so decoding itself never waits.

binary and json also decode a whole partition batch in one call (:class:`BatchDecoder`, the
``batch`` hook the instance's read loop prefers): a read moves tens of thousands of records, and
per record the loop, a function call and a nine-piece ``b"".join`` were most of the gateway's
own CPU. A batch shares one ``%``-template per partition (topic, partition and field names
already in it), so each record costs one formatting call and its base64 or JSON check. The
per-record decoder stays the reference (and the poison record's error message): the unit
tests compare the two byte for byte.
"""

from __future__ import annotations

import asyncio
import logging
from binascii import b2a_base64
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import orjson
from aiohttp import web

from sessions.fetched import Record
from sessions.instance import DecodeError

from ..context import SCHEMAS
from ..formats import framing, json
from ..formats.codec import Codec
from ..registry.schemas import Schemas

log = logging.getLogger(__name__)

Decoder = Callable[[Record], tuple[bytes, int]]
# Records of one partition, in offset order -> the elements and sizes of the longest prefix it
# can decode (shorter than the input: the next record is a poison record, see BatchDecoder).
BatchDecode = Callable[[Sequence[Record]], tuple[list[bytes], list[int]]]

# Topic -> the start of every element of that topic, up to the key's value. Bounded only so
# that a replica reading an ever-changing set of topics cannot grow it without end.
_HEADS: dict[str, bytes] = {}
_HEADS_MAX = 10_000


def _head(topic: str) -> bytes:
    head = _HEADS.get(topic)
    if head is None:
        if len(_HEADS) >= _HEADS_MAX:
            _HEADS.clear()
        head = _HEADS[topic] = b'{"topic":' + orjson.dumps(topic) + b',"key":'
    return head


def element(rec: Record, key: bytes, value: bytes) -> bytes:
    """One response element from the key's and value's JSON text."""
    return b"".join(
        (
            _head(rec.topic),
            key,
            b',"value":',
            value,
            b',"partition":',
            b"%d" % rec.partition,
            b',"offset":',
            b"%d" % rec.offset,
            b"}",
        )
    )


def decode_binary(rec: Record) -> tuple[bytes, int]:
    # Inlined (base64 as binary.deserialize does it, padded, one line): runs once per record.
    key, value = rec.key, rec.value
    return (
        b"".join(
            (
                _head(rec.topic),
                b"null" if key is None else b'"' + b2a_base64(key, newline=False) + b'"',
                b',"value":',
                b"null" if value is None else b'"' + b2a_base64(value, newline=False) + b'"',
                b',"partition":',
                b"%d" % rec.partition,
                b',"offset":',
                b"%d" % rec.offset,
                b"}",
            )
        ),
        (0 if key is None else len(key)) + (0 if value is None else len(value)),
    )


def _template(rec: Record, key: bytes = b"%s", value: bytes = b"%s") -> bytes:
    """The ``%``-template of every element of ``rec``'s partition; the offset goes in last.

    Same bytes as :func:`element` (field order, separators, the head's JSON of the topic); a
    ``%`` in the topic (Kafka allows none, but the template must not depend on it) is escaped.
    """
    return (
        _head(rec.topic).replace(b"%", b"%%")
        + key
        + b',"value":'
        + value
        + b',"partition":'
        + b"%d" % rec.partition
        + b',"offset":%d}'
    )


def _raw_sizes(records: Sequence[Record]) -> list[int]:
    """What ``max_bytes`` counts for binary and json: the stored key + value bytes."""
    return [
        (0 if (k := r.key) is None else len(k)) + (0 if (v := r.value) is None else len(v))
        for r in records
    ]


def decode_binary_batch(records: Sequence[Record]) -> tuple[list[bytes], list[int]]:
    """:func:`decode_binary` over a partition batch (every record is valid binary)."""
    if not records:
        return [], []
    tmpl = _template(records[0])
    # The keyless, non-null value case (by far the most common) gets the quotes in the
    # template: one formatting call and one base64 per record.
    keyless = _template(records[0], b"null", b'"%s"')
    return [
        (
            keyless % (b2a_base64(v, newline=False), r.offset)
            if (v := r.value) is not None
            else tmpl % (b"null", b"null", r.offset)
        )
        if r.key is None
        else tmpl
        % (
            b'"%s"' % b2a_base64(r.key, newline=False),
            b"null" if (v := r.value) is None else b'"%s"' % b2a_base64(v, newline=False),
            r.offset,
        )
        for r in records
    ], _raw_sizes(records)


def decode_json_batch(records: Sequence[Record]) -> tuple[list[bytes], list[int]]:
    """:func:`decode_json` over a partition batch, stopping before the first invalid record."""
    if not records:
        return [], []
    tmpl = _template(records[0])
    text = json.answer_text
    try:
        elements = [tmpl % (text(r.key), text(r.value), r.offset) for r in records]
    except framing.PayloadError:
        # A poison record somewhere: the prefix before it (the instance then reports it
        # through decode_json, which names the side and the reason).
        elements = []
        for r in records:
            try:
                elements.append(tmpl % (text(r.key), text(r.value), r.offset))
            except framing.PayloadError:
                break
        records = records[: len(elements)]
    return elements, _raw_sizes(records)


@dataclass(frozen=True)
class BatchDecoder:
    """A per-record decoder plus its partition-batch form (the instance reads ``batch``).

    ``batch`` decodes a prefix of its input, all of it unless a record cannot be decoded:
    the instance then runs the per-record decoder on that record, which raises the
    :class:`DecodeError` the client is told about (and the record is skipped), so the
    error's wording has one source.
    """

    one: Decoder
    batch: BatchDecode

    def __call__(self, rec: Record) -> tuple[bytes, int]:
        return self.one(rec)


def decode_json(rec: Record) -> tuple[bytes, int]:
    key, value = rec.key, rec.value
    return (
        element(rec, _json(key, "key"), _json(value, "value")),
        (0 if key is None else len(key)) + (0 if value is None else len(value)),
    )


def _json(data: bytes | None, what: str) -> bytes:
    try:
        return json.answer_text(data)
    except framing.PayloadError as exc:  # a record the instance reports and skips
        raise DecodeError(f"{what}: {exc}") from None


DECODERS: dict[str, Decoder] = {
    "binary": BatchDecoder(decode_binary, decode_binary_batch),
    "json": BatchDecoder(decode_json, decode_json_batch),
}


# --- record metadata (the ``include.metadata`` extension) ------------------------------------

_TIMESTAMP_TYPES = (b"CREATE_TIME", b"LOG_APPEND_TIME")


def metadata_text(rec: Record) -> bytes:
    """``,"headers":[…],"timestamp":…,"timestamp_type":…}``: what closes an element of an
    instance that opted in. Header values are base64 (as v3 produce takes them), so any bytes
    round-trip; the timestamp is Kafka's epoch milliseconds, null when the record has none."""
    headers = b",".join(
        b'{"name":%s,"value":%s}'
        % (
            orjson.dumps(name),
            b"null" if value is None else b'"%s"' % b2a_base64(value, newline=False),
        )
        for name, value in rec.headers
    )
    ts = rec.timestamp
    kind = _TIMESTAMP_TYPES[1] if rec.timestamp_type == 1 else _TIMESTAMP_TYPES[0]
    if ts is None or ts < 0:
        return b',"headers":[%s],"timestamp":null,"timestamp_type":null}' % headers
    return b',"headers":[%s],"timestamp":%d,"timestamp_type":"%s"}' % (headers, ts, kind)


def _one_with_metadata(one: Decoder) -> Decoder:
    def decode(rec: Record) -> tuple[bytes, int]:
        element, size = one(rec)
        return element[:-1] + metadata_text(rec), size

    return decode


def _batch_with_metadata(batch: BatchDecode) -> BatchDecode:
    def decode(records: Sequence[Record]) -> tuple[list[bytes], list[int]]:
        elements, sizes = batch(records)
        # zip stops at the decoded prefix (a poison record ends it early).
        return [e[:-1] + metadata_text(r) for e, r in zip(elements, records, strict=False)], sizes

    return decode


# Built once: an instance's prefilled elements are kept only for the very decoder that made
# them (identity), so the decoder of every read of one instance must be the same object.
DECODERS_WITH_METADATA: dict[str, Decoder] = {
    fmt: BatchDecoder(_one_with_metadata(d.one), _batch_with_metadata(d.batch))
    for fmt, d in DECODERS.items()
    if isinstance(d, BatchDecoder)
}


def decoder_for(app: web.Application, fmt: str, *, metadata: bool = False) -> Decoder:
    """The decoder for one read of an instance of format ``fmt`` (``metadata``: the
    instance opted in to headers and timestamps)."""
    if fmt in DECODERS:
        return DECODERS_WITH_METADATA[fmt] if metadata else DECODERS[fmt]
    if metadata:
        return SchemaDecoderWithMetadata(app[SCHEMAS])
    return SchemaDecoder(app[SCHEMAS])


class SchemaDecoder:
    """Reads Confluent-framed records of any schema format, one decoder per read request.

    The schema id in each record picks the codec, and the codec's format (the registry's
    ``schemaType``) decides how it is read: an avro instance reading a protobuf record shows
    it as protobuf JSON instead of failing. Confluent's avro deserializer would fail there;
    all three schema formats share one Accept family anyway, and a failure would make the
    instance skip data it can perfectly well show.

    Records that can never be read (no magic byte, an id the registry does not know, bytes
    that do not match their schema) raise :class:`DecodeError`: the instance answers
    408 / 40801 with the partition and offset and steps past the record, so one poison
    record cannot wedge a consumer. A registry that cannot be reached raises from
    :meth:`prepare` instead, before any record is decoded, and nothing is skipped.
    """

    def __init__(self, schemas: Schemas) -> None:
        self._schemas = schemas
        self._codecs: dict[int, Codec | str] = {}  # a str: why that id can never be read

    async def prepare(self, records: Iterable[Record]) -> None:
        """Fetch and compile every schema the records name (awaited before decoding)."""
        wanted: set[int] = set()
        for rec in records:
            for data in (rec.key, rec.value):
                schema_id = framing.schema_id(data)
                if schema_id is not None and schema_id not in self._codecs:
                    wanted.add(schema_id)
        if wanted:
            ids = sorted(wanted)
            found = await asyncio.gather(*(self._schemas.for_read(i) for i in ids))
            self._codecs.update(zip(ids, found, strict=True))

    def __call__(self, rec: Record) -> tuple[bytes, int]:
        key = self._decode(rec.key, "key")
        value = self._decode(rec.value, "value")
        return element(rec, key, value), (0 if rec.key is None else len(key)) + (
            0 if rec.value is None else len(value)
        )

    def _decode(self, data: bytes | None, what: str) -> bytes:
        """The JSON text of one side; its length is what ``max_bytes`` counts (Confluent
        counts the JSON it writes), so it is serialized once, for both."""
        if data is None:
            return b"null"
        try:
            schema_id, payload = framing.unframe(data)
        except framing.PayloadError as exc:
            raise DecodeError(f"{what}: {exc}") from None
        codec = self._codecs.get(schema_id)
        if codec is None:  # prepare() saw every record; only a caller skipping it gets here
            raise DecodeError(f"{what}: schema {schema_id} was not loaded before decoding")
        if isinstance(codec, str):
            raise DecodeError(f"{what}: {codec}")
        try:
            return orjson.dumps(codec.decode(payload))
        except framing.PayloadError as exc:
            raise DecodeError(f"{what} does not match schema {schema_id}: {exc}") from None
        except Exception as exc:  # a codec bug must not wedge the instance on this record
            log.warning("cannot decode %s with schema %d", what, schema_id, exc_info=True)
            raise DecodeError(f"{what} does not match schema {schema_id}: {exc}") from None


class SchemaDecoderWithMetadata(SchemaDecoder):
    """:class:`SchemaDecoder` for an instance that opted in to headers and timestamps."""

    def __call__(self, rec: Record) -> tuple[bytes, int]:
        element, size = super().__call__(rec)
        return element[:-1] + metadata_text(rec), size
