"""One config as v3 shows it (reference 5.2), from the entry Kafka's DescribeConfigs returns.

Shared by topic, broker and cluster-wide configs, which differ only in the fields naming
their owner (``topic_name``, ``broker_id``, ``config_type``). Kafka reports where a value
comes from as a small id; v3 names it as Java's ``ConfigEntry.ConfigSource`` does, and a
source Confluent has no name for (client-metrics configs) is ``UNKNOWN``, as in Confluent's
``ConfigSource.fromAdminConfigSource``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# DescribeConfigsResponse's ConfigSource ids, by Confluent's names.
SOURCES: Mapping[int, str] = {
    0: "UNKNOWN",
    1: "DYNAMIC_TOPIC_CONFIG",
    2: "DYNAMIC_BROKER_CONFIG",
    3: "DYNAMIC_DEFAULT_BROKER_CONFIG",
    4: "STATIC_BROKER_CONFIG",
    5: "DEFAULT_CONFIG",
    6: "DYNAMIC_BROKER_LOGGER_CONFIG",
    7: "UNKNOWN",  # client-metrics subscriptions: no Confluent name
    8: "DYNAMIC_GROUP_CONFIG",
}
DEFAULT_CONFIG = 5


def source_name(source_id: int) -> str:
    return SOURCES.get(source_id, "UNKNOWN")


@dataclass(frozen=True)
class Synonym:
    name: str
    value: str | None
    source: str


@dataclass(frozen=True)
class ConfigEntry:
    name: str
    value: str | None
    is_default: bool
    is_read_only: bool
    is_sensitive: bool
    source: str
    synonyms: tuple[Synonym, ...]


def from_kafka(raw: Mapping[str, Any]) -> ConfigEntry:
    """An entry of DescribeConfigs v1+ (``to_object()`` form, synonyms requested).

    A sensitive value is null whatever Kafka sent (it sends null already; a proxy must
    never be the place a password leaks). ``is_default`` is Java's ``ConfigEntry.isDefault``:
    the value comes from the built-in default.
    """
    sensitive = bool(raw["is_sensitive"])
    source_id = int(raw["config_source"])
    return ConfigEntry(
        name=raw["config_names"],
        value=None if sensitive else raw["config_value"],
        is_default=source_id == DEFAULT_CONFIG,
        is_read_only=bool(raw["read_only"]),
        is_sensitive=sensitive,
        source=source_name(source_id),
        synonyms=tuple(
            Synonym(
                name=s["config_name"],
                value=None if sensitive else s["config_value"],
                source=source_name(int(s["config_source"])),
            )
            for s in raw.get("config_synonyms") or ()
        ),
    )


def by_name(entries: Iterable[ConfigEntry]) -> list[ConfigEntry]:
    """v3 lists configs sorted by name (Java's String order: by UTF-16 code unit, which for
    config names, all ASCII, is Python's order too)."""
    return sorted(entries, key=lambda e: e.name)


def find(entries: Iterable[ConfigEntry], name: str) -> ConfigEntry | None:
    return next((e for e in entries if e.name == name), None)


def fields(entry: ConfigEntry) -> dict[str, Any]:
    """The fields every config resource ends with, in Confluent's order."""
    return {
        "name": entry.name,
        "value": entry.value,
        "is_default": entry.is_default,
        "is_read_only": entry.is_read_only,
        "is_sensitive": entry.is_sensitive,
        "source": entry.source,
        "synonyms": [
            {"name": s.name, "value": s.value, "source": s.source} for s in entry.synonyms
        ],
    }
