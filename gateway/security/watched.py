"""A configuration file that is re-read when it changes: users, authorisation rules.

Looked at (one ``stat``) at most every :data:`RELOAD_CHECK_S`, never per request. At start the
file must read and parse, or start-up stops naming the problem; later, a broken edit is logged
and the last good content keeps serving: refusing everyone because of one typo would take
every client down at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

RELOAD_CHECK_S = 2.0

T = TypeVar("T")


class WatchedFile(Generic[T]):
    """``parse(text, source)`` raises ``error`` for bad content; so does an unreadable file."""

    def __init__(
        self,
        path: str | Path,
        parse: Callable[[str, str], T],
        error: type[Exception],
        what: str,
    ) -> None:
        self._path = Path(path)
        self._parse = parse
        self._error = error
        self._what = what
        self._mtime_ns: int | None = None
        self._checked_at = time.monotonic()
        self._value = self._read()

    def current(self) -> T:
        now = time.monotonic()
        if now - self._checked_at >= RELOAD_CHECK_S:
            self._checked_at = now
            try:
                self._value = self._read()
            except self._error as exc:
                log.error("%s; keeping the %s read before", exc, self._what)
        return self._value

    def _read(self) -> T:
        try:
            mtime_ns = self._path.stat().st_mtime_ns
            if mtime_ns == self._mtime_ns:
                return self._value
            value = self._parse(self._path.read_text(), str(self._path))
        except OSError as exc:
            raise self._error(f"cannot read {self._what} {self._path}: {exc}") from exc
        self._mtime_ns = mtime_ns
        return value
