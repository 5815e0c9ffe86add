"""Typed keys for what the Application holds; one place so handlers avoid import cycles."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from sessions.routing import Sessions

    from .config import Config
    from .forwarding import Forwarder
    from .kafka import KafkaClients
    from .registry.schemas import Schemas

CONFIG: web.AppKey[Config] = web.AppKey("config")
KAFKA: web.AppKey[KafkaClients] = web.AppKey("kafka")
SESSIONS: web.AppKey[Sessions] = web.AppKey("sessions")
FORWARDER: web.AppKey[Forwarder] = web.AppKey("forwarder")
# Schema formats: the registry client and the compiled schemas (see gateway.registry.schemas).
SCHEMAS: web.AppKey[Schemas] = web.AppKey("schemas")

# Handlers store the negotiated response type under this request key, so that errors raised
# later carry it, as Confluent's do once a resource method has been selected.
RESPONSE_TYPE: web.RequestKey[str] = web.RequestKey("response_type", str)
