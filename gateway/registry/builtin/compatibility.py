"""What a compatibility level asks of a new schema, given the subject's live versions.

BACKWARD: the new schema reads data written with the previous one; FORWARD: the previous
schema reads data written with the new one; FULL: both. ``*_TRANSITIVE`` checks every live
version instead of only the latest. Only Avro has a checker; for other types any level but
NONE is refused by the service (see :func:`gateway.registry.builtin.errors.level_not_implemented`).
"""

from __future__ import annotations

from collections.abc import Sequence

from .avro import AvroSchema
from .avro_compat import incompatibilities
from .model import NONE


def avro_level_errors(level: str, new: AvroSchema, previous: Sequence[AvroSchema]) -> list[str]:
    """``previous``: live versions, newest first. Empty result: the level is satisfied."""
    if level == NONE or not previous:
        return []
    targets = previous if level.endswith("_TRANSITIVE") else previous[:1]
    backward = level.startswith(("BACKWARD", "FULL"))
    forward = level.startswith(("FORWARD", "FULL"))
    errors: list[str] = []
    for old in targets:
        if backward:
            errors += incompatibilities(reader=new, writer=old)
        if forward:
            errors += incompatibilities(reader=old, writer=new)
    return errors
