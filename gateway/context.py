"""Typed keys for what the Application holds and what a request carries.

The keys of components defined in lower modules live here, imported at run time: those
modules never import this one, so there is no circle to hide behind ``TYPE_CHECKING``. The
forwarder's key lives with the forwarder (:data:`gateway.forwarding.FORWARDER`), since the
forwarding wrapper needs it and this module must not import what imports it back.
"""

from __future__ import annotations

from aiohttp import web

from sessions.router import InstanceRouter

from .config import Config
from .kafka import KafkaClients
from .produce.sender import ProducerGate
from .registry.schemas import Schemas

CONFIG = web.AppKey("config", Config)
KAFKA = web.AppKey("kafka", KafkaClients)
SESSIONS = web.AppKey("sessions", InstanceRouter)
PRODUCER = web.AppKey("producer", ProducerGate)
# Schema formats: the registry client and the compiled schemas (see gateway.registry.schemas).
SCHEMAS = web.AppKey("schemas", Schemas)

# Handlers store the negotiated response type under this request key, so that errors raised
# later carry it, as Confluent's do once a resource method has been selected.
RESPONSE_TYPE: web.RequestKey[str] = web.RequestKey("response_type", str)
