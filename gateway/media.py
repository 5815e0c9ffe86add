"""v2 media types and Jersey-compatible Content-Type / Accept negotiation.

Existing v2 clients depend on the exact 415 / 406 behaviour of Confluent's JAX-RS resources,
so negotiation is modelled on it: a Content-Type outside the resource's list is 415 even on a
GET, an Accept nothing offered satisfies is 406, and among matches the client's ``q`` wins
first, then the server weight ``qs``.

Two deliberate departures, both for clients Jersey would turn away: ``Accept:
application/json`` is honoured on every endpoint that answers JSON (real clients such as
kafka-mcp send it, and the body is JSON either way), and a 406 carries an error body like
every other error instead of Jersey's empty one.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from .context import RESPONSE_TYPE
from .errors import GatewayError
from .streaming.framing import NDJSON, SSE

V2 = "application/vnd.kafka.v2+json"
BINARY = "application/vnd.kafka.binary.v2+json"
JSON_V2 = "application/vnd.kafka.json.v2+json"
AVRO = "application/vnd.kafka.avro.v2+json"
JSONSCHEMA = "application/vnd.kafka.jsonschema.v2+json"
PROTOBUF = "application/vnd.kafka.protobuf.v2+json"
JSON = "application/json"
OCTET = "application/octet-stream"

EMBEDDED = {
    BINARY: "binary",
    JSON_V2: "json",
    AVRO: "avro",
    JSONSCHEMA: "jsonschema",
    PROTOBUF: "protobuf",
}
FORMAT_TYPES = {v: k for k, v in EMBEDDED.items()}

# What each family of resources accepts as a request body.
METADATA_CONSUMES = frozenset({V2})
PRODUCE_CONSUMES = frozenset(EMBEDDED)
CONSUMERS_CONSUMES = frozenset({*EMBEDDED, V2})

# Offered everywhere below Confluent's own types, so it is chosen only for a client that asks
# for plain JSON (alone or with a higher q), never for ``*/*``, ``application/*`` or no Accept.
_PLAIN_JSON = (JSON, 0.01)

# What they offer, with Confluent's server weights.
V2_ONLY: tuple[tuple[str, float], ...] = ((V2, 1.0), _PLAIN_JSON)
V2_LOW: tuple[tuple[str, float], ...] = ((V2, 0.9), _PLAIN_JSON)
CONSUMERS_OFFER: tuple[tuple[str, float], ...] = (
    (V2, 0.9),
    (BINARY, 0.1),
    (JSON_V2, 0.1),
    (AVRO, 0.1),
    (JSONSCHEMA, 0.1),
    (PROTOBUF, 0.1),
    _PLAIN_JSON,
)
# GET .../records: each offered type is one read method (binary wins ties: weight 1.0).
# Plain JSON names no embedded format, so it reads with the instance's own one: the client
# only said it wants JSON, and every read answers JSON.
RECORDS_OFFER: tuple[tuple[str, float], ...] = (
    (BINARY, 1.0),
    (V2, 0.9),
    (JSON_V2, 0.1),
    (AVRO, 0.1),
    (JSONSCHEMA, 0.1),
    (PROTOBUF, 0.1),
    _PLAIN_JSON,
)
# GET .../records also streams (gateway/consume/stream.py), but only for a client that names a
# stream type: ``*/*``, ``text/*`` or no Accept keep getting one JSON array, as every v2 client
# expects. Listed first at full weight, so a client naming one among others gets the stream
# unless it gives the stream a lower q: a client that mentions a stream type wants one.
STREAM_TYPES = frozenset({SSE, NDJSON})
RECORDS_STREAM_OFFER: tuple[tuple[str, float], ...] = ((SSE, 1.0), (NDJSON, 1.0), *RECORDS_OFFER)


def unsupported_media_type() -> GatewayError:
    return GatewayError(415, 415, "HTTP 415 Unsupported Media Type")


class NotAcceptable(GatewayError):
    """No offered type satisfies the Accept header.

    Jersey answers this with an empty body; we send the usual error body (as
    ``application/json``, the one type every HTTP client can show), since a client that
    cannot tell why it was refused is left guessing at its headers.
    """

    def __init__(self) -> None:
        super().__init__(406, 406, "HTTP 406 Not Acceptable")


def base_type(value: str | None) -> str:
    """``type/subtype`` lower-cased, parameters dropped; '' when absent."""
    if not value:
        return ""
    return value.split(";", 1)[0].strip().lower()


def request_type(request: web.Request) -> str:
    return base_type(request.headers.get("Content-Type"))


def check_content_type(request: web.Request, accepted: frozenset[str]) -> str:
    """The request's media type, or 415 when it carries one the resource does not accept.

    Requests without a Content-Type pass (Jersey reads them as octet-stream -> JSON), as do
    ``application/octet-stream`` bodies, which Confluent's Jackson provider also reads as JSON.
    """
    ctype = request_type(request)
    if ctype and ctype != OCTET and ctype not in accepted:
        raise unsupported_media_type()
    return ctype


@dataclass(frozen=True)
class _Range:
    type: str
    subtype: str
    q: float

    def matches(self, media: str) -> int:
        """Specificity of the match (2 exact, 1 type/*, 0 */*) or -1."""
        t, _, s = media.partition("/")
        if self.type == "*" and self.subtype == "*":
            return 0
        if self.type != t:
            return -1
        if self.subtype == "*":
            return 1
        return 2 if self.subtype == s else -1


def parse_accept(header: str | None) -> list[_Range]:
    if not header or not header.strip():
        return [_Range("*", "*", 1.0)]
    ranges = []
    for part in header.split(","):
        bits = [b.strip() for b in part.split(";")]
        media = bits[0].lower()
        if not media:
            continue
        if media == "*":
            media = "*/*"
        t, _, s = media.partition("/")
        q = 1.0
        for param in bits[1:]:
            name, _, val = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(val)
                except ValueError:
                    q = 0.0
        ranges.append(_Range(t, s or "*", q))
    return ranges or [_Range("*", "*", 1.0)]


def negotiate(
    request: web.Request,
    offered: tuple[tuple[str, float], ...],
    *,
    named_only: frozenset[str] = frozenset(),
) -> str:
    """The response type: highest client q, then highest server qs; NotAcceptable if none.

    Types in ``named_only`` are chosen only for a client that names them exactly: a wildcard
    range never selects them (nor, by its q, rules them out).
    """
    accept = request.headers.get("Accept")
    key = (accept, offered, named_only)
    chosen = _NEGOTIATED.get(key)
    if chosen is None:
        chosen = _negotiate(accept, offered, named_only)
        if accept is None or len(accept) <= _NEGOTIATED_HEADER_MAX:
            if len(_NEGOTIATED) >= _NEGOTIATED_MAX:
                _NEGOTIATED.clear()  # clients send few distinct Accept headers; a flood restarts
            _NEGOTIATED[key] = chosen
    if not chosen:
        raise NotAcceptable()
    return chosen


# Negotiation is a pure function of the Accept header and the offer, and almost every request
# of a client repeats its Accept header: parsing it again was a few µs of every request.
_NEGOTIATED: dict[tuple[str | None, tuple[tuple[str, float], ...], frozenset[str]], str] = {}
_NEGOTIATED_MAX = 1024
_NEGOTIATED_HEADER_MAX = 256  # longer ones are negotiated every time: the cache stays small


def _negotiate(
    accept: str | None, offered: tuple[tuple[str, float], ...], named_only: frozenset[str]
) -> str:
    """The chosen type, '' when none is acceptable."""
    ranges = parse_accept(accept)
    best: tuple[float, float, int] | None = None
    chosen = ""
    for media, qs in offered:
        # The most specific range that matches decides this type's q (RFC 7231 5.3.2).
        spec, q = -1, 0.0
        for r in ranges:
            m = r.matches(media)
            if m > spec:
                spec, q = m, r.q
        if spec < 0 or q <= 0 or (spec < 2 and media in named_only):
            continue
        key = (q, qs, spec)
        if best is None or key > best:
            best, chosen = key, media
    return chosen


def records_type(request: web.Request) -> str:
    """The response type of ``GET .../records``: a stream type, or a v2 read method."""
    return negotiate(request, RECORDS_STREAM_OFFER, named_only=STREAM_TYPES)


def respond_as(request: web.Request, offered: tuple[tuple[str, float], ...]) -> str:
    """:func:`negotiate`, and remember the choice: errors raised later carry it as their type."""
    chosen = negotiate(request, offered)
    request[RESPONSE_TYPE] = chosen
    return chosen
