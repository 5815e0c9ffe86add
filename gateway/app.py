"""Build the aiohttp Application from a Config: middlewares, routes, and the lifecycle.

:func:`build_app` lists every long-lived component in the order it starts; each is started
through aiohttp's ``cleanup_ctx``, so they stop in reverse order, after in-flight handlers
have finished: consumer instances drain while the Kafka clients, the forwarder and the schema
registry they may need are still up.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from aiohttp import web
from aiohttp.typedefs import Handler
from aiokafka import AIOKafkaConsumer

from sessions.directory import open_directory
from sessions.errors import SessionError
from sessions.instance import ConsumerInstance, InstanceSpec
from sessions.local import InstanceFactory
from sessions.router import InstanceRouter

from . import kafka_pool, metadata, openapi, streams, ui, v3
from .config import Config
from .consume import routes as consume_routes
from .context import CONFIG, KAFKA, PRODUCER, RESPONSE_TYPE, SCHEMAS, SESSIONS
from .errors import GatewayError, error_body, error_response, to_gateway_error
from .formats.codec import DataError, PayloadError
from .forwarding import (
    FORWARDED,
    FORWARDER,
    HEADER,
    LEGACY_HEADER,
    PRINCIPAL_HEADER,
    Forwarder,
    decode_principal,
)
from .heap import HeapGuard
from .kafka import KafkaClients, kafka_kwargs
from .observability import wiring as observability
from .observability.access_log import observe_middleware
from .produce import routes as produce_routes
from .produce.sender import ProducerGate
from .registry import builtin
from .registry.schemas import Schemas
from .security.authn import AUTHENTICATOR, Authenticator, authentication_middleware
from .security.authz import AUTHORIZER, Authorizer
from .security.cors import cors_middleware, install_cors
from .security.principal import PRINCIPAL
from .security.quotas import quota_middleware
from .security.tls import TLS, TLS_KEY
from .streaming import routes as streaming_routes
from .streaming.retry import retry_stream, wants_retry_stream
from .streaming.slots import STREAMS, StreamSlots
from .topics import client_topic_filter
from .workers.identity import WorkerIdentity

log = logging.getLogger(__name__)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure leaves as Confluent's error body; nothing unexpected escapes as HTML."""
    try:
        return await handler(request)
    except GatewayError as exc:
        if wants_retry_stream(request, exc):
            return retry_stream(exc)
        return error_response(exc, request.get(RESPONSE_TYPE, "application/json"))
    except (SessionError, DataError, PayloadError) as exc:
        mapped = to_gateway_error(exc)
        if wants_retry_stream(request, mapped):
            return retry_stream(mapped)
        return error_response(mapped, request.get(RESPONSE_TYPE, "application/json"))
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
async def forwarded_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Mark requests another replica forwarded; refuse any whose signature does not verify,
    that was addressed to another node, or that this node has already seen."""
    if HEADER in request.headers or LEGACY_HEADER in request.headers:
        forwarder = request.app[FORWARDER]
        sibling = forwarder.sibling_for_hop(request)
        if sibling is not None:  # for the owning worker; it reached the shared listener
            return await forwarder.relay(request, sibling)
        node_id = request.app[SESSIONS].node_id
        request[FORWARDED] = await forwarder.verify(request, node_id)
        if request[FORWARDED]:
            # The replica that received the request authenticated the client; the principal
            # it vouched for is part of the verified signature.
            request[PRINCIPAL] = decode_principal(request.headers.get(PRINCIPAL_HEADER, ""))
    return await handler(request)


class Component(Protocol):
    """A long-lived part of the application: started once, stopped once."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...


def build_app(config: Config, worker: WorkerIdentity | None = None) -> web.Application:
    """The whole gateway; ``worker`` when it runs as one of a replica's worker processes."""
    app = web.Application(
        # Order matters: errors wrap everything; a forwarded request is verified (and its
        # principal taken from the signed hop) before authentication, which skips it.
        middlewares=[
            observe_middleware,  # outermost: times everything, sees the final status
            cors_middleware,  # its headers go on errors too, or a browser cannot read them
            error_middleware,
            forwarded_middleware,
            authentication_middleware,
            quota_middleware,  # last: keyed by the principal authentication established
        ],
        client_max_size=64 * 1024 * 1024,
        # aiohttp keeps an idle connection for an hour by default; here, and not in serve(),
        # so every runner of this app (tests included) closes idle connections the same way.
        handler_args={"keepalive_timeout": config.idle_timeout_ms / 1000},
    )
    app[CONFIG] = config
    # CORS headers on streams too (their headers leave from inside the handler); a bad origin
    # in access.control.allow.origin stops start-up here.
    install_cors(app, config)

    # Every long-lived component, in start order (stopped in reverse: sessions drain first).
    kafka = KafkaClients(config)
    tls = TLS(config)
    forwarder = Forwarder(
        config.cluster_secret,
        ssl_context=tls.client,
        default_wait_ms=config.consumer_request_timeout_ms,
        kafka_timeout_ms=config.kafka_timeout_ms,
        max_wait_ms=config.consumer_request_timeout_max_ms,
        stream_heartbeat_ms=config.stream_heartbeat_ms,
        worker=worker,
    )
    registry = builtin.RegistryService(config) if config.schema_registry_builtin else None
    schemas = Schemas(
        config, transport=builtin.InProcessTransport(registry) if registry is not None else None
    )
    sessions = InstanceRouter(
        directory=open_directory(
            config.session_store_url, wait_replicas=config.session_store_wait_replicas
        ),
        factory=instance_factory(config),
        node_url=config.self_url,
        node_name=worker.node_name(config.self_url.split("://", 1)[-1]) if worker else None,
        node_slot=worker.slot(config.self_url) if worker else None,
        instance_timeout_ms=config.consumer_instance_timeout_ms,
        lease_ms=config.node_lease_ms,
        drain_timeout_ms=config.shutdown_timeout_ms,
        max_instances=config.consumer_instances_max,
        max_cluster_instances=config.consumer_instances_cluster_max,
    )
    lifecycle: list[Component] = [kafka, forwarder]
    if config.kafka_credentials == "principal":
        # Innermost middleware: it reads the principal authentication established.
        app[kafka_pool.POOL] = pool = kafka_pool.PrincipalKafka(config)
        app.middlewares.append(kafka_pool.pass_through_middleware)
        lifecycle.append(pool)
    if registry is not None:
        lifecycle.append(registry)
    # After the sessions: it watches their instances (and freezes what start-up built).
    lifecycle += [schemas, sessions, HeapGuard(sessions.local.items)]
    lifecycle += observability.install(
        app, config, kafka=kafka, sessions=sessions, forwarder=forwarder, registry=registry
    )
    for component in lifecycle:
        app.cleanup_ctx.append(_started(component))

    app[AUTHENTICATOR] = Authenticator(config)
    app[TLS_KEY] = tls
    app[AUTHORIZER] = Authorizer(config)  # a bad rules file stops start-up here
    app[KAFKA] = kafka
    app[PRODUCER] = ProducerGate(kafka)
    app[FORWARDER] = forwarder
    app[SCHEMAS] = schemas
    app[SESSIONS] = sessions
    app[STREAMS] = stream_slots = StreamSlots(
        config.stream_max_open, config.stream_max_open_per_principal
    )

    async def end_streams(_: web.Application) -> None:
        stream_slots.close()  # before aiohttp waits for in-flight handlers

    app.on_shutdown.append(end_streams)
    if registry is not None:
        app[builtin.REGISTRY] = registry

    openapi.add_routes(app, builtin_registry=registry is not None)
    metadata.add_routes(app)
    produce_routes.add_routes(app)
    consume_routes.add_routes(app)
    v3.add_routes(app)
    streams.add_routes(app)
    streaming_routes.add_routes(app)
    ui.add_routes(app)
    if registry is not None:
        builtin.add_routes(app)
    return app


def _started(component: Component) -> Callable[[web.Application], AsyncIterator[None]]:
    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        await component.start()
        try:
            yield
        finally:
            await component.stop()

    lifecycle.__qualname__ = f"lifecycle of {type(component).__name__}"
    return lifecycle


def instance_factory(config: Config) -> InstanceFactory:
    """Consumer instances built from the global ``consumer.*`` / ``client.*`` settings."""
    settings = kafka_kwargs(config.consumer_settings(), AIOKafkaConsumer, source="consumer")
    interval = int(settings.pop("auto_commit_interval_ms", 5000))
    settings.pop("enable_auto_commit", None)  # per instance: auto.commit.enable
    allowed = client_topic_filter(config)

    def build(spec: InstanceSpec) -> ConsumerInstance:
        return ConsumerInstance(
            spec,
            bootstrap_servers=config.bootstrap_servers,
            # Pass-through: the creating (or adopting) caller's, never stored in the spec.
            kafka_settings={**settings, **kafka_pool.consumer_credentials(config)},
            instance_timeout_ms=config.consumer_instance_timeout_ms,
            kafka_timeout_ms=config.kafka_timeout_ms,
            auto_commit_interval_ms=interval,
            topic_allowed=allowed,
        )

    return build
