"""The registry as of some offset of the ``_schemas`` topic: records applied in log order.

Every replica folds the same log with the same rules, so every replica holds the same view
once it has read to the same offset. The rule that makes ids safe even if two writers ever
raced: the first record in log order that claims an id owns it; a later record giving that id
to a different schema is ignored (Confluent's reader does the same), and the writer that
produced it notices and retries with a fresh id.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from .identity import Identity, identity
from .model import DEFAULT_LEVEL, SchemaText, Version
from .wire import ConfigRecord, DeleteSubjectRecord, Record, SchemaRecord, SchemaTombstone

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredSchema:
    id: int
    schema: SchemaText
    identity: Identity


class RegistryState:
    """Mutated only by :meth:`apply`, on the event loop, in log order."""

    def __init__(self) -> None:
        self._subjects: dict[str, dict[int, Version]] = {}
        self._schemas: dict[int, StoredSchema] = {}
        self._ids: dict[Identity, int] = {}  # first id seen for each distinct schema
        self._users: dict[int, set[tuple[str, int]]] = {}  # id -> slots holding it
        self._freed: set[int] = set()  # ids whose last slot a permanent delete removed
        self._levels: dict[str | None, str] = {}
        self.max_id = 0

    # --- applying the log --------------------------------------------------------------------

    def apply(self, rec: Record, ident: Identity | None = None) -> None:
        """``ident``: the record's schema identity when the caller computed it already."""
        if isinstance(rec, SchemaRecord):
            self._put_version(rec, ident or identity(rec.schema))
        elif isinstance(rec, SchemaTombstone):
            self._drop_version(rec.subject, rec.version, freeing=True)
        elif isinstance(rec, DeleteSubjectRecord):
            for v in list(self._subjects.get(rec.subject, {}).values()):
                if v.version <= rec.version and not v.deleted:
                    self._subjects[rec.subject][v.version] = replace(v, deleted=True)
        elif isinstance(rec, ConfigRecord):
            if rec.level is None:
                self._levels.pop(rec.subject, None)
            else:
                self._levels[rec.subject] = rec.level

    def _put_version(self, rec: SchemaRecord, ident: Identity) -> None:
        owner = self._schemas.get(rec.id)
        # Only a permanent delete frees an id for another schema. A version slot overwritten by
        # a racing writer's record (same subject and version, another id) leaves its old id
        # without users, yet a client may already hold that id for its schema.
        if owner is not None and owner.identity != ident and rec.id not in self._freed:
            log.warning(
                "ignoring %s version %d: id %d already belongs to another schema (first wins)",
                rec.subject,
                rec.version,
                rec.id,
            )
            return
        if owner is None or owner.identity != ident:
            if owner is not None and self._ids.get(owner.identity) == rec.id:
                del self._ids[owner.identity]  # an id freed by permanent deletes, reused
            self._schemas[rec.id] = StoredSchema(rec.id, rec.schema, ident)
        self._freed.discard(rec.id)
        self._ids.setdefault(ident, rec.id)
        self.max_id = max(self.max_id, rec.id)
        self._drop_version(rec.subject, rec.version)
        slots = self._subjects.setdefault(rec.subject, {})
        slots[rec.version] = Version(rec.subject, rec.version, rec.id, rec.deleted)
        self._users.setdefault(rec.id, set()).add((rec.subject, rec.version))

    def _drop_version(self, subject: str, version: int, *, freeing: bool = False) -> None:
        slots = self._subjects.get(subject)
        if not slots or version not in slots:
            return
        old = slots.pop(version)
        users = self._users.get(old.id, set())
        users.discard((subject, version))
        if freeing and not users:
            self._freed.add(old.id)
        if not slots:
            del self._subjects[subject]

    # --- queries -----------------------------------------------------------------------------

    def subjects(self, include_deleted: bool = False) -> list[str]:
        return sorted(s for s in self._subjects if self.versions(s, include_deleted))

    def versions(self, subject: str, include_deleted: bool = False) -> list[Version]:
        """Ascending by version."""
        slots = self._subjects.get(subject, {})
        return [slots[v] for v in sorted(slots) if include_deleted or not slots[v].deleted]

    def version(
        self, subject: str, version: int | None, include_deleted: bool = False
    ) -> Version | None:
        """``version=None``: the latest one."""
        found = self.versions(subject, include_deleted)
        if version is None:
            return found[-1] if found else None
        return next((v for v in found if v.version == version), None)

    def next_version(self, subject: str) -> int:
        """Soft-deleted versions keep their numbers; only permanent deletes free them."""
        slots = self._subjects.get(subject)
        return max(slots) + 1 if slots else 1

    def schema(self, schema_id: int) -> StoredSchema | None:
        """A schema whose every version was permanently deleted is gone, as in Confluent; one
        whose only version a racing writer's record overwrote is not (its id was answered)."""
        if schema_id in self._freed:
            return None
        return self._schemas.get(schema_id)

    def known_schema(self, schema_id: int) -> StoredSchema | None:
        """Also a schema whose versions are all gone: reused if registered again."""
        return self._schemas.get(schema_id)

    def schema_of(self, version: Version) -> StoredSchema:
        return self._schemas[version.id]

    def id_for(self, ident: Identity) -> int | None:
        return self._ids.get(ident)

    def usages(self, schema_id: int, include_deleted: bool = False) -> list[Version]:
        out = []
        for subject, number in sorted(self._users.get(schema_id, ())):
            v = self._subjects[subject][number]
            if include_deleted or not v.deleted:
                out.append(v)
        return out

    def find(self, subject: str, ident: Identity, include_deleted: bool = False) -> Version | None:
        """The newest version of ``subject`` holding exactly this schema."""
        for v in reversed(self.versions(subject, include_deleted)):
            if self._schemas[v.id].identity == ident:
                return v
        return None

    def referenced_by(self, subject: str, version: int) -> list[int]:
        return sorted(
            s.id
            for s in self._schemas.values()
            if self._users.get(s.id)
            and any(r.subject == subject and r.version == version for r in s.schema.references)
        )

    def configured_level(self, subject: str | None) -> str | None:
        return self._levels.get(subject)

    def level(self, subject: str | None) -> str:
        """The level in force: the subject's own, else the global one, else the default."""
        return self._levels.get(subject) or self._levels.get(None) or DEFAULT_LEVEL
