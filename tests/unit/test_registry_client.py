"""The registry client's contract, against a scripted transport: caching and Confluent's errors."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.registry.client import (
    Reference,
    RegistryClient,
    RegistryError,
    Schema,
    TransportFailure,
)

Answer = tuple[int, Any]


class Scripted:
    """A transport that answers from a script and records every call."""

    def __init__(self, answers: dict[tuple[str, str], Answer | Exception]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, str, Any]] = []
        self.gate: asyncio.Event | None = None

    async def request(self, method: str, path: str, body: Any) -> tuple[int, Any, bytes]:
        self.calls.append((method, path, body))
        if self.gate is not None:
            await self.gate.wait()
        answer = self.answers[(method, path)]
        if isinstance(answer, Exception):
            raise answer
        status, doc = answer
        return status, doc, b"" if doc is None else b"{}"

    async def close(self) -> None:
        pass


async def client_with(answers: dict[tuple[str, str], Answer | Exception]) -> tuple[Any, Scripted]:
    transport = Scripted(answers)
    client = RegistryClient("http://registry.invalid")
    await client.start(transport)
    return client, transport


async def test_schema_by_id_is_cached_and_concurrent_misses_share_one_request() -> None:
    client, transport = await client_with(
        {("GET", "/schemas/ids/5"): (200, {"schema": "syntax...", "schemaType": "PROTOBUF"})}
    )
    transport.gate = asyncio.Event()
    both = asyncio.gather(client.schema_by_id(5), client.schema_by_id(5))
    await asyncio.sleep(0.01)
    transport.gate.set()
    first, second = await both
    assert first == second == Schema("syntax...", "PROTOBUF")
    assert await client.schema_by_id(5) == first
    assert len(transport.calls) == 1


async def test_schema_type_defaults_to_avro_and_references_are_parsed() -> None:
    client, _ = await client_with(
        {
            ("GET", "/schemas/ids/1"): (
                200,
                {"schema": '"string"', "references": [{"name": "a", "subject": "s", "version": 2}]},
            )
        }
    )
    schema = await client.schema_by_id(1)
    assert schema.schema_type == "AVRO"
    assert [(r.name, r.subject, r.version) for r in schema.references] == [("a", "s", 2)]


async def test_lookup_then_register_and_the_id_is_remembered() -> None:
    client, transport = await client_with(
        {
            ("POST", "/subjects/t-value"): (404, {"error_code": 40401, "message": "no subject"}),
            ("POST", "/subjects/t-value/versions"): (200, {"id": 3}),
        }
    )
    schema = Schema('{"type": "object"}', "JSON")
    assert await client.id_for("t-value", schema) == 3
    assert await client.id_for("t-value", schema) == 3
    assert [c[:2] for c in transport.calls] == [
        ("POST", "/subjects/t-value"),
        ("POST", "/subjects/t-value/versions"),
    ]
    assert transport.calls[1][2] == {"schema": '{"type": "object"}', "schemaType": "JSON"}


async def test_avro_registration_omits_the_schema_type_like_confluents_client() -> None:
    client, transport = await client_with({("POST", "/subjects/a%2Fb/versions"): (200, {"id": 1})})
    assert await client.register("a/b", Schema('"int"')) == 1
    assert transport.calls == [("POST", "/subjects/a%2Fb/versions", {"schema": '"int"'})]


@pytest.mark.parametrize(
    ("answer", "status", "code", "shown"),
    [
        ((404, {"error_code": 40403, "message": "Schema 9 not found"}), 422, 42207, "40403"),
        ((500, {"error_code": 50001, "message": "store down"}), 422, 42207, "store down"),
        ((502, None), 422, 42207, "HTTP 502"),
        ((401, {"error_code": 401, "message": "Unauthorized"}), 403, 40301, "Unauthorized"),
        ((403, {"error_code": 40301, "message": "denied"}), 403, 40301, "denied"),
        (TransportFailure("connection refused"), 422, 42207, "connection refused"),
    ],
)
async def test_failures_become_confluents_errors(
    answer: Any, status: int, code: int, shown: str
) -> None:
    client, _ = await client_with({("GET", "/schemas/ids/9"): answer})
    with pytest.raises(RegistryError) as err:
        await client.schema_by_id(9)
    assert (err.value.status, err.value.error_code) == (status, code)
    context = "Error when fetching schema by id. schemaId = 9\n"
    prefix = "Error serializing message. " if code == 42207 else ""
    assert err.value.message.startswith(prefix + context)
    assert shown in err.value.message


async def test_not_found_is_an_answer_only_when_a_registry_says_so() -> None:
    client, _ = await client_with(
        {
            ("GET", "/schemas/ids/1"): (404, {"error_code": 40403, "message": "no"}),
            ("GET", "/schemas/ids/2"): (404, None),  # e.g. a URL that is no registry at all
        }
    )
    with pytest.raises(RegistryError) as err:
        await client.schema_by_id(1)
    assert err.value.not_found
    with pytest.raises(RegistryError) as err:
        await client.schema_by_id(2)
    assert not err.value.not_found


async def test_no_registry_configured() -> None:
    client = RegistryClient("")
    await client.start()
    assert not client.configured
    with pytest.raises(RegistryError) as err:
        await client.schema_by_id(1)
    assert (err.value.status, err.value.error_code, err.value.message) == (
        422,
        42206,
        "Payload error. Schema Registry must be configured when using schemas.",
    )


async def test_references_resolve_transitively_dependencies_first() -> None:
    client, _ = await client_with(
        {
            ("GET", "/subjects/b/versions/1"): (
                200,
                {
                    "subject": "b",
                    "version": 1,
                    "id": 11,
                    "schema": "B",
                    "schemaType": "PROTOBUF",
                    "references": [{"name": "c.proto", "subject": "c", "version": 4}],
                },
            ),
            ("GET", "/subjects/c/versions/4"): (
                200,
                {"subject": "c", "version": 4, "id": 12, "schema": "C", "schemaType": "PROTOBUF"},
            ),
        }
    )
    main = Schema("A", "PROTOBUF", (Reference("b.proto", "b", 1),))
    found = await client.references(main)
    assert list(found) == ["c.proto", "b.proto"]
    assert found["b.proto"].schema == "B"


async def test_latest_version_is_kept_briefly_and_then_asked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A producer naming no version must see a newly registered one without a restart."""
    import gateway.registry.client as module

    path = ("GET", "/subjects/s/versions/-1")
    client, transport = await client_with(
        {path: (200, {"subject": "s", "version": 1, "id": 10, "schema": '"string"'})}
    )
    now = [1000.0]
    monkeypatch.setattr(module.time, "monotonic", lambda: now[0])
    assert (await client.subject_version("s", -1)).version == 1
    assert (await client.subject_version("s", -1)).version == 1
    assert len(transport.calls) == 1  # kept within the TTL
    transport.answers[path] = (200, {"subject": "s", "version": 2, "id": 11, "schema": '"int"'})
    now[0] += module.LATEST_TTL_S + 1
    assert (await client.subject_version("s", -1)).id == 11
    assert len(transport.calls) == 2
    # The version "latest" named is now known by its number, for good.
    assert (await client.subject_version("s", 2)).id == 11
    assert len(transport.calls) == 2
