"""Build the aiohttp Application from a Config and own the lifecycle of shared clients."""

from __future__ import annotations

import logging

from aiohttp import web
from aiokafka import AIOKafkaConsumer

from sessions.directory import open_directory
from sessions.instance import ConsumerInstance, InstanceSpec
from sessions.local import InstanceFactory
from sessions.routing import Sessions

from . import consumers, metadata, produce
from .config import Config
from .context import CONFIG, FORWARDER, KAFKA, RESPONSE_TYPE, SCHEMAS, SESSIONS
from .errors import GatewayError, error_body, error_response
from .forwarding import FORWARDED, HEADER, Forwarder, verify
from .kafka import KafkaClients, kafka_kwargs
from .media import NotAcceptable
from .registry.schemas import Schemas

log = logging.getLogger(__name__)


@web.middleware
async def error_middleware(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    """Every failure leaves as Confluent's error body; nothing unexpected escapes as HTML."""
    try:
        return await handler(request)
    except GatewayError as exc:
        return error_response(exc, request.get(RESPONSE_TYPE, "application/json"))
    except NotAcceptable:
        return web.Response(status=406)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        reason = exc.reason or ""
        return web.Response(
            status=exc.status,
            body=error_body(exc.status, f"HTTP {exc.status} {reason}".strip()),
            content_type="application/json",
            headers={k: v for k, v in exc.headers.items() if k.lower() == "allow"},
        )
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return web.Response(
            status=500,
            body=error_body(500, "Internal Server Error"),
            content_type="application/json",
        )


@web.middleware
async def forwarded_middleware(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    """Mark requests another replica forwarded; refuse any whose signature does not verify."""
    if HEADER in request.headers:
        request[FORWARDED] = await verify(request, request.app[CONFIG].cluster_secret)
    return await handler(request)


async def readyz(request: web.Request) -> web.Response:
    """Readiness for load balancers: false as soon as a drain starts, before work stops."""
    sessions = request.app[SESSIONS]
    if not sessions.ready or sessions.draining:
        return web.json_response({"status": "draining"}, status=503)
    return web.json_response({"status": "ready"})


def build_app(config: Config) -> web.Application:
    app = web.Application(
        middlewares=[error_middleware, forwarded_middleware], client_max_size=64 * 1024 * 1024
    )
    app[CONFIG] = config
    app[KAFKA] = KafkaClients(config)
    app[SESSIONS] = Sessions(
        directory=open_directory(config.session_store_url),
        factory=instance_factory(config),
        node_url=config.self_url,
        instance_timeout_ms=config.consumer_instance_timeout_ms,
        lease_ms=config.node_lease_ms,
    )
    app[FORWARDER] = Forwarder(config.cluster_secret)
    app[SCHEMAS] = Schemas(config)
    app.router.add_get("/readyz", readyz)
    metadata.add_routes(app)
    produce.add_routes(app)
    consumers.add_routes(app)
    if config.schema_registry_builtin:
        from .registry import builtin

        builtin.install(app, config)  # routes + its own start/stop hooks
    app.on_startup.append(_start)
    app.on_shutdown.append(_stop)
    return app


def instance_factory(config: Config) -> InstanceFactory:
    """Consumer instances built from the global ``consumer.*`` / ``client.*`` settings."""
    settings = kafka_kwargs(config.consumer_settings(), AIOKafkaConsumer, source="consumer")
    interval = int(settings.pop("auto_commit_interval_ms", 5000))
    settings.pop("enable_auto_commit", None)  # per instance: auto.commit.enable

    def build(spec: InstanceSpec) -> ConsumerInstance:
        return ConsumerInstance(
            spec,
            bootstrap_servers=config.bootstrap_servers,
            kafka_settings=settings,
            instance_timeout_ms=config.consumer_instance_timeout_ms,
            kafka_timeout_ms=config.kafka_timeout_ms,
            auto_commit_interval_ms=interval,
        )

    return build


async def _start(app: web.Application) -> None:
    await app[KAFKA].start()
    await app[FORWARDER].start()
    await app[SCHEMAS].start(app)
    await app[SESSIONS].start()


async def _stop(app: web.Application) -> None:
    await app[SESSIONS].stop(app[CONFIG].shutdown_timeout_ms / 1000)
    await app[FORWARDER].stop()
    await app[SCHEMAS].stop()
    await app[KAFKA].stop()
