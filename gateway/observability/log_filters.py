"""Log hygiene: client libraries' repetitive errors summarised, and an optional JSON format.

aiokafka logs some conditions on every retry, forever: a consumer subscribed to a topic that
does not exist logs ``Topic … not found in cluster metadata`` about ten times a second. That
buries everything else and costs disk for no information. :class:`RepeatSummary` lets the
first occurrence of a message through, then at most one line per interval saying how often it
repeated. It sits on the library's loggers (not on handlers), so it applies whatever handlers
the process has, the test suite's capture included.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

import orjson

# The libraries whose logs repeat. A filter on a logger sees only records logged *on* it, not
# on its children, so each module logger is listed (aiokafka names them after the module).
LIBRARY_PREFIXES = ("aiokafka",)
_LIBRARY_MODULES = ("aiokafka", "aiokafka.admin", "aiokafka.consumer.group_coordinator")
SUMMARY_INTERVAL_S = 60.0
# Distinct messages remembered at most: a message carries a topic or broker name, so their
# number is bounded only by the cluster; the least recently seen are forgotten first.
MAX_TRACKED = 1024


class RepeatSummary(logging.Filter):
    """First occurrence passes; repeats within ``interval_s`` are counted and dropped; the
    first repeat after the interval passes as ``<message> (repeated N times in the last S s)``.

    Keyed by logger, level and the formatted message, so two topics' errors are two keys.
    """

    def __init__(
        self,
        interval_s: float = SUMMARY_INTERVAL_S,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_tracked: int = MAX_TRACKED,
    ) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._clock = clock
        self._max = max_tracked
        # key -> (start of the current window, repeats dropped in it)
        self._seen: OrderedDict[tuple[str, int, str], tuple[float, int]] = OrderedDict()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True  # a broken record is the handler's problem to report, not ours
        key = (record.name, record.levelno, message)
        now = self._clock()
        seen = self._seen.get(key)
        if seen is None:
            self._remember(key, (now, 0))
            return True
        since, dropped = seen
        if now - since < self.interval_s:
            self._remember(key, (since, dropped + 1))
            return False
        self._remember(key, (now, 0))
        if dropped:
            record.msg = f"{message} (repeated {dropped + 1} times in the last {now - since:.0f} s)"
            record.args = None
        return True

    def _remember(self, key: tuple[str, int, str], value: tuple[float, int]) -> None:
        self._seen[key] = value
        self._seen.move_to_end(key)
        while len(self._seen) > self._max:
            self._seen.popitem(last=False)


def install_repeat_summary(
    prefixes: Iterable[str] = LIBRARY_PREFIXES, interval_s: float = SUMMARY_INTERVAL_S
) -> RepeatSummary:
    """Put one shared :class:`RepeatSummary` on every logger under ``prefixes`` (idempotent:
    a second app in the same process reuses the filter already there)."""
    for module in _LIBRARY_MODULES:  # their module loggers must exist to be found
        importlib.import_module(module)
    prefixes = tuple(prefixes)
    names = [
        name
        for name in list(logging.root.manager.loggerDict)
        if any(name == p or name.startswith(p + ".") for p in prefixes)
    ]
    existing = _installed(names)
    summary = existing if existing is not None else RepeatSummary(interval_s)
    for name in {*names, *prefixes}:
        logger = logging.getLogger(name)
        if summary not in logger.filters:
            logger.addFilter(summary)
    return summary


def _installed(names: Iterable[str]) -> RepeatSummary | None:
    for name in names:
        for f in logging.getLogger(name).filters:
            if isinstance(f, RepeatSummary):
                return f
    return None


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log pipelines that parse rather than grep.

    Extra fields a record carries under ``fields`` (the access log's) become top-level keys.
    """

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(fmt: str) -> None:
    """Apply ``log.format`` (``text`` or ``json``) to the root handlers and summarise the
    libraries' repeats; called by the CLI once the configuration is loaded."""
    formatter = JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter)
    install_repeat_summary()
