"""A real Kafka broker that requires SASL and enforces ACLs, for the Kafka-credentials tests.

The same jars and template as the default test broker (:mod:`tests.harness.kafka`), with its
client listener switched to SASL_PLAINTEXT (PLAIN and SCRAM-SHA-256) and Kafka's standard
authorizer on: a principal without an ACL is refused by Kafka itself, which is what the
gateway's 403/40301 must reflect. The default broker stays untouched, so every other test keeps
its plain listener.

Users: PLAIN users live in the listener's JAAS line (``user_NAME="password"``); SCRAM users are
written into the metadata log at format time (``StorageTool format --add-scram``), so the broker
knows them before it serves anything and no admin round trip is needed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tests.harness.kafka import KafkaServer

ADMIN = ("admin", "admin-secret")
# PLAIN users (name -> password); "gateway" is the gateway's own identity in the tests.
PLAIN_USERS = {"gateway": "gateway-secret", "alice": "alice-secret"}
# SCRAM-SHA-256 users, a mechanism the gateway must also speak.
SCRAM_USERS = {"bob": "bob-secret", "scrammy": "scrammy-secret"}


def _jaas_plain() -> str:
    users = " ".join(f'user_{n}="{p}"' for n, p in {ADMIN[0]: ADMIN[1], **PLAIN_USERS}.items())
    return (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{ADMIN[0]}" password="{ADMIN[1]}" {users};'
    )


def sasl_overrides() -> dict[str, str]:
    return {
        "listeners": "SASL_PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controller_port}",
        "advertised.listeners": "SASL_PLAINTEXT://127.0.0.1:${port}",
        "listener.security.protocol.map": "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "SASL_PLAINTEXT",
        "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256",
        "sasl.mechanism.inter.broker.protocol": "PLAIN",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": _jaas_plain(),
        "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config": (
            "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        ),
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        # The controller listener is PLAINTEXT, so the broker registers itself as ANONYMOUS.
        "super.users": f"User:{ADMIN[0]};User:ANONYMOUS",
        "allow.everyone.if.no.acl.found": "false",
    }


def scram_format_args() -> list[str]:
    out: list[str] = []
    for name, password in SCRAM_USERS.items():
        out += ["--add-scram", f"SCRAM-SHA-256=[name={name},password={password}]"]
    return out


def admin_kwargs() -> dict[str, Any]:
    return {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": ADMIN[0],
        "sasl_plain_password": ADMIN[1],
    }


class SaslKafkaServer(KafkaServer):
    """The test broker behind SASL with ACLs enforced; ``start()`` returns its bootstrap."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            overrides=sasl_overrides(),
            format_args=scram_format_args(),
            client_kwargs=admin_kwargs(),
            **kwargs,
        )

    def _configure(self, java: str, jars: Any) -> None:
        # The listener lines name the ports, chosen per attempt: render them here.
        self.overrides = {
            k: v.replace("${port}", str(self.port)).replace(
                "${controller_port}", str(self.controller_port)
            )
            for k, v in sasl_overrides().items()
        }
        super()._configure(java, jars)


# --- ACLs (aiokafka's admin has no create_acls: the protocol request is sent as is) ----------

_RESOURCE = {"topic": 2, "group": 3, "cluster": 4}
_OPERATION = {"all": 2, "read": 3, "write": 4, "create": 5, "describe": 8, "describe_configs": 10}
_LITERAL, _PREFIXED = 3, 4
_ALLOW = 3


@dataclass(frozen=True)
class Acl:
    """Allow ``user`` ``operation`` on ``resource`` (``("topic", "orders")``); a name ending in
    ``*`` is a prefix (``("group", "alice-*")``)."""

    user: str
    operation: str
    resource: tuple[str, str]


async def create_acls(bootstrap: str, acls: Iterable[Acl]) -> None:
    """Create the ACLs as the super user; fails if Kafka refuses any of them."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.protocol.admin import CreateAclsRequest

    from sessions import kafka_internals

    creations = []
    for acl in acls:
        kind, name = acl.resource
        prefixed = name.endswith("*") and name != "*"
        creations.append(
            (
                _RESOURCE[kind],
                name.rstrip("*") if prefixed else name,
                _PREFIXED if prefixed else _LITERAL,
                f"User:{acl.user}",
                "*",
                _OPERATION[acl.operation],
                _ALLOW,
            )
        )
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=10_000, **admin_kwargs()
    )
    await admin.start()
    failed = []
    try:
        for creation in creations:  # aiokafka's request carries one ACL
            response = await kafka_internals.admin_request(admin, CreateAclsRequest(*creation))
            failed += [r for r in response.creation_responses if r[0] != 0]
    finally:
        await admin.close()
    if failed:
        raise RuntimeError(f"CreateAcls refused: {failed}")
