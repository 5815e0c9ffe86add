"""What operators see of a replica: metrics, health, access logs and log hygiene.

:data:`UNAUTHENTICATED_PATHS` is imported by authentication: probes and scrapers (a load
balancer, the kubelet, Prometheus) carry no credentials, and these paths reveal nothing about
topics, groups or instances.
"""

from __future__ import annotations

HEALTHZ = "/healthz"
READYZ = "/readyz"
METRICS = "/metrics"

UNAUTHENTICATED_PATHS: frozenset[str] = frozenset({HEALTHZ, READYZ, METRICS})
