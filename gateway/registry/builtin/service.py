"""Registry operations with Confluent's semantics over the replicated in-memory view.

Reads first catch up with the topic (read-your-writes across replicas), then answer from
memory. Writes run under the cluster-wide write lock: catch up, decide (version, id, checks)
on a view that includes every earlier write anywhere, append one record with acks=all, and
return only once this replica has applied it, so the writer's next read sees it too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from aiokafka import ConsumerRecord

from gateway.config import Config
from gateway.errors import describe

from . import errors, wire
from .compatibility import avro_level_errors
from .identity import Identity, SchemaTooDeep, identity
from .kafka_log import SchemaLog
from .model import AVRO, DEFAULT_LEVEL, NONE, SchemaText, Version
from .parsing import InvalidSchema, ParsedSchema, parse
from .state import RegistryState, StoredSchema
from .write_lock import open_write_lock

log = logging.getLogger(__name__)

ALL_VERSIONS = -2  # compatibility against every live version (POST .../versions)
_MAX_REFERENCE_DEPTH = 32
_ID_ATTEMPTS = 20  # only writers without the cluster lock (memory:// replicas) ever retry


class RegistryService:
    """One per process; explicit ``start()`` / ``stop()`` (the reader task, the lock)."""

    def __init__(self, config: Config) -> None:
        self.state = RegistryState()
        self.log = SchemaLog(config, self._apply)
        self._timeout = config.kafka_timeout_ms / 1000
        # A holder's steps (catch up, append, wait) are each bounded by kafka.timeout.ms.
        ttl_ms = 3 * config.kafka_timeout_ms + 5000
        self._lock = open_write_lock(config.session_store_url, config.schema_registry_topic, ttl_ms)
        self._parsed: dict[int, ParsedSchema] = {}
        # Records of the topic replay skipped as malformed (anything can write the topic);
        # also logged, one line each with its offset.
        self.skipped_records = 0

    async def start(self) -> None:
        await self.log.start()

    async def stop(self) -> None:
        await self.log.stop()
        await self._lock.close()

    async def _apply(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        # Decoding and normalizing schema texts is the CPU part of a replay: a worker thread
        # does it, the loop only folds the results into the view (dictionary updates).
        # Nothing a record holds may make this raise: the reader would retry the same offset
        # forever, on every replica, and the registry would be wedged for good.
        decoded, skipped = await asyncio.to_thread(_decode_batch, records)
        self.skipped_records += skipped
        for offset, rec, ident in decoded:
            try:
                self.state.apply(rec, ident)
            except Exception:
                self.skipped_records += 1
                log.exception("schema registry: skipping record at offset %d", offset)

    # --- reads -------------------------------------------------------------------------------

    async def subjects(self, include_deleted: bool = False, prefix: str = "") -> list[str]:
        await self.log.catch_up()
        return [s for s in self.state.subjects(include_deleted) if s.startswith(prefix)]

    async def versions(self, subject: str, include_deleted: bool = False) -> list[int]:
        await self.log.catch_up()
        found = self.state.versions(subject, include_deleted)
        if not found:
            raise errors.subject_not_found(subject)
        return [v.version for v in found]

    async def version(
        self, subject: str, version: int | None, include_deleted: bool = False
    ) -> tuple[Version, StoredSchema]:
        """``version=None``: the latest."""
        await self.log.catch_up()
        v = self._existing(subject, version, include_deleted)
        return v, self.state.schema_of(v)

    async def referenced_by(self, subject: str, version: int | None) -> list[int]:
        await self.log.catch_up()
        v = self._existing(subject, version, include_deleted=False)
        return self.state.referenced_by(subject, v.version)

    async def schema(self, schema_id: int) -> StoredSchema:
        # An id never changes meaning (first record wins), so a schema already known here is
        # served without the round trip to Kafka; only an unknown id waits for a catch-up.
        found = self.state.schema(schema_id)
        if found is None:
            await self.log.catch_up()
            found = self.state.schema(schema_id)
        if found is None:
            raise errors.schema_not_found(schema_id)
        return found

    async def usages(self, schema_id: int, include_deleted: bool = False) -> list[Version]:
        await self.log.catch_up()
        if self.state.schema(schema_id) is None:
            raise errors.schema_not_found(schema_id)
        return self.state.usages(schema_id, include_deleted)

    async def lookup(
        self, subject: str, schema: SchemaText, include_deleted: bool = False
    ) -> tuple[Version, StoredSchema]:
        await self.log.catch_up()
        if not self.state.versions(subject, include_deleted):
            raise errors.subject_not_found(subject)
        v = self.state.find(subject, _identity(schema), include_deleted)
        if v is None:
            await self._parse(schema)  # an invalid schema is 42201, a valid unknown one 40403
            raise errors.schema_not_found()
        return v, self.state.schema_of(v)

    async def check(self, subject: str, version: int | None, schema: SchemaText) -> list[str]:
        """Incompatibilities of ``schema`` with one version (``None``: latest) or, with
        ``ALL_VERSIONS``, with what the subject's level asks of a registration."""
        await self.log.catch_up()
        parsed = await self._parse(schema)
        if version == ALL_VERSIONS:
            previous = list(reversed(self.state.versions(subject)))
        else:
            found = self.state.version(subject, version)
            if found is None and version is not None:
                self._existing(subject, version, include_deleted=False)  # raises 40401/40402
            previous = [found] if found is not None else []
        return await self._level_errors(subject, self.state.level(subject), parsed, previous)

    async def level(self, subject: str | None, default_to_global: bool = False) -> str:
        await self.log.catch_up()
        if subject is None:
            return self.state.configured_level(None) or DEFAULT_LEVEL
        level = self.state.configured_level(subject)
        if level is not None:
            return level
        if default_to_global:
            return self.state.level(None)
        raise errors.subject_level_not_configured(subject)

    # --- writes ------------------------------------------------------------------------------

    async def register(self, subject: str, schema: SchemaText) -> int:
        await self.log.catch_up()
        # Already there (the common case for a producer): no parsing, no lock, no write.
        existing = self.state.find(subject, _identity(schema))
        if existing is not None:
            return existing.id
        parsed = await self._parse(schema)  # outside the lock: parsing may be slow
        async with self._lock.hold(self._timeout):
            for _ in range(_ID_ATTEMPTS):
                await self.log.catch_up()
                existing = self.state.find(subject, parsed.identity)
                if existing is not None:
                    return existing.id
                previous = list(reversed(self.state.versions(subject)))
                problems = await self._level_errors(
                    subject, self.state.level(subject), parsed, previous
                )
                if problems:
                    raise errors.incompatible(subject, problems)
                schema_id = self.state.id_for(parsed.identity)
                known = self.state.known_schema(schema_id) if schema_id is not None else None
                if schema_id is None:
                    schema_id = self.state.max_id + 1
                # One id, one text: reuse the stored text byte for byte.
                text = known.schema if known is not None else parsed.schema
                version = self.state.next_version(subject)
                rec = wire.SchemaRecord(subject, version, schema_id, text)
                await self._write([wire.encode_schema(rec)])
                slot = self.state.version(subject, version, include_deleted=True)
                if slot is not None and slot.id == schema_id:
                    return schema_id
                log.warning(
                    "schema registry: id %d for %s lost a race in the log; retrying",
                    schema_id,
                    subject,
                )
        raise errors.store_error("could not allocate a schema id; retry the request")

    async def delete_version(self, subject: str, version: int | None, permanent: bool) -> int:
        async with self._lock.hold(self._timeout):
            await self.log.catch_up()
            if version is None:
                v = self._existing(subject, None, include_deleted=permanent)
            else:
                v = self._existing(subject, version, include_deleted=True)
            if permanent and not v.deleted:
                raise errors.version_not_soft_deleted(subject, v.version)
            if not permanent and v.deleted:
                raise errors.version_soft_deleted(subject, v.version)
            if self._referrers(subject, v.version, include_deleted=permanent):
                raise errors.reference_exists(subject, v.version)
            if permanent:
                await self._write([wire.encode_tombstone(subject, v.version)])
            else:
                schema = self.state.schema_of(v).schema
                rec = wire.SchemaRecord(subject, v.version, v.id, schema, deleted=True)
                await self._write([wire.encode_schema(rec)])
            return v.version

    async def delete_subject(self, subject: str, permanent: bool) -> list[int]:
        async with self._lock.hold(self._timeout):
            await self.log.catch_up()
            every = self.state.versions(subject, include_deleted=True)
            if not every:
                raise errors.subject_not_found(subject)
            live = [v for v in every if not v.deleted]
            if permanent and live:
                raise errors.subject_not_soft_deleted(subject)
            if not permanent and not live:
                raise errors.subject_soft_deleted(subject)
            doomed = every if permanent else live
            for v in doomed:
                referrers = self._referrers(subject, v.version, include_deleted=permanent)
                if any(r.subject != subject for r in referrers):
                    raise errors.reference_exists(subject, v.version)
            if permanent:
                writes: list[tuple[bytes, bytes | None]] = [
                    wire.encode_tombstone(subject, v.version) for v in reversed(every)
                ]
                if self.state.configured_level(subject) is not None:
                    writes.append(wire.encode_config(subject, None))
                await self._write(writes)
            else:
                await self._write([wire.encode_delete_subject(subject, live[-1].version)])
            return [v.version for v in doomed]

    async def set_level(self, subject: str | None, level: str) -> str:
        async with self._lock.hold(self._timeout):
            await self.log.catch_up()
            await self._write([wire.encode_config(subject, level)])
        return level

    async def delete_level(self, subject: str | None) -> str:
        """The level that was configured (the default, for an unset global level)."""
        async with self._lock.hold(self._timeout):
            await self.log.catch_up()
            previous = self.state.configured_level(subject)
            if previous is None and subject is not None:
                raise errors.subject_not_found(subject)
            await self._write([wire.encode_config(subject, None)])
        return previous or DEFAULT_LEVEL

    # --- helpers -----------------------------------------------------------------------------

    async def _write(self, records: Sequence[tuple[bytes, bytes | None]]) -> None:
        last = -1
        for key, value in records:
            last = await self.log.append(key, value)
        await self.log.wait_applied(last + 1)

    def _referrers(self, subject: str, version: int, include_deleted: bool) -> list[Version]:
        """The versions whose schemas reference (subject, version)."""
        return [
            user
            for schema_id in self.state.referenced_by(subject, version)
            for user in self.state.usages(schema_id, include_deleted)
        ]

    def _existing(self, subject: str, version: int | None, include_deleted: bool) -> Version:
        v = self.state.version(subject, version, include_deleted)
        if v is not None:
            return v
        if not self.state.versions(subject, include_deleted):
            raise errors.subject_not_found(subject)
        raise errors.version_not_found("latest" if version is None else version)

    async def _level_errors(
        self, subject: str, level: str, new: ParsedSchema, previous: Sequence[Version]
    ) -> list[str]:
        """``previous``: live versions, newest first."""
        if level == NONE or not previous:
            return []
        targets = previous if level.endswith("_TRANSITIVE") else previous[:1]
        new_type = new.schema.schema_type
        if any(self.state.schema_of(v).schema.schema_type != new_type for v in targets):
            return ["Incompatible because of different schema type"]
        if new_type != AVRO or new.avro is None:
            raise errors.level_not_implemented(subject, new_type, level)
        olds = []
        for v in targets:
            old = await self._parsed_version(v)
            if old.avro is not None:
                olds.append(old.avro)
        return await asyncio.to_thread(avro_level_errors, level, new.avro, olds)

    async def _parsed_version(self, v: Version) -> ParsedSchema:
        stored = self.state.schema_of(v)
        hit = self._parsed.get(stored.id)
        if hit is not None and hit.identity == stored.identity:
            return hit
        parsed = await self._parse(stored.schema, what=f"stored schema {stored.id}: ")
        self._parsed[stored.id] = parsed
        return parsed

    async def _parse(self, schema: SchemaText, what: str = "") -> ParsedSchema:
        deps = self._dependencies(schema)
        try:
            return await asyncio.to_thread(parse, schema, deps)
        except InvalidSchema as exc:
            raise errors.invalid_schema(f"{what}{exc}") from exc
        except Exception as exc:
            # A parser tripping over some input (RecursionError, a library's own bug) is
            # still about that schema: 422 for the client, the trace for us.
            log.warning("schema registry: parsing %sfailed", what or "a schema ", exc_info=True)
            raise errors.invalid_schema(f"{what}cannot be parsed: {describe(exc)}") from exc

    def _dependencies(self, schema: SchemaText) -> list[tuple[str, SchemaText]]:
        """Every schema ``schema`` references, transitively, dependencies first, with the
        name it is referenced by (a protobuf import path, an Avro type name)."""
        out: list[tuple[str, SchemaText]] = []
        seen: set[tuple[str, int]] = set()

        def visit(s: SchemaText, depth: int) -> None:
            if depth > _MAX_REFERENCE_DEPTH:
                raise errors.invalid_schema("references are nested too deeply")
            for ref in s.references:
                key = (ref.subject, ref.version)
                if key in seen:
                    continue
                v = self.state.version(ref.subject, ref.version, include_deleted=True)
                if v is None:
                    raise errors.invalid_schema(
                        f"reference '{ref.name}' to subject '{ref.subject}' version "
                        f"{ref.version} not found"
                    )
                seen.add(key)
                dep = self.state.schema_of(v).schema
                visit(dep, depth + 1)
                out.append((ref.name, dep))

        visit(schema, 0)
        return out


def _identity(schema: SchemaText) -> Identity:
    """A client's schema's identity; too deep to be one is the client's mistake (422)."""
    try:
        return identity(schema)
    except SchemaTooDeep as exc:
        raise errors.invalid_schema(str(exc)) from None


def _decode_batch(
    records: list[ConsumerRecord[bytes, bytes]],
) -> tuple[list[tuple[int, wire.Record, Identity | None]], int]:
    """(offset, record, identity of its schema) for each record that means something to the
    registry, and how many were skipped as malformed."""
    out: list[tuple[int, wire.Record, Identity | None]] = []
    skipped = 0
    for record in records:
        try:
            rec = wire.decode(record.key, record.value)
            if rec is None:
                continue
            ident = identity(rec.schema) if isinstance(rec, wire.SchemaRecord) else None
        except (wire.BadRecord, SchemaTooDeep, RecursionError) as exc:
            skipped += 1
            log.warning(
                "schema registry: skipping malformed record at offset %d: %s",
                record.offset,
                describe(exc),
            )
            continue
        except Exception:  # whatever else a crafted record trips over: skip it all the same
            skipped += 1
            log.exception("schema registry: skipping record at offset %d", record.offset)
            continue
        out.append((record.offset, rec, ident))
    return out, skipped
