"""A real Kafka broker with Kafka's StandardAuthorizer, and two independent views of its ACLs.

The default test broker has no authorizer (Kafka keeps no ACLs there and answers every ACL
request with SECURITY_DISABLED). This one is the same jars and template with only the
authorizer added; its PLAINTEXT listeners (client and controller) see every connection as
``User:ANONYMOUS``, made a super user, so the gateway and the tests may do anything while the
ACLs they write are stored and listed exactly as on a secured cluster.

What the gateway wrote is read back without it, two ways:

- :func:`describe_acls`: a separate aiokafka admin client sending a raw DescribeAcls, decoded
  with this module's own tables of Kafka's codes;
- :func:`java_acls`: Kafka's own Java admin client (``Admin.describeAcls`` and
  ``createAcls``, from the harness jars, run as a single-file Java program), whose enums are
  Kafka's, so a code the gateway and this module got wrong in the same way still shows.
  (``kafka.admin.AclCommand`` lives in the kafka-tools jar, which the harness does not fetch.)
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tests.harness.kafka import KAFKA_DEPLOY, KafkaServer, ensure_jars, java_executable

AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"

# Kafka's codes (org.apache.kafka.common.{resource.ResourceType, resource.PatternType,
# acl.AclOperation, acl.AclPermissionType}), written out here independently of the gateway.
RESOURCE_TYPES = {
    0: "UNKNOWN",
    1: "ANY",
    2: "TOPIC",
    3: "GROUP",
    4: "CLUSTER",
    5: "TRANSACTIONAL_ID",
    6: "DELEGATION_TOKEN",
    7: "USER",
}
PATTERN_TYPES = {0: "UNKNOWN", 1: "ANY", 2: "MATCH", 3: "LITERAL", 4: "PREFIXED"}
OPERATIONS = {
    0: "UNKNOWN",
    1: "ANY",
    2: "ALL",
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
}
PERMISSIONS = {0: "UNKNOWN", 1: "ANY", 2: "DENY", 3: "ALLOW"}

# One ACL as both views report it: (resource_type, resource_name, pattern_type, principal,
# host, operation, permission), enums by name.
AclTuple = tuple[str, str, str, str, str, str, str]


def acl_overrides() -> dict[str, str]:
    return {"authorizer.class.name": AUTHORIZER, "super.users": "User:ANONYMOUS"}


class AclKafkaServer(KafkaServer):
    """The test broker with StandardAuthorizer on; ``start()`` returns its bootstrap."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(overrides=acl_overrides(), **kwargs)


async def describe_acls(bootstrap: str, principal: str | None = None) -> set[AclTuple]:
    """Every ACL (or those of ``principal``), via a raw DescribeAcls v1 from a fresh client."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.protocol.admin import DescribeAclsRequest

    from sessions import kafka_internals

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        # ANY resource, any name, ANY pattern, principal, any host, ANY operation, ANY permission
        request = DescribeAclsRequest(1, None, 1, principal, None, 1, 1)
        response: Any = await kafka_internals.admin_request(admin, request)
    finally:
        await admin.close()
    if response.error_code:
        raise RuntimeError(f"DescribeAcls failed: {response.error_code} {response.error_message}")
    return {
        (
            RESOURCE_TYPES[rtype],
            name,
            PATTERN_TYPES[ptype],
            who,
            host,
            OPERATIONS[op],
            PERMISSIONS[perm],
        )
        for rtype, name, ptype, entries in response.resources
        for who, host, op, perm in entries
    }


_JAVA_TOOL = r"""
import java.util.*;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.common.acl.*;
import org.apache.kafka.common.resource.*;

public class AclTool {
  public static void main(String[] args) throws Exception {
    Properties props = new Properties();
    props.put("bootstrap.servers", args[0]);
    props.put("request.timeout.ms", "20000");
    try (Admin admin = Admin.create(props)) {
      List<AclBinding> create = new ArrayList<>();
      for (int i = 1; i < args.length; i++) {
        String[] f = args[i].split("\\|", -1);
        create.add(new AclBinding(
            new ResourcePattern(ResourceType.valueOf(f[0]), f[1], PatternType.valueOf(f[2])),
            new AccessControlEntry(
                f[3], f[4], AclOperation.valueOf(f[5]), AclPermissionType.valueOf(f[6]))));
      }
      if (!create.isEmpty()) {
        admin.createAcls(create).all().get();
      }
      for (AclBinding b : admin.describeAcls(AclBindingFilter.ANY).values().get()) {
        System.out.println("ACL|" + String.join("|",
            b.pattern().resourceType().name(), b.pattern().name(),
            b.pattern().patternType().name(), b.entry().principal(), b.entry().host(),
            b.entry().operation().name(), b.entry().permissionType().name()));
      }
    }
  }
}
"""


def java_acls(bootstrap: str, create: Iterable[AclTuple] = ()) -> set[AclTuple]:
    """Create ``create`` (if any) and then list every ACL, with Kafka's Java admin client.

    One JVM run for both (a few seconds: the program is compiled in memory on the way).
    Fields must not contain ``|``.
    """
    with tempfile.TemporaryDirectory(prefix="eg-acltool-") as folder:
        source = Path(folder) / "AclTool.java"
        source.write_text(_JAVA_TOOL)
        done = subprocess.run(
            [
                java_executable(),
                f"-Dlog4j2.configurationFile={KAFKA_DEPLOY / 'log4j2.properties'}",
                "-cp",
                f"{ensure_jars()}/*",
                str(source),
                bootstrap,
                *("|".join(acl) for acl in create),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"AclTool exited {done.returncode}:\n{done.stderr[-4000:]}")
    found: set[AclTuple] = set()
    for line in done.stdout.splitlines():
        if line.startswith("ACL|"):
            a, b, c, d, e, f, g = line.split("|")[1:]
            found.add((a, b, c, d, e, f, g))
    return found
