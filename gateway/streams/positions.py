"""Where a topic stream starts and where it has got to: the query's ``from``, the partition
list, and the event id codec (pure).

The event id *is* the stream's state. It lists the next offset of every partition of the
stream (``0:15,1:7,2:0``), so a reconnect sent to any replica resumes exactly after the last
event the browser saw, with nothing stored anywhere and nothing to sign: an id a client edits
by hand only moves its own stream, which ``from`` and ``partition`` could do anyway. Every
partition is in every id, with a concrete offset resolved when the stream opened, never
"end": a partition that had no record yet must not restart at a *later* end on reconnect,
which would skip what arrived in between.

ASCII digits, ``:`` and ``,`` only: safe in an SSE ``id:`` field (no newline, no NUL) and in
the ``Last-Event-ID`` header browsers send back. That header is bounded (8 KB per header field
in aiohttp, 16 KB for a whole request in HAProxy's defaults), and a topic of a few hundred
partitions outgrows the readable form, so an id longer than :data:`READABLE_MAX` is written
compactly: ``c<first partition>.<base>.<d0>,<d1>,...`` for partitions ``first``, ``first + 1``,
... with next offsets ``base + d0``, ``base + d1``, ... (base: the smallest when the stream
opened). About six characters a partition: 8 KB holds some 1,300 partitions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from ..errors import GatewayError, bad_request

# Kafka's ranges: partitions are int32, offsets int64.
MAX_PARTITION = 2**31 - 1
MAX_OFFSET = 2**63 - 1
# An id never needs more: one entry per partition, and Kafka caps a topic at far fewer
# partitions than this allows. Checked before the regex runs, so a huge header costs nothing.
MAX_ID_CHARS = 64 * 1024

# An id up to this long is written readably (``0:15,1:7``); a longer one compactly.
READABLE_MAX = 2048

_ID = re.compile(r"[0-9]{1,10}:[0-9]{1,19}(?:,[0-9]{1,10}:[0-9]{1,19})*")
_COMPACT_ID = re.compile(r"c([0-9]{1,10})\.([0-9]{1,19})\.(-?[0-9]{1,20}(?:,-?[0-9]{1,20})*)")
_DIGITS = re.compile(r"[0-9]{1,19}")


@dataclass(frozen=True)
class Start:
    """Where partitions without a position in the resume id begin: ``"beginning"``,
    ``"end"``, or the first record at or after ``timestamp_ms``."""

    edge: str | None = "end"
    timestamp_ms: int | None = None


BEGINNING = Start("beginning")
END = Start("end")


def encode_id(positions: Mapping[int, int]) -> str:
    """The id of these positions (``partition:next_offset`` pairs, by partition, or the
    compact form when that is long)."""
    return EventIds(positions).text()


class EventIds:
    """The id after each event of a stream, kept up to date one position at a time.

    Every event carries an id listing every partition, so for a topic of many partitions
    building it anew per event would cost a Python pass over all of them per record. Each
    partition's piece of either form is kept instead and only the moved one is rewritten;
    ``text()`` is then one C-level join.
    """

    def __init__(self, start: Mapping[int, int]) -> None:
        order = sorted(start)
        self._index = {p: i for i, p in enumerate(order)}
        self._partitions = order
        self._offsets = [start[p] for p in order]
        self._readable = [f"{p}:{o}" for p, o in zip(order, self._offsets, strict=True)]
        self._readable_len = sum(map(len, self._readable)) + max(len(order) - 1, 0)
        contiguous = bool(order) and order[-1] - order[0] == len(order) - 1
        # Only partitions first..last without holes have a compact form (a partition= filter
        # with holes lists few partitions: its readable id is short anyway).
        self._base = min(self._offsets) if contiguous else None
        self._deltas = (
            [str(o - self._base) for o in self._offsets] if self._base is not None else []
        )
        self._text: str | None = None

    def set(self, partition: int, offset: int) -> None:
        i = self._index[partition]
        if self._offsets[i] == offset:
            return
        self._offsets[i] = offset
        piece = f"{partition}:{offset}"
        self._readable_len += len(piece) - len(self._readable[i])
        self._readable[i] = piece
        if self._base is not None:
            self._deltas[i] = str(offset - self._base)
        self._text = None

    def text(self) -> str:
        if self._text is None:
            if self._readable_len <= READABLE_MAX or self._base is None:
                self._text = ",".join(self._readable)
            else:
                head = f"c{self._partitions[0]}.{self._base}."
                self._text = head + ",".join(self._deltas)
        return self._text


def decode_id(text: str) -> dict[int, int]:
    """The positions an event id names; 400 for anything :func:`encode_id` cannot produce
    (a partition twice, numbers outside Kafka's ranges, any other character)."""
    if len(text) > MAX_ID_CHARS:
        raise bad_request(f"Last-Event-ID {_quote(text)} is not an event id of this stream")
    if text.startswith("c"):
        return _decode_compact(text)
    if not _ID.fullmatch(text):
        raise bad_request(f"Last-Event-ID {_quote(text)} is not an event id of this stream")
    positions: dict[int, int] = {}
    for pair in text.split(","):
        p, _, o = pair.partition(":")
        partition, offset = int(p), int(o)
        if partition > MAX_PARTITION or offset > MAX_OFFSET or partition in positions:
            raise bad_request(f"Last-Event-ID {_quote(text)} is not an event id of this stream")
        positions[partition] = offset
    return positions


def _decode_compact(text: str) -> dict[int, int]:
    match = _COMPACT_ID.fullmatch(text)
    if match is None:
        raise bad_request(f"Last-Event-ID {_quote(text)} is not an event id of this stream")
    first, base = int(match[1]), int(match[2])
    offsets = [base + int(d) for d in match[3].split(",")]
    if (
        first + len(offsets) - 1 > MAX_PARTITION
        or base > MAX_OFFSET
        or not all(0 <= o <= MAX_OFFSET for o in offsets)
    ):
        raise bad_request(f"Last-Event-ID {_quote(text)} is not an event id of this stream")
    return dict(enumerate(offsets, start=first))


def parse_from(text: str | None) -> Start:
    """``beginning``, ``end`` (the default), epoch milliseconds, or an ISO 8601 time.

    An ISO time without an offset is UTC (a server has no better guess, and browsers'
    ``toISOString()`` always says Z anyway). Before 1970 is 422, as for v2's timestamp seeks.
    """
    if text is None or text == "":
        return END
    lowered = text.strip().lower()
    if lowered in ("beginning", "end"):
        return Start(lowered)
    if _DIGITS.fullmatch(text):
        ms = int(text)
        if ms > MAX_OFFSET:
            raise bad_request(f"from={_quote(text)} is out of range")
        return Start(None, ms)
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise bad_request(
            f"from={_quote(text)} is not beginning, end, epoch milliseconds or an ISO 8601 time"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    ms = _epoch_ms(when)
    if ms < 0:
        raise GatewayError(422, 422, f"from={_quote(text)} is before 1970")
    return Start(None, ms)


def _epoch_ms(when: datetime) -> int:
    """Exact milliseconds (no float rounding: ``.999999`` must not become the next ms)."""
    delta = when - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def parse_partitions(text: str | None) -> list[int] | None:
    """``partition=0`` or ``partition=0,2``, sorted and without repeats; None: all."""
    if text is None or text.strip() == "":
        return None
    found: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not _DIGITS.fullmatch(part) or int(part) > MAX_PARTITION:
            raise bad_request(f"partition={_quote(text)} is not a comma-separated partition list")
        found.add(int(part))
    return sorted(found)


def resume(
    partitions: Iterable[int], last_id: Mapping[int, int] | None
) -> tuple[dict[int, int], list[int]]:
    """(the resume id's offsets for this stream's partitions, the partitions it leaves to
    ``from``). Partitions of the id the stream does not read (another ``partition=`` filter,
    a topic re-created smaller) are ignored: the id describes a stream, not a demand."""
    given = last_id or {}
    wanted = list(partitions)
    return {p: given[p] for p in wanted if p in given}, [p for p in wanted if p not in given]


def _quote(text: str) -> str:
    return repr(text if len(text) <= 100 else text[:100] + "...")
