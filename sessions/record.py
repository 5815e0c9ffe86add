"""The directory's document for one consumer instance, and the names of the directory's keys.

Shared by both stores (:mod:`sessions.directory`, :mod:`sessions.redis_store`) and by
whatever reads the directory from outside (tests, tools), so the key layout has one source.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass
class InstanceRecord:
    """The directory's document for one instance (JSON in Redis, one key per instance)."""

    group: str
    name: str
    owner: str  # node id; "" when released (anyone may adopt at once)
    epoch: int
    spec: dict[str, Any]
    # {"topics": [...]} | {"pattern": "..."} | {"partitions": [[t, p], ...]} | {}
    subscription: dict[str, Any] = field(default_factory=dict)
    positions: dict[str, int] = field(default_factory=dict)  # "topic:partition" -> offset
    # The group's committed offset of each saved position at drain time (see Handover).
    baseline: dict[str, int] = field(default_factory=dict)
    # Fields written by a newer version of the gateway: kept and written back untouched, so
    # two versions can share one directory during a rolling upgrade.
    extra: dict[str, Any] = field(default_factory=dict)

    def dumps(self) -> bytes:
        doc = {k: v for k, v in self.__dict__.items() if k != "extra"}
        return orjson.dumps({**self.extra, **doc})

    @classmethod
    def loads(cls, raw: bytes | str) -> InstanceRecord:
        doc = orjson.loads(raw)
        known = {k: doc.pop(k) for k in _FIELDS if k in doc}
        return cls(**known, extra=doc)


_FIELDS = ("group", "name", "owner", "epoch", "spec", "subscription", "positions", "baseline")


def record_key(prefix: str, group: str, name: str) -> str:
    # Length-prefixed so that no (group, name) pair can collide with another.
    return f"{prefix}inst:{len(group)}:{group}:{name}"


def lease_key(prefix: str, node_id: str) -> str:
    return f"{prefix}node:{node_id}"


def url_key(prefix: str, url: str) -> str:
    # Which node last registered this address: a node restarted in place (same node.url,
    # new node id) finds its dead predecessor here.
    return f"{prefix}url:{url}"
