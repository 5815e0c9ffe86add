"""An async client for any Confluent-compatible Schema Registry (Confluent's, ours, Apicurio's).

Only what the produce and consume paths need: schemas by id, lookup and registration under a
subject, subject versions (to resolve schema references). Registry answers are cached where
the registry promises they cannot change: a schema id always names the same schema, and a
(subject, schema) pair keeps its id, so the hot produce path costs no round trip after the
first request (Confluent's CachedSchemaRegistryClient makes the same bet). Concurrent misses
for one key share one request.

Failures become the errors Confluent's REST Proxy answers with: anything wrong with the
registry (unreachable, 5xx, an answer that is not a registry's) is 422 / 42207
``Error serializing message. <context>\\n<cause>``; the registry refusing our credentials is
403 / 40301; no registry configured at all is 422 / 42206. A registry 404 is returned to the
caller as :attr:`RegistryError.not_found` because "no such schema" is an answer, not a failure.

Requests go through a :class:`Transport`: HTTP for any external registry, or the built-in
registry's in-process transport (``schema.registry.builtin=true``), which answers the same
paths with the same bodies, so caching and error mapping are one code path for both.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from urllib.parse import quote

import aiohttp
import orjson

from ..config import redact
from ..errors import GatewayError, describe

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
ACCEPT = (
    "application/vnd.schemaregistry.v1+json, "
    "application/vnd.schemaregistry+json; q=0.9, application/json; q=0.5"
)
NOT_CONFIGURED = "Payload error. Schema Registry must be configured when using schemas."
CONNECT_TIMEOUT_S = 5.0
TOTAL_TIMEOUT_S = 15.0
# Registry error codes meaning "not there": subject, version, schema, soft-deleted subject or
# version (a lookup that gets one of these registers the schema, as Confluent's proxy does).
_NOT_FOUND_CODES = frozenset({40401, 40402, 40403, 40404, 40406})
_CACHE_LIMIT = 10_000
# The registry's name for a subject's newest version, and how long an answer for it is kept.
LATEST = -1
LATEST_TTL_S = 30.0

T = TypeVar("T")


@dataclass(frozen=True)
class Reference:
    """A schema reference: ``name`` is the import path / ``$ref`` / type name that uses it."""

    name: str
    subject: str
    version: int

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "subject": self.subject, "version": self.version}


@dataclass(frozen=True)
class Schema:
    """A schema as the registry stores it (``schema_type`` is AVRO when the registry omits it)."""

    schema: str
    schema_type: str = "AVRO"
    references: tuple[Reference, ...] = ()


@dataclass(frozen=True)
class SubjectVersion:
    subject: str
    version: int
    id: int
    schema: Schema


class RegistryError(GatewayError):
    """A registry call failed; already the Confluent error to answer with."""

    def __init__(
        self,
        status: int,
        error_code: int,
        message: str,
        *,
        registry_status: int | None = None,
        registry_code: int | None = None,
    ) -> None:
        super().__init__(status, error_code, message)
        self.registry_status = registry_status
        self.registry_code = registry_code

    @property
    def not_found(self) -> bool:
        """The registry answered that the subject, version or schema does not exist."""
        return self.registry_status == 404 and self.registry_code in _NOT_FOUND_CODES


class TransportFailure(Exception):
    """The registry could not be asked at all (connection, timeout); the message says why."""


class Transport(Protocol):
    """How requests reach the registry: over HTTP, or in-process to the built-in one."""

    async def request(self, method: str, path: str, body: Any) -> tuple[int, Any, bytes]:
        """``(status, parsed JSON or None, raw body)``; :class:`TransportFailure` if unsent."""
        ...

    async def close(self) -> None: ...


class HttpTransport:
    """One pooled aiohttp session; its timeouts bound every call, so a hung registry costs a
    produce request seconds, never the client's patience."""

    def __init__(self, url: str, user_info: str = "") -> None:
        self.url = url.rstrip("/")
        headers = {"Accept": ACCEPT}
        if user_info:
            headers["Authorization"] = _basic_auth(user_info)
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=TOTAL_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
            headers=headers,
        )

    async def request(self, method: str, path: str, body: Any) -> tuple[int, Any, bytes]:
        headers = {"Content-Type": CONTENT_TYPE} if body is not None else None
        data = orjson.dumps(body) if body is not None else None
        try:
            async with self._session.request(
                method, self.url + path, data=data, headers=headers
            ) as resp:
                raw = await resp.read()
                return resp.status, _json(raw), raw
        except TimeoutError as exc:
            # Messages reach clients and logs: never with the URL's credentials.
            raise TransportFailure(f"{redact(self.url)} did not answer in time") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise TransportFailure(redact(describe(exc))) from exc

    async def close(self) -> None:
        await self._session.close()


class RegistryClient:
    """Explicit lifecycle: ``await start()`` ... ``await stop()``; calls before start fail.

    ``url`` empty means no registry: every call answers 42206, as Confluent's proxy does.
    """

    def __init__(self, url: str, user_info: str = "") -> None:
        self._url = url.rstrip("/")
        self._user_info = user_info
        self._transport: Transport | None = None
        self._by_id: dict[int, Schema] = {}
        self._ids: dict[tuple[str, Schema], int] = {}
        self._versions: dict[tuple[str, int], SubjectVersion] = {}
        self._latest: dict[str, tuple[float, SubjectVersion]] = {}  # (when fetched, version)
        self._inflight: dict[Any, asyncio.Future[Any]] = {}

    @property
    def configured(self) -> bool:
        return bool(self._url) or self._transport is not None

    async def start(self, transport: Transport | None = None) -> None:
        """Talk HTTP to ``url``, or through ``transport`` (the built-in registry in-process)."""
        if self._transport is None:
            if transport is None and self._url:
                transport = HttpTransport(self._url, self._user_info)
            self._transport = transport

    async def stop(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            await transport.close()

    # --- the registry API --------------------------------------------------------------------

    async def schema_by_id(self, schema_id: int) -> Schema:
        """``GET /schemas/ids/{id}``; cached for good (ids are immutable)."""
        cached = self._by_id.get(schema_id)
        if cached is not None:
            return cached

        async def fetch() -> Schema:
            body = await self._call(
                "GET",
                f"/schemas/ids/{schema_id}",
                context=f"Error when fetching schema by id. schemaId = {schema_id}",
            )
            schema = _schema(body)
            _remember(self._by_id, schema_id, schema)
            return schema

        return await self._once(("id", schema_id), fetch)

    async def subject_version(self, subject: str, version: int) -> SubjectVersion:
        """``GET /subjects/{subject}/versions/{version}``; cached (a version's content is fixed).

        ``version`` -1 is the subject's *latest* version, which moves whenever a schema is
        registered: it is kept for :data:`LATEST_TTL_S` only, so producers that name no
        version pick up a new one within that time instead of at the next restart.
        """
        key = (subject, version)
        if version == LATEST:
            latest = self._latest.get(subject)
            if latest is not None and time.monotonic() - latest[0] < LATEST_TTL_S:
                return latest[1]
            found = await self._once(
                ("version", key), lambda: self._fetch_version(subject, version)
            )
            _remember(self._latest, subject, (time.monotonic(), found))
            return found
        cached = self._versions.get(key)
        if cached is not None:
            return cached
        return await self._once(("version", key), lambda: self._fetch_version(subject, version))

    async def _fetch_version(self, subject: str, version: int) -> SubjectVersion:
        body = await self._call(
            "GET",
            f"/subjects/{_seg(subject)}/versions/{version}",
            context=(
                f"Error when fetching schema by version. subject = {subject}, version = {version}"
            ),
        )
        found = SubjectVersion(
            subject=str(body.get("subject", subject)),
            version=_int(body, "version", version),
            id=_int(body, "id"),
            schema=_schema(body),
        )
        # Under its own number: "latest" answered with version N is version N for good.
        _remember(self._versions, (found.subject, found.version), found)
        _remember(self._by_id, found.id, found.schema)
        return found

    async def lookup(self, subject: str, schema: Schema) -> tuple[int, int] | None:
        """``POST /subjects/{subject}``: ``(id, version)`` if ``schema`` is registered there."""
        try:
            body = await self._call(
                "POST",
                f"/subjects/{_seg(subject)}",
                _payload(schema),
                context=(
                    f"Error when fetching schema version. subject = {subject}, "
                    f"schema = {schema.schema}"
                ),
            )
        except RegistryError as exc:
            if exc.not_found:
                return None
            raise
        schema_id = _int(body, "id")
        _remember(self._ids, (subject, schema), schema_id)
        _remember(self._by_id, schema_id, schema)
        return schema_id, _int(body, "version", 0)

    async def register(self, subject: str, schema: Schema) -> int:
        """``POST /subjects/{subject}/versions``: the id (an identical schema keeps its id)."""
        body = await self._call(
            "POST",
            f"/subjects/{_seg(subject)}/versions",
            _payload(schema),
            context=(
                f"Error when registering schema. format = {schema.schema_type}, "
                f"subject = {subject}, schema = {schema.schema}"
            ),
        )
        schema_id = _int(body, "id")
        _remember(self._ids, (subject, schema), schema_id)
        _remember(self._by_id, schema_id, schema)
        return schema_id

    async def id_for(self, subject: str, schema: Schema) -> int:
        """The id of ``schema`` under ``subject``, registering it if it is not there yet
        (Confluent's REST Proxy: look up first, register when absent)."""
        cached = self._ids.get((subject, schema))
        if cached is not None:
            return cached

        async def resolve() -> int:
            found = await self.lookup(subject, schema)
            if found is not None:
                return found[0]
            return await self.register(subject, schema)

        return await self._once(("subject", subject, schema), resolve)

    async def references(self, schema: Schema) -> dict[str, Schema]:
        """Every schema ``schema`` references, transitively: name -> schema, dependencies
        before the schemas that use them (the order compilers need)."""
        out: dict[str, Schema] = {}

        async def visit(refs: Iterable[Reference], trail: tuple[str, ...]) -> None:
            for ref in refs:
                if ref.name in out:
                    continue
                if ref.name in trail:
                    raise _invalid_reference(f"circular reference through {ref.name}")
                found = await self.subject_version(ref.subject, ref.version)
                await visit(found.schema.references, (*trail, ref.name))
                out[ref.name] = found.schema

        await visit(schema.references, ())
        return out

    # --- plumbing ----------------------------------------------------------------------------

    async def _once(self, key: Any, make: Callable[[], Awaitable[T]]) -> T:
        """One request per key at a time; concurrent callers share its outcome."""
        pending = self._inflight.get(key)
        if pending is None:
            pending = asyncio.ensure_future(make())
            self._inflight[key] = pending
            pending.add_done_callback(lambda f: self._settled(key, f))
        return await asyncio.shield(pending)

    def _settled(self, key: Any, future: asyncio.Future[Any]) -> None:
        self._inflight.pop(key, None)
        if not future.cancelled():
            future.exception()  # seen: every waiter may have given up before it ended

    async def _call(
        self, method: str, path: str, body: Any = None, *, context: str
    ) -> dict[str, Any]:
        transport = self._transport
        if transport is None:
            if not self._url:
                raise RegistryError(422, 42206, NOT_CONFIGURED)
            raise RegistryError(
                422, 42207, f"Error serializing message. {context}\nThe registry client is closed"
            )
        try:
            status, parsed, raw = await transport.request(method, path, body)
        except TransportFailure as exc:
            raise RegistryError(422, 42207, f"Error serializing message. {context}\n{exc}") from exc
        if 200 <= status < 300 and isinstance(parsed, dict):
            return parsed
        is_registry_error = isinstance(parsed, dict) and isinstance(parsed.get("error_code"), int)
        code = parsed["error_code"] if is_registry_error else status
        message = parsed.get("message") if isinstance(parsed, dict) else None
        if not message:
            message = raw[:200].decode("utf-8", "replace").strip() or f"HTTP {status}"
        cause = f"{message}; error code: {code}"
        if status in (401, 403):
            raise RegistryError(
                403, 40301, f"{context}\n{cause}", registry_status=status, registry_code=code
            )
        raise RegistryError(
            422,
            42207,
            f"Error serializing message. {context}\n{cause}",
            registry_status=status,
            registry_code=code if is_registry_error else None,
        )


def _basic_auth(user_info: str) -> str:
    """``schema.registry.basic.auth.user.info`` ("user:password") as an Authorization value."""
    return "Basic " + base64.b64encode(user_info.encode("utf-8")).decode("ascii")


def _seg(value: str) -> str:
    return quote(value, safe="")


def _json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return None


def _int(body: dict[str, Any], key: str, default: int | None = None) -> int:
    value = body.get(key, default)
    if type(value) is not int:
        raise _unexpected(f"{key}={value!r}")
    return value


def _unexpected(detail: str) -> RegistryError:
    return RegistryError(
        422, 42207, f"Error serializing message. Unexpected schema registry answer\n{detail}"
    )


def _schema(body: dict[str, Any]) -> Schema:
    try:
        refs = tuple(
            Reference(str(r["name"]), str(r["subject"]), int(r["version"]))
            for r in body.get("references") or ()
        )
        return Schema(str(body["schema"]), str(body.get("schemaType") or "AVRO"), refs)
    except (KeyError, TypeError, ValueError) as exc:
        raise _unexpected(repr(exc)) from exc


def _payload(schema: Schema) -> dict[str, Any]:
    body: dict[str, Any] = {"schema": schema.schema}
    if schema.schema_type != "AVRO":  # Confluent's client omits the default type
        body["schemaType"] = schema.schema_type
    if schema.references:
        body["references"] = [r.to_json() for r in schema.references]
    return body


def _invalid_reference(detail: str) -> GatewayError:
    return GatewayError(422, 42205, f"Invalid schema: {detail}")


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
    if len(cache) >= _CACHE_LIMIT:  # a bound against unbounded growth, not an LRU
        cache.pop(next(iter(cache)))
    cache[key] = value
