"""``authorized_operations`` of a topic: what the caller may do with it through this gateway.

Confluent answers Kafka's own verdict (Metadata with ``include_topic_authorized_operations``,
KIP-430), the operations Kafka's authoriser grants the client's principal. Here a request
passes two gates: the gateway's rules (when ``authorization.rules.file`` is set) and then
Kafka's ACLs for the identity the gateway uses towards Kafka (the caller's own in
pass-through mode). An operation is only really possible when both allow it, so the answer is
Kafka's set narrowed by the rules: with rules off it is exactly Kafka's (and so Confluent's)
answer; with rules on it never lists what the gateway would refuse with a 403.

Kafka's bit field numbers operations by ``AclOperation`` code; the names are Confluent's
(``Acl.Operation``), listed in code order so the answer is stable across calls.
"""

from __future__ import annotations

from aiohttp import web

from ..security.authz import authorizer
from ..security.principal import principal_of

# AclOperation codes (org.apache.kafka.common.acl.AclOperation) 3..15; 0-2 (UNKNOWN, ANY, ALL)
# never appear in an answer.
_NAMES = {
    3: "READ",
    4: "WRITE",
    5: "CREATE",
    6: "DELETE",
    7: "ALTER",
    8: "DESCRIBE",
    9: "CLUSTER_ACTION",
    10: "DESCRIBE_CONFIGS",
    11: "ALTER_CONFIGS",
    12: "IDEMPOTENT_WRITE",
    13: "CREATE_TOKENS",
    14: "DESCRIBE_TOKENS",
    15: "TWO_PHASE_COMMIT",
}
# The gateway's topic operation (security/rules.py) each Kafka topic operation needs.
_GATEWAY_OPERATION = {
    "READ": "consume",
    "WRITE": "produce",
    "CREATE": "create",
    "DELETE": "delete",
    "ALTER": "alter",
    "DESCRIBE": "describe",
    "DESCRIBE_CONFIGS": "describe",
    "ALTER_CONFIGS": "alter",
}
# Kafka's "not asked / not known" value of the field.
_OMITTED = -(2**31)


def authorized_operations(request: web.Request, topic: str, field: int | None) -> list[str]:
    """The operation names for ``topic`` from Kafka's bit field ``field``, narrowed by the
    gateway's rules; ``[]`` when Kafka gave none."""
    if field is None or field == _OMITTED:
        return []
    granted = [name for code, name in _NAMES.items() if field & (1 << code)]
    rules = authorizer(request).rules
    if rules is None:
        return granted
    principal = principal_of(request)
    return [
        name
        for name in granted
        if name in _GATEWAY_OPERATION
        and rules.allows(principal, "topic", _GATEWAY_OPERATION[name], topic)
    ]


def wants_operations(request: web.Request, parameter: str) -> bool:
    """Whether the query asks for them: JAX-RS reads a ``boolean`` parameter as Java's
    ``Boolean.valueOf`` does (``true`` in any case is true; anything else, false)."""
    return request.query.get(parameter, "false").lower() == "true"
