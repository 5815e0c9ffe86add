"""Everything operators see, installed into an application in one call from ``build_app``.

Kept here so ``gateway/app.py`` grows by one line: the app keys, the three routes, the
forwarder's hop hook, the quotas, and the background components (returned for ``build_app``
to start in order with the others and stop in reverse).
"""

from __future__ import annotations

from aiohttp import web

from sessions.router import InstanceRouter

from ..config import Config
from ..forwarding import Forwarder
from ..kafka import KafkaClients
from ..registry.builtin import RegistryService
from ..security.quotas import QUOTAS, Quotas
from . import HEALTHZ, METRICS, READYZ
from .health import HEALTH, HealthProbe, healthz, readyz
from .log_filters import install_repeat_summary
from .metrics import METRICS_KEY, LoopLagMonitor, Metrics, metrics_handler
from .traffic import TRAFFIC, Traffic


def install(
    app: web.Application,
    config: Config,
    *,
    kafka: KafkaClients,
    sessions: InstanceRouter,
    forwarder: Forwarder,
    registry: RegistryService | None,
) -> list[HealthProbe | LoopLagMonitor]:
    traffic = Traffic()
    metrics = Metrics(sessions, traffic)
    health = HealthProbe(
        kafka=kafka,
        sessions=sessions,
        store_url=config.session_store_url,
        registry=registry,
        timeout_s=min(config.kafka_timeout_ms / 1000, 5.0),
    )
    metrics.census = health.census
    forwarder.on_hop = metrics.observe_hop
    app[TRAFFIC] = traffic
    app[METRICS_KEY] = metrics
    app[HEALTH] = health
    app[QUOTAS] = Quotas(
        requests_per_s=config.quota_requests_per_second,
        produce_bytes_per_s=config.quota_produce_bytes_per_second,
    )
    app.router.add_get(HEALTHZ, healthz)
    app.router.add_get(READYZ, readyz)
    app.router.add_get(METRICS, metrics_handler)
    # Process-wide, idempotent: the CLI installs it too, but an embedded or test app must not
    # depend on having been started from the CLI to keep aiokafka's repeats in check.
    install_repeat_summary()
    return [health, LoopLagMonitor(metrics.observe_loop_lag)]
