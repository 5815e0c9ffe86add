"""A small Server-Sent Events reader for tests, written to the WHATWG parsing rules.

The tests check what a browser's ``EventSource`` would see, so this parser follows the same
rules rather than splitting on ``"\\n\\n"``: lines end in CRLF, LF or CR (also across chunk
boundaries); ``field: value`` drops one space after the colon; ``data`` lines of one event are
joined with ``\\n``; a block without ``data`` dispatches no event; ``id`` persists from event to
event (it is the ``lastEventId`` a reconnect sends) and an ``id`` containing NUL is ignored.

What :func:`read_events` yields, in stream order (``Event.kind``):

* ``"event"``: a dispatched event. ``event`` is its type (``"message"`` when the stream gave
  none), ``data`` its text, ``id`` the last event id in effect (``None`` before any).
* ``"heartbeat"``: one comment line (``: keep-alive``), yielded at once, *not* counted as an
  event; ``data`` holds the comment text. EventSource ignores these; tests count them to see
  heartbeats flow. Filter with ``if ev.kind == "event"`` (or use :func:`events_only`).
* ``"retry"``: a block that set ``retry:`` but carried no data (``Event.retry`` is the value in
  ms). A ``retry:`` inside a block with data is reported on that event's ``retry`` instead.
* ``"checkpoint"``: a block with an ``id:`` but no data. EventSource dispatches nothing for it
  but still takes the id as its ``lastEventId`` (the spec sets it before checking for data), so
  a server can move the resume position on without an event (``GET /topics/{t}/events`` does
  after records its filters skipped). ``Event.id`` is the new id.

Client side, the resume position is simply the ``id`` of the last thing yielded (of any kind).

The iterator ends when the response body ends. It never waits on its own: wrap the loop in
``asyncio.timeout(...)`` (every wait in a test is bounded).

Example::

    async with http.get(url, headers={"Accept": "text/event-stream"}) as resp:
        async with asyncio.timeout(10):
            async for ev in events_only(read_events(resp)):
                record = ev.json()
"""

from __future__ import annotations

import codecs
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True)
class Event:
    kind: str = "event"  # "event" | "heartbeat" | "retry"
    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None

    def json(self) -> Any:
        return orjson.loads(self.data)


def _lines(buffer: str) -> tuple[list[str], str]:
    """Complete lines in ``buffer`` and the unfinished rest. A trailing CR stays in the rest:
    its LF may be in the next chunk, and CRLF is one line end, not two."""
    out: list[str] = []
    start = 0
    i = 0
    n = len(buffer)
    while i < n:
        c = buffer[i]
        if c == "\n":
            out.append(buffer[start:i])
            start = i = i + 1
        elif c == "\r":
            if i + 1 == n:
                break
            out.append(buffer[start:i])
            i += 2 if buffer[i + 1] == "\n" else 1
            start = i
        else:
            i += 1
    return out, buffer[start:]


async def read_events(resp: Any) -> AsyncIterator[Event]:
    """Events of an ``aiohttp.ClientResponse`` (or anything with ``.content.iter_any()``)."""
    last_id: str | None = None
    event_type = ""
    data: list[str] = []
    retry: int | None = None
    block_id = False  # the current block set an id
    pending = ""
    first = True
    # Incremental: a chunk may end inside a multi-byte character.
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    async for chunk in resp.content.iter_any():
        text = decoder.decode(chunk)
        if first and text:
            text = text.removeprefix("\ufeff")
            first = False
        lines, pending = _lines(pending + text)
        for line in lines:
            if line == "":
                if data:
                    yield Event(
                        event=event_type or "message", data="\n".join(data), id=last_id, retry=retry
                    )
                elif block_id:
                    yield Event(kind="checkpoint", event="", id=last_id, retry=retry)
                elif retry is not None:
                    yield Event(kind="retry", event="", id=last_id, retry=retry)
                event_type, data, retry, block_id = "", [], None, False
                continue
            if line.startswith(":"):
                yield Event(kind="heartbeat", event="", data=line[1:].strip(), id=last_id)
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event_type = value
            elif name == "data":
                data.append(value)
            elif name == "id":
                if "\0" not in value:
                    last_id, block_id = value, True
            elif name == "retry" and value.isdigit():
                retry = int(value)
    # An unterminated last block is discarded, as EventSource does.


async def events_only(events: AsyncIterator[Event]) -> AsyncIterator[Event]:
    """Only dispatched events (no heartbeats, no bare retry hints)."""
    async for ev in events:
        if ev.kind == "event":
            yield ev
