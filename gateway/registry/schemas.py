"""Compiled schemas for the produce and consume paths: registry client + codec caches.

One object per application (``app[SCHEMAS]``). It answers the two questions the paths ask:

* produce: "which schema id and codec does this request's ``*_schema`` / ``*_schema_id`` mean
  for this subject?", with Confluent's errors (42205 / 42206 / 42207 / 403);
* consume: "which codec reads schema id N?", where an id the registry does not know, or a
  schema that does not compile, is the *record's* problem (it cannot ever be read: the caller
  skips it), while a registry that cannot be reached is *ours* (nothing is skipped; retry).

Compiling runs in a worker thread (protoc is a child process; big Avro / JSON schemas take a
while to parse), once per id: compiled codecs are cached by id, which the registry never
reuses. Concurrent requests for one id share one compilation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from ..config import Config
from ..errors import GatewayError
from ..formats import avro, jsonschema, protobuf
from ..formats.codec import FORMATS, SCHEMA_TYPES, Codec, SchemaError
from .client import NOT_CONFIGURED, RegistryClient, RegistryError, Schema, Transport

_COMPILERS: dict[str, Callable[[str, dict[str, str]], Codec]] = {
    "avro": avro.compile_schema,
    "jsonschema": jsonschema.compile_schema,
    "protobuf": protobuf.compile_schema,
}
_CACHE_LIMIT = 1_000


class Schemas:
    """Explicit lifecycle (``start`` / ``stop``) for the registry client it owns."""

    def __init__(self, config: Config, transport: Transport | None = None) -> None:
        """``transport``: how to reach the registry; the built-in registry passes an
        in-process one (it is this process's own service), others default to HTTP."""
        self.client = RegistryClient(config.schema_registry_url, config.schema_registry_user_info)
        self._builtin = config.schema_registry_builtin
        self._transport = transport
        self._by_id: dict[int, Codec] = {}
        self._by_text: dict[tuple[str, str], Codec] = {}
        self._subjects: set[tuple[str, int]] = set()
        self._pending: dict[Any, asyncio.Future[Any]] = {}

    @property
    def configured(self) -> bool:
        return self._builtin or self.client.configured

    async def start(self) -> None:
        await self.client.start(self._transport)

    async def stop(self) -> None:
        await self.client.stop()

    # --- produce -----------------------------------------------------------------------------

    async def for_text(self, fmt: str, subject: str, text: str) -> tuple[int, Codec]:
        """The id of schema text under ``subject`` (registered if new) and its codec."""
        self._require_registry()
        codec = self._by_text.get((fmt, text)) or await self._shared(
            ("text", fmt, text), lambda: self._compile_text(fmt, text)
        )
        schema_id = await self.client.id_for(subject, Schema(text, SCHEMA_TYPES[fmt]))
        return schema_id, codec

    async def for_id(self, fmt: str, subject: str, schema_id: int) -> Codec:
        """The codec of ``schema_id``, which must be a ``fmt`` schema registered under
        ``subject`` (Confluent checks the subject too, so a client cannot write one topic's
        records with another topic's schema by mistake)."""
        self._require_registry()
        schema = await self.client.schema_by_id(schema_id)
        if schema.schema_type != SCHEMA_TYPES[fmt]:
            raise invalid_schema(
                f"schema {schema_id} is a {schema.schema_type} schema, not {SCHEMA_TYPES[fmt]}"
            )
        if (subject, schema_id) not in self._subjects:
            if await self.client.lookup(subject, schema) is None:
                raise RegistryError(
                    422,
                    42207,
                    "Error serializing message. Error when fetching schema version. "
                    f"subject = {subject}, schema = {schema.schema}\n"
                    f"Schema {schema_id} is not registered under subject {subject}; "
                    "error code: 40403",
                )
            _remember_set(self._subjects, (subject, schema_id))
        try:
            return await self.codec(schema_id)
        except SchemaError as exc:
            raise invalid_schema(f"schema {schema_id} cannot be used: {exc}") from None

    # --- consume -----------------------------------------------------------------------------

    async def for_read(self, schema_id: int) -> Codec | str:
        """The codec for records naming ``schema_id``, or why no record naming it can be read.

        Raises (408 40801, nothing skipped) when the registry cannot answer right now.
        """
        try:
            return await self.codec(schema_id)
        except SchemaError as exc:
            return f"schema {schema_id} cannot be used: {exc}"
        except RegistryError as exc:
            if exc.not_found:
                return f"schema {schema_id} not found in the schema registry"
            if exc.status == 403:
                raise
            raise GatewayError(
                408,
                40801,
                f"Cannot read records: schema {schema_id} could not be fetched from the "
                f"schema registry ({exc.message.splitlines()[-1]}). No record was skipped; "
                "retry the read.",
                retry_after=1,
            ) from exc

    # --- both --------------------------------------------------------------------------------

    async def codec(self, schema_id: int) -> Codec:
        """The compiled codec of a registered schema, with its references resolved."""
        cached = self._by_id.get(schema_id)
        if cached is not None:
            return cached
        return await self._shared(("id", schema_id), lambda: self._compile_id(schema_id))

    async def _compile_id(self, schema_id: int) -> Codec:
        schema = await self.client.schema_by_id(schema_id)
        fmt = FORMATS.get(schema.schema_type)
        if fmt is None:
            raise SchemaError(f"unsupported schema type {schema.schema_type}")
        try:
            refs = await self.client.references(schema)
        except GatewayError as exc:
            if exc.error_code != 42205:  # e.g. circular references: the schema is unusable
                raise
            raise SchemaError(exc.message.removeprefix("Invalid schema: ")) from None
        texts = {name: ref.schema for name, ref in refs.items()}
        codec = await asyncio.to_thread(_COMPILERS[fmt], schema.schema, texts)
        _remember(self._by_id, schema_id, codec)
        return codec

    async def _compile_text(self, fmt: str, text: str) -> Codec:
        key = (fmt, text)
        cached = self._by_text.get(key)
        if cached is not None:
            return cached
        try:
            codec = await asyncio.to_thread(_COMPILERS[fmt], text, {})
        except SchemaError as exc:
            raise invalid_schema(
                f"Error when parsing raw schema. format = {SCHEMA_TYPES[fmt]}: {exc}"
            ) from None
        _remember(self._by_text, key, codec)
        return codec

    def _require_registry(self) -> None:
        if not self.configured:
            raise GatewayError(422, 42206, NOT_CONFIGURED)

    async def _shared(self, key: Any, make: Callable[[], Awaitable[Codec]]) -> Codec:
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(make())
            self._pending[key] = pending
            pending.add_done_callback(lambda f: self._settled(key, f))
        return await asyncio.shield(pending)

    def _settled(self, key: Any, future: asyncio.Future[Any]) -> None:
        self._pending.pop(key, None)
        if not future.cancelled():
            future.exception()  # seen: every waiter may have given up before it ended


def invalid_schema(detail: str) -> GatewayError:
    return GatewayError(422, 42205, f"Invalid schema: {detail}")


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
    if len(cache) >= _CACHE_LIMIT:  # a bound, not an LRU: schemas in use come right back
        cache.pop(next(iter(cache)))
    cache[key] = value


def _remember_set(cache: set[Any], key: Any) -> None:
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache.add(key)
