"""Kafka's DescribeAcls, CreateAcls and DeleteAcls, sent as raw protocol requests.

aiokafka's admin client has no ACL methods, only the protocol structs. Version 1 of each is
the oldest a Kafka 4 broker still accepts and the first with pattern types (PREFIXED ACLs);
aiokafka negotiates it from the broker's ApiVersions. Its own CreateAcls request carries one
ACL, so a batch would be one round trip per ACL; :class:`_CreateAcls` sends them all in one.

Kafka answers errors inside the response (per request, per filter, per ACL), never as a
failed call: each is raised here as aiokafka's exception for the code, so
:func:`~gateway.v3.failures.v3_failure` maps it like every other Kafka failure. A broker with
no authorizer answers SECURITY_DISABLED, whose own text ("No Authorizer is configured")
does not tell an operator what to change; the 400 says it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiokafka import errors as ke
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.admin import (
    CreateAclsRequest_v1,
    DeleteAclsRequest,
    DescribeAclsRequest,
)
from aiokafka.protocol.api import Request

from sessions import kafka_internals

from ..errors import GatewayError
from .acl_model import Acl, AclFilter

NO_AUTHORIZER = (
    "Security features are disabled: the Kafka cluster has no authorizer configured "
    "(authorizer.class.name is not set on its brokers), so it has no ACLs to list, create "
    "or delete"
)


class _CreateAcls(Request[CreateAclsRequest_v1]):  # type: ignore[misc]  # aiokafka is untyped
    """CreateAcls v1 with any number of ACLs (aiokafka's ``CreateAclsRequest`` sends one)."""

    API_KEY = 30

    def __init__(self, acls: Sequence[Acl]) -> None:
        self._acls = list(acls)

    def build(self, request_struct_class: type[CreateAclsRequest_v1]) -> CreateAclsRequest_v1:
        return request_struct_class(
            [
                (
                    a.resource_type,
                    a.resource_name,
                    a.pattern_type,
                    a.principal,
                    a.host,
                    a.operation,
                    a.permission,
                )
                for a in self._acls
            ]
        )


def _raise(code: int, message: str | None) -> None:
    if code == 0:
        return
    if code == ke.SecurityDisabled.errno:
        raise GatewayError(400, 40002, NO_AUTHORIZER)
    raise ke.for_code(code)(message or "")


async def describe_acls(admin: AIOKafkaAdminClient, wanted: AclFilter) -> list[Acl]:
    response: Any = await kafka_internals.admin_request(admin, DescribeAclsRequest(*wanted.kafka()))
    _raise(response.error_code, response.error_message)
    return [
        Acl(resource_type, name, pattern_type, principal, host, operation, permission)
        for resource_type, name, pattern_type, entries in response.resources
        for principal, host, operation, permission in entries
    ]


async def create_acls(admin: AIOKafkaAdminClient, acls: Sequence[Acl]) -> None:
    """Create all of ``acls``; the first refusal is raised (the others may exist by then,
    as with Java's ``createAcls(...).all()``)."""
    if not acls:
        return
    response: Any = await kafka_internals.admin_request(admin, _CreateAcls(acls))
    for code, message in response.creation_responses:
        _raise(code, message)


async def delete_acls(admin: AIOKafkaAdminClient, wanted: AclFilter) -> list[Acl]:
    """The ACLs the filter matched and Kafka deleted.

    A matching ACL Kafka failed to delete is raised rather than left out of the list (Java's
    admin client drops it silently): the caller must not believe it is gone.
    """
    response: Any = await kafka_internals.admin_request(admin, DeleteAclsRequest(*wanted.kafka()))
    [(code, message, matches)] = response.filter_responses
    _raise(code, message)
    deleted = []
    failed: list[tuple[int, str | None]] = []
    for code, message, *fields in matches:
        if code:
            failed.append((code, message))
        else:
            deleted.append(Acl(*fields))
    if failed:
        code, message = failed[0]
        detail = f"{len(deleted)} other matching ACLs were deleted" if deleted else "none deleted"
        _raise(code, f"{message or ''} ({len(failed)} matching ACLs not deleted; {detail})")
    return deleted
