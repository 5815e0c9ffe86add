"""Splitting a streamed produce body into JSON values as its bytes arrive (reference 8.3, 8.4).

The body is concatenated JSON objects, whitespace between them optional, and a client may keep
it open for hours sending one object at a time, so nothing waits for the end of the body: each
chunk is added to a buffer and every value complete so far is handed out.

Almost every client puts one object on each line, and a newline can never be inside a JSON
string, so a line is tried first as a whole value with orjson (one C call, a third of the
cost of Python's own parser). Anything else (objects sharing a line, one object over many
lines, a line still arriving) goes through Python's C scanner (``raw_decode``), which finds
where a value ends. A value still arriving makes that scanner fail near the end of what is
buffered; a malformed one fails earlier, where more data cannot help. That difference decides
between waiting and the fatal 400 (Confluent ends the stream when its tokenizer breaks). Only
the value being received is buffered, and it may not grow past the size limit: a larger one
ends the stream too. A body in ISO-8859-1 is transcoded to UTF-8 as it arrives.
"""

from __future__ import annotations

import json
import re
from collections import deque
from typing import Any

import orjson

from ..body import MAX_DEPTH
from ..formats.codec import nesting_depth

# How close to the end of the buffer a scanner failure may be and still mean "not all here
# yet": ``tru``, ``-``, ``1.`` or ``"\\u00`` at the end fail a few characters before it.
_TAIL = 8
_WHITESPACE = re.compile(rb"[ \t\n\r]*")
_WHITESPACE_TEXT = re.compile(r"[ \t\n\r]*")
TOO_LARGE = "Error processing message: Produce request size is larger than allowed threshold"


class StreamBroken(Exception):
    """The rest of the body cannot be read: one 400 entry, then the stream ends."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _no_constants(name: str) -> Any:
    raise ValueError(f"Non-standard token '{name}'")  # JSON has no NaN or Infinity


class ValueSplitter:
    """Feed bytes; take complete JSON values (and the bytes each took) one at a time."""

    def __init__(self, max_bytes: int, encoding: str = "utf-8") -> None:
        self._max = max_bytes
        self._latin1 = encoding != "utf-8"
        self._decoder = json.JSONDecoder(parse_constant=_no_constants)
        self._buf = b""
        self._pos = 0
        self._started = False
        self._ready: deque[tuple[Any, int]] = deque()
        # After a scan that found a value still arriving: rescan only once the buffer has
        # grown this far, or its last byte may close a value (see _worth_scanning).
        self._rescan_at: int | None = None
        self._newline_from = 0  # no newline in the buffer before this index
        self._broken: StreamBroken | None = None
        self.ended = False  # the body has ended (after :meth:`end`)

    def feed(self, data: bytes) -> None:
        if self._latin1:
            data = data.decode("latin-1").encode("utf-8")
        if not self._started and data:
            self._started = True
            data = data.removeprefix(b"\xef\xbb\xbf")  # a BOM, as Jackson skips it
        if self._pos:
            self._buf = self._buf[self._pos :] + data
            self._newline_from = max(0, self._newline_from - self._pos)
            if self._rescan_at is not None:
                self._rescan_at -= self._pos
            self._pos = 0
        else:
            self._buf += data

    def end(self) -> None:
        self.ended = True

    def blank(self) -> bool:
        """Nothing but whitespace received so far (and nothing taken)."""
        return not self._ready and not self._buf[self._pos :].strip(b" \t\n\r")

    def take(self) -> tuple[Any, int] | None:
        """The next complete value and its size in bytes; None: not all here yet."""
        if not self._ready:
            if self._broken is not None:
                raise self._broken
            try:
                self._fill()
            except StreamBroken as exc:
                self._broken = exc  # after the values before it
            if not self._ready:
                if self._broken is not None:
                    raise self._broken
                return None
        return self._ready.popleft()

    def _fill(self) -> None:
        buf = self._buf
        size = len(buf)
        ready = self._ready
        pos = self._pos
        while True:
            pos = _WHITESPACE.match(buf, pos).end()  # type: ignore[union-attr]
            if pos >= size:
                break
            newline = buf.find(b"\n", max(pos, self._newline_from))
            if newline < 0:
                self._newline_from = size
                break
            line = buf[pos:newline]
            try:
                value = orjson.loads(line)
            except orjson.JSONDecodeError:
                break  # not one whole value: the scanner below decides
            if newline - pos > self._max:
                raise StreamBroken(TOO_LARGE)
            if _may_be_deep(line):
                _check_depth(value)
            ready.append((value, newline - pos))
            pos = newline + 1
        self._pos = pos
        if pos < size and self._worth_scanning():
            self._scan()

    def _worth_scanning(self) -> bool:
        """Rescanning a value that is still arriving after every chunk would cost the square
        of its size; rescan when it has grown by a quarter, or may just have been closed (a
        full-duplex client waits for the result of the object it just finished)."""
        at = self._rescan_at
        if at is None or self.ended or len(self._buf) >= at:
            return True
        return self._buf[-16:].rstrip(b" \t\n\r")[-1:] in (b"}", b"]")

    def _scan(self) -> None:
        """Values from the buffer's rest with Python's scanner, up to the first incomplete."""
        self._rescan_at = None
        rest = self._buf[self._pos :]
        try:
            text = rest.decode("utf-8")
        except UnicodeDecodeError as exc:
            # The end may cut a character in two; anything else is not UTF-8.
            if self.ended or exc.start < len(rest) - 3:
                raise StreamBroken(
                    f"Error processing JSON: Invalid UTF-8 in the body ({exc.reason})"
                ) from None
            text = rest[: exc.start].decode("utf-8")
        size = len(text)
        pos = 0
        consumed = 0  # characters of text taken
        while True:
            pos = _WHITESPACE_TEXT.match(text, pos).end()  # type: ignore[union-attr]
            if pos >= size:
                consumed = pos
                break
            try:
                value, end = self._decoder.raw_decode(text, pos)
            except json.JSONDecodeError as exc:
                if not self.ended and (
                    exc.pos >= size - _TAIL or exc.msg.startswith("Unterminated string")
                ):
                    if len(text[pos:].encode("utf-8")) > self._max:
                        raise StreamBroken(TOO_LARGE) from None
                    consumed = pos
                    pending = len(rest) - len(text[:pos].encode("utf-8"))
                    self._rescan_at = len(self._buf) + pending // 4 + 1
                    break
                raise StreamBroken(f"Error processing JSON: {exc.msg}") from None
            except ValueError as exc:
                raise StreamBroken(f"Error processing JSON: {exc}") from None
            except RecursionError:
                raise StreamBroken(
                    f"Error processing JSON: nested deeper than {MAX_DEPTH} levels"
                ) from None
            if end >= size and not self.ended and not isinstance(value, dict | list | str):
                consumed = pos
                break  # a bare number may go on in the next chunk
            raw = text[pos:end].encode("utf-8")
            if len(raw) > self._max:
                raise StreamBroken(TOO_LARGE)
            if _may_be_deep(raw):
                _check_depth(value)
            self._ready.append((value, len(raw)))
            pos = end
        self._pos += len(text[:consumed].encode("utf-8"))


def _may_be_deep(raw: bytes) -> bool:
    # Counting brackets is C speed; only a value with more than MAX_DEPTH of them is walked.
    return raw.count(b"{") + raw.count(b"[") > MAX_DEPTH


def _check_depth(value: Any) -> None:
    if isinstance(value, dict | list) and nesting_depth(value, MAX_DEPTH) > MAX_DEPTH:
        raise StreamBroken(f"Error processing JSON: nested deeper than {MAX_DEPTH} levels")
