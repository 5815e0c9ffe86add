"""Schema Registry's error codes and messages, as Confluent's clients branch on them.

Registry clients (Confluent's serializers, confluent-kafka, Karapace-aware tools) read
``error_code`` to tell "subject not found" from "version not found", so codes and the wording
follow Confluent's ``rest/exceptions/Errors.java``. All are :class:`GatewayError`, rendered by
the gateway's middleware in the registry's content type.
"""

from __future__ import annotations

from gateway.errors import GatewayError

INVALID_LEVEL = (
    "Invalid compatibility level. Valid values are none, backward, forward, full, "
    "backward_transitive, forward_transitive, and full_transitive"
)


def subject_not_found(subject: str) -> GatewayError:
    return GatewayError(404, 40401, f"Subject '{subject}' not found.")


def version_not_found(version: int | str) -> GatewayError:
    return GatewayError(404, 40402, f"Version {version} not found.")


def schema_not_found(schema_id: int | None = None) -> GatewayError:
    if schema_id is None:
        return GatewayError(404, 40403, "Schema not found")
    return GatewayError(404, 40403, f"Schema {schema_id} not found")


def subject_soft_deleted(subject: str) -> GatewayError:
    return GatewayError(
        404, 40404, f"Subject '{subject}' was soft deleted.Set permanent=true to delete permanently"
    )


def subject_not_soft_deleted(subject: str) -> GatewayError:
    return GatewayError(
        404,
        40405,
        f"Subject '{subject}' was not deleted first before being permanently deleted",
    )


def version_soft_deleted(subject: str, version: int) -> GatewayError:
    return GatewayError(
        404,
        40406,
        f"Subject '{subject}' Version {version} was soft deleted."
        "Set permanent=true to delete permanently",
    )


def version_not_soft_deleted(subject: str, version: int) -> GatewayError:
    return GatewayError(
        404,
        40407,
        f"Subject '{subject}' Version {version} was not deleted first before being "
        "permanently deleted",
    )


def subject_level_not_configured(subject: str) -> GatewayError:
    return GatewayError(
        404, 40408, f"Subject '{subject}' does not have subject-level compatibility configured"
    )


def incompatible(subject: str, details: list[str]) -> GatewayError:
    # Confluent answers 409 with error_code 409 up to 8.1 (40901 only since late 2025).
    return GatewayError(
        409,
        409,
        f'Schema being registered is incompatible with an earlier schema for subject "{subject}", '
        f"details: [{', '.join(details)}]",
    )


def invalid_schema(detail: str) -> GatewayError:
    return GatewayError(422, 42201, f"Invalid schema: {detail}")


def invalid_version(raw: str) -> GatewayError:
    return GatewayError(
        422,
        42202,
        f"The specified version '{raw}' is not a valid version id. "
        'Allowed values are between [1, 2^31-1] and the string "latest"',
    )


def invalid_level() -> GatewayError:
    return GatewayError(422, 42203, INVALID_LEVEL)


def level_not_implemented(subject: str, schema_type: str, level: str) -> GatewayError:
    """A level this registry cannot check for this schema type yet.

    422 / 42203 (Confluent's "invalid compatibility level") rather than silently accepting:
    registering without the check the subject asks for would let a breaking change through.
    """
    return GatewayError(
        422,
        42203,
        f"Compatibility level {level} is not implemented for {schema_type} schemas by the "
        f"built-in schema registry yet (only NONE is). Set it to NONE for subject "
        f'\'{subject}\' (PUT /config/{subject} {{"compatibility": "NONE"}}) to register '
        f"without a compatibility check.",
    )


def bad_json(detail: str) -> GatewayError:
    return GatewayError(400, 400, f"Unexpected character: {detail}")


def unprocessable(message: str) -> GatewayError:
    return GatewayError(422, 422, message)


def store_error(detail: str) -> GatewayError:
    """Kafka (the backing store) failed; retriable, hence 503 with ``Retry-After``."""
    return GatewayError(503, 50001, f"Error in the backend data store: {detail}", retry_after=1)


def timed_out(detail: str) -> GatewayError:
    return GatewayError(503, 50002, f"Operation timed out: {detail}", retry_after=1)


def no_writer_lock(detail: str) -> GatewayError:
    """Writes are serialized through the session store; without it nobody may allocate ids."""
    return GatewayError(
        503, 50004, f"Cannot serialize schema registry writes: {detail}", retry_after=1
    )


def reference_exists(subject: str, version: int) -> GatewayError:
    return GatewayError(
        422,
        42206,
        "One or more references exist to the schema "
        f"{{magic=1,keytype=SCHEMA,subject={subject},version={version}}}.",
    )
