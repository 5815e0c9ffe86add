"""Server-Sent Events and NDJSON framing (pure).

Event data is always one line of JSON text (orjson never writes a raw newline), so an SSE
event needs exactly one ``data:`` field and an NDJSON record is that line plus ``\\n``.
"""

from __future__ import annotations

SSE = "text/event-stream"
NDJSON = "application/x-ndjson"
STREAM_TYPES = (SSE, NDJSON)

# A comment line: EventSource ignores it, but it keeps a proxy's idle timer from closing the
# stream. NDJSON readers skip empty lines, which serve the same purpose there.
SSE_HEARTBEAT = b": keep-alive\n\n"
NDJSON_HEARTBEAT = b"\n"


def one_line(data: bytes) -> bytes:
    """JSON text on one line. Stored JSON is spliced into events as it was produced, and valid
    JSON holds a raw CR or LF only between tokens, where a space means the same; left in, it
    would end an SSE ``data:`` field or an NDJSON line early."""
    if b"\n" in data or b"\r" in data:
        return data.replace(b"\n", b" ").replace(b"\r", b" ")
    return data


def sse_event(data: bytes, *, event: str | None = None, event_id: str | None = None) -> bytes:
    """One SSE event. ``event`` and ``event_id`` are the gateway's own ASCII tokens (a
    newline in either would end the field early, so callers never pass client text)."""
    data = one_line(data)
    head = b""
    if event is not None:
        head += b"event: " + event.encode() + b"\n"
    if event_id is not None:
        head += b"id: " + event_id.encode() + b"\n"
    return head + b"data: " + data + b"\n\n"


def sse_retry(ms: int) -> bytes:
    """How long an ``EventSource`` waits before reconnecting after the stream ends."""
    return b"retry: " + str(ms).encode() + b"\n\n"


def ndjson_line(data: bytes) -> bytes:
    return one_line(data) + b"\n"


def heartbeat(ctype: str) -> bytes:
    return SSE_HEARTBEAT if ctype == SSE else NDJSON_HEARTBEAT
