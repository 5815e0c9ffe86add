"""A Confluent-compatible Schema Registry served by every gateway replica.

Enabled with ``schema.registry.builtin=true``. State lives in a compacted Kafka topic
(``schema.registry.topic``, default ``_schemas``) in Confluent's own record format, so a
topic written by Confluent's registry can be taken over, and vice versa; every replica tails
it into memory. Writes are serialized cluster-wide through the session store (Redis), so ids
never collide however requests are spread over replicas.

The registry client (``gateway.registry.client``) reaches it without loopback HTTP through
``InProcessTransport(service)``; :func:`gateway.app.build_app` wires both into the lifecycle.

Where it knowingly differs from Confluent's registry:

- Compatibility is checked for AVRO only. A JSON or PROTOBUF schema registers under level
  NONE, or as the first live version of a subject (nothing to compare with); otherwise the
  answer is 422 / 42203 saying the level is not implemented for that type yet, rather than a
  registration that silently skipped the check the subject asks for.
- Store trouble (Kafka unreachable, catch-up or lock wait timed out, Redis down) is answered
  503 with ``Retry-After`` and Confluent's 50001 / 50002 / 50004 codes; Confluent sends 500.
- Not served: ``/mode``, contexts, exporters, rule sets, metadata; ``normalize``/``format``
  query parameters are ignored. Unknown body fields are ignored, as Confluent does.
- ``memory://`` session store: writes are serialized per process only, so it is meant for a
  single replica; even then replay ("first record claiming an id wins") and the writer's
  check-and-retry keep one id from ever naming two schemas.
"""

from __future__ import annotations

from .routes import REGISTRY, add_routes
from .service import RegistryService
from .transport import InProcessTransport

__all__ = ["REGISTRY", "InProcessTransport", "RegistryService", "add_routes"]
