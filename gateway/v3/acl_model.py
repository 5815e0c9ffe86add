"""What a v3 ACL is on the wire: its seven fields, their enums, and how requests name them.

Confluent's enums (``io.confluent.kafkarest.entities.Acl``) list their constants in the order
of Kafka's own codes (``UNKNOWN`` = 0, ``ANY`` = 1, ...), so one tuple per enum serves as both
the name table and the code table, and its index is also the ordinal Confluent sorts by (a list
is ordered TOPIC before GROUP before CLUSTER, not alphabetically). A code Kafka knows but
Confluent does not (a ``USER`` resource, the token operations) reads as ``UNKNOWN``, as there.

Query values are case-insensitive and a word outside the enum is a 404 (JAX-RS's converter);
body values are read the same way, so a client may send ``topic`` in either place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import quote_plus

from ..body import as_str, expect_object
from ..errors import GatewayError, bad_request, json_detail

FIELDS = (
    "resource_type",
    "resource_name",
    "pattern_type",
    "principal",
    "host",
    "operation",
    "permission",
)
UNKNOWN, ANY = 0, 1


@dataclass(frozen=True)
class AclEnum:
    """One of the four enums; ``java_name`` is the class name Confluent's messages use."""

    field: str
    java_name: str
    names: tuple[str, ...]

    def name_of(self, code: int) -> str:
        return self.names[code] if 0 <= code < len(self.names) else "UNKNOWN"

    def ordinal(self, code: int) -> int:
        return code if 0 <= code < len(self.names) else UNKNOWN

    def parse(self, text: str) -> int:
        """The code of ``text`` (any case), or Confluent's 404 naming the enum."""
        upper = text.upper()
        if upper in self.names:
            return self.names.index(upper)
        raise GatewayError(
            404, 404, f"The valid values for {self.java_name} do not include '{text}'"
        )


RESOURCE_TYPE = AclEnum(
    "resource_type",
    "ResourceType",
    ("UNKNOWN", "ANY", "TOPIC", "GROUP", "CLUSTER", "TRANSACTIONAL_ID", "DELEGATION_TOKEN"),
)
PATTERN_TYPE = AclEnum(
    "pattern_type", "PatternType", ("UNKNOWN", "ANY", "MATCH", "LITERAL", "PREFIXED")
)
OPERATION = AclEnum(
    "operation",
    "Operation",
    (
        "UNKNOWN",
        "ANY",
        "ALL",
        "READ",
        "WRITE",
        "CREATE",
        "DELETE",
        "ALTER",
        "DESCRIBE",
        "CLUSTER_ACTION",
        "DESCRIBE_CONFIGS",
        "ALTER_CONFIGS",
        "IDEMPOTENT_WRITE",
    ),
)
PERMISSION = AclEnum("permission", "Permission", ("UNKNOWN", "ANY", "DENY", "ALLOW"))
ENUMS = (RESOURCE_TYPE, PATTERN_TYPE, OPERATION, PERMISSION)
MATCH = PATTERN_TYPE.names.index("MATCH")


class Acl(NamedTuple):
    """One ACL binding as Kafka reports it (enum fields as Kafka codes)."""

    resource_type: int
    resource_name: str
    pattern_type: int
    principal: str
    host: str
    operation: int
    permission: int

    def wire(self) -> dict[str, str]:
        """The seven fields as v3 writes them (enum names)."""
        return {
            "resource_type": RESOURCE_TYPE.name_of(self.resource_type),
            "resource_name": self.resource_name,
            "pattern_type": PATTERN_TYPE.name_of(self.pattern_type),
            "principal": self.principal,
            "host": self.host,
            "operation": OPERATION.name_of(self.operation),
            "permission": PERMISSION.name_of(self.permission),
        }

    def sort_key(self) -> tuple[Any, ...]:
        """Confluent's order: enums by ordinal, strings as Java compares them (UTF-16 units)."""
        return (
            RESOURCE_TYPE.ordinal(self.resource_type),
            _java_order(self.resource_name),
            PATTERN_TYPE.ordinal(self.pattern_type),
            _java_order(self.principal),
            _java_order(self.host),
            OPERATION.ordinal(self.operation),
            PERMISSION.ordinal(self.permission),
        )


class AclFilter(NamedTuple):
    """A search or delete filter: an empty string matches any name, principal or host."""

    resource_type: int
    resource_name: str
    pattern_type: int
    principal: str
    host: str
    operation: int
    permission: int

    def wire(self) -> dict[str, str]:
        """The seven query values of the collection's ``self`` (unset strings stay empty)."""
        return Acl(*self).wire()

    def kafka(self) -> tuple[int, str | None, int, str | None, str | None, int, int]:
        """The filter as Kafka's DescribeAcls/DeleteAcls take it (null = any)."""
        return (
            self.resource_type,
            self.resource_name or None,
            self.pattern_type,
            self.principal or None,
            self.host or None,
            self.operation,
            self.permission,
        )


def _java_order(text: str) -> bytes:
    # Java's String.compareTo compares UTF-16 code units; Python compares code points, which
    # differs only above U+FFFF. Big-endian UTF-16 bytes compare as the units do.
    return text.encode("utf-16-be", "surrogatepass")


# --- query parameters ---------------------------------------------------------------------------


def parse_filter(query: Mapping[str, str], *, delete: bool) -> AclFilter:
    """The seven query parameters of a search (``delete=False``) or a delete.

    A search defaults every enum to ``ANY``; a delete must name all four (Confluent's
    KREST-4113: a DELETE without parameters must not delete every ACL). A word outside an enum
    is a 404, checked for all four before ``UNKNOWN`` is refused (JAX-RS converts the
    parameters before the method runs). An empty value counts as absent.
    """
    codes = []
    for enum in ENUMS:
        text = query.get(enum.field, "")
        codes.append(enum.parse(text) if text else (UNKNOWN if delete else ANY))
    for enum, code in zip(ENUMS, codes, strict=True):
        if code == UNKNOWN:
            how = "unspecified or UNKNOWN" if delete else "UNKNOWN"
            raise GatewayError(400, 400, f"Bad Request: {enum.field} cannot be {how}")
    resource_type, pattern_type, operation, permission = codes
    return AclFilter(
        resource_type,
        query.get("resource_name", ""),
        pattern_type,
        query.get("principal", ""),
        query.get("host", ""),
        operation,
        permission,
    )


# --- request bodies -----------------------------------------------------------------------------


def parse_acl(value: Any) -> Acl:
    """One ACL to create (a POST body, or one entry of a batch), checked as Confluent does.

    Every field is required (Confluent's AutoValue refuses a missing one: 400). ``ANY`` and
    ``UNKNOWN`` name no single ACL, nor do the ``MATCH`` pattern: 400.
    """
    body = expect_object(value, FIELDS, "CreateAclRequest")
    missing = [f for f in FIELDS if body.get(f) is None]
    if missing:
        raise bad_request(
            "Cannot construct instance of `CreateAclRequest`, problem: Missing required "
            f"properties: {', '.join(missing)}"
        )
    resource_type, pattern_type, operation, permission = (_body_enum(e, body) for e in ENUMS)
    strings = [as_str(body[f], f) or "" for f in ("resource_name", "principal", "host")]
    if resource_type in (UNKNOWN, ANY):
        _cannot(RESOURCE_TYPE, resource_type)
    if pattern_type in (UNKNOWN, ANY, MATCH):
        _cannot(PATTERN_TYPE, pattern_type)
    if operation in (UNKNOWN, ANY):
        _cannot(OPERATION, operation)
    if permission in (UNKNOWN, ANY):
        _cannot(PERMISSION, permission)
    name, principal, host = strings
    return Acl(resource_type, name, pattern_type, principal, host, operation, permission)


def _body_enum(enum: AclEnum, body: Mapping[str, Any]) -> int:
    value = body[enum.field]
    if isinstance(value, str) and value.upper() in enum.names:
        return enum.names.index(value.upper())
    raise bad_request(
        f"Cannot deserialize value of type `{enum.java_name}` from {json_detail(value)}: not "
        f"one of the values accepted for Enum class: [{', '.join(enum.names)}] "
        f"for field '{enum.field}'"
    )


def _cannot(enum: AclEnum, code: int) -> None:
    raise GatewayError(400, 400, f"Bad Request: {enum.field} cannot be {enum.name_of(code)}")


# --- links --------------------------------------------------------------------------------------


def java_url_encode(value: str) -> str:
    """``java.net.URLEncoder.encode(value, UTF_8)``: letters, digits and ``.-*_`` stay, a space
    is ``+``, everything else ``%XX`` (``~`` too, which Python would keep)."""
    return quote_plus(value, safe="*", errors="replace").replace("~", "%7E")


def acl_query(fields: Mapping[str, str]) -> str:
    """The seven parameters in Confluent's fixed order, as its ACL links carry them."""
    return "&".join(f"{f}={java_url_encode(fields[f])}" for f in FIELDS)
