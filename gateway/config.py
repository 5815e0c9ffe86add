"""One typed Config from a Confluent-style ``.properties`` file, the environment and ``--set``.

Key names follow Confluent REST Proxy wherever one exists, so a user migrating from Confluent
can reuse their file. Precedence, lowest first: defaults, file, ``EVENT_GATEWAY_*`` environment,
``--set key=value``. An invalid value stops start-up naming the key; a key we do not know is
reported (it is probably a Confluent key we do not implement) but does not stop start-up.

Adding a key is one edit: a ``_setting(...)`` field on :class:`Config` declares its property
name, default, parser and README text; :data:`KEYS`, loading and :func:`markdown_table` (the
README table, checked by ``tests/unit/test_readme_config.py``) are derived from it.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

ENV_PREFIX = "EVENT_GATEWAY_"
PASS_THROUGH_PREFIXES = ("producer.", "consumer.", "admin.", "client.")
PASS_THROUGH_DOC = "passed to the Kafka clients (Java names, e.g. `producer.linger.ms`)"


class ConfigError(ValueError):
    """An invalid configuration value; the message names the key."""


@dataclass(frozen=True)
class Listener:
    scheme: str
    host: str
    port: int

    @property
    def authority(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.authority}"


_DEFAULT_LISTENER = Listener("http", "0.0.0.0", 8082)


# --- value parsers: text -> typed value; ValueError(reason), the caller prefixes the key ------


def _text(value: str) -> str:
    return value.strip()


def _int(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            n = int(value.strip())
        except ValueError:
            raise ValueError(f"{value!r} is not an integer") from None
        if (lo is not None and n < lo) or (hi is not None and n > hi):
            raise ValueError(f"{n} is outside [{lo}, {hi}]")
        return n

    return parse


def _bool(value: str) -> bool:
    v = value.strip().lower()
    if v not in ("true", "false"):
        raise ValueError(f"{value!r} must be true or false")
    return v == "true"


AUTHENTICATION_METHODS = ("NONE", "BASIC", "BEARER", "MTLS")


def _auth_methods(value: str) -> tuple[str, ...]:
    names = [v.strip().upper() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in AUTHENTICATION_METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}: use {', '.join(AUTHENTICATION_METHODS)}")
    methods = tuple(dict.fromkeys(n for n in names if n != "NONE"))
    if methods and "NONE" in names:
        raise ValueError("NONE cannot be combined with other methods")
    return methods


def _log_format(value: str) -> str:
    v = value.strip().lower()
    if v not in ("text", "json"):
        raise ValueError(f"{value!r} must be text or json")
    return v


def _listeners(value: str) -> tuple[Listener, ...]:
    out = []
    for item in (v.strip() for v in value.split(",")):
        if not item:
            continue
        parts = urlsplit(item)
        if parts.scheme not in ("http", "https") or (not parts.hostname and parts.hostname != ""):
            raise ValueError(f"{item!r} is not a listener URL such as http://0.0.0.0:8082")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise ValueError(f"{item!r} has an invalid port") from None
        out.append(Listener(parts.scheme, parts.hostname or "0.0.0.0", port))
    return tuple(out)


def _session_store(value: str) -> str:
    """``memory://`` or a Redis URL of any form (one server, Sentinel, Cluster; see
    :mod:`sessions.redis_connect`), checked at start-up: a typo in a host list or an
    option must stop the replica, not surface as a 503 on the first request."""
    from sessions.redis_connect import parse_store_url

    v = value.strip()
    if v == "memory://":
        return v
    try:
        parse_store_url(v)
    except ValueError as exc:
        raise ValueError(f"{redact(value)!r}: {exc}") from None
    return v


def _wait_replicas(value: str) -> int:
    """``auto`` is -1: the store decides (see :mod:`sessions.redis_store`)."""
    v = value.strip().lower()
    return -1 if v == "auto" else _int(-1, 16)(v)


def _workers(value: str) -> int:
    """``auto`` (or 0) is 0, resolved at start-up by :attr:`Config.worker_count`."""
    v = value.strip().lower()
    return 0 if v == "auto" else _int(0, 256)(v)


def _url_or_empty(value: str) -> str:
    v = value.strip()
    if v and urlsplit(v).scheme not in ("http", "https"):
        raise ValueError(f"{redact(value)!r} is not an http(s) URL")
    return v


# The user info of a URL (up to the authority's last "@"), anchored at its start or a "/" so
# that a mistyped URL ("redis:/:pw@host") is masked as well as a valid one.
_USERINFO = re.compile(r"(^|/)([^/?#]*)@")
_SECRET_PARAM = re.compile(r"(?i)([?&][^=&#]*(?:pass|secret|token|auth)[^=&#]*=)[^&#]*")


def redact(value: str) -> str:
    """``value`` safe to log or echo: URL passwords and secret-looking query values masked.

    ``redis://:pw@host:6379/0`` -> ``redis://:***@host:6379/0``, ``http://u:pw@h`` ->
    ``http://u:***@h``; user info without a password may itself be a token, so it goes too.
    """

    def userinfo(m: re.Match[str]) -> str:
        user, sep, _ = m.group(2).partition(":")
        return f"{m.group(1)}{user + ':***' if sep else '***'}@"

    return _SECRET_PARAM.sub(r"\1***", _USERINFO.sub(userinfo, value))


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        v = value.strip()
        match = next((a for a in allowed if a.lower() == v.lower()), None)
        if match is None:
            raise ValueError(f"{v!r} is not one of {', '.join(allowed)}")
        return match

    return parse


def _record_limit(value: str) -> int:
    """Confluent's ``0`` (no limit) becomes 64 MiB: a streamed body must stay bounded."""
    n = _int(0, 2**31 - 1)(value)
    return n or 67_108_864


def _names(value: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))


def _topic_names(value: str) -> tuple[str, ...]:
    names = tuple(sorted({v.strip() for v in value.split(",") if v.strip()}))
    if any(n.lower() in ("true", "false") for n in names):
        # A boolean here reads as "allow them all" but would allow a topic named "true".
        raise ValueError(f"{value!r}: list topic names, or * for all")
    return names


# --- the declarations -------------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    """One accepted property key, as declared once below."""

    name: str  # the property key, Confluent's name where one exists
    default: Any  # typed, as the Config attribute holds it
    parse: Callable[[str], Any]  # text -> typed value; ValueError(reason) if invalid
    doc: str  # one line: the README table's "meaning"
    attr: str | None = None  # the Config attribute; None: accepted but not stored


_KEY = "gateway.config.key"


def _setting(name: str, default: Any, parse: Callable[[str], Any], doc: str) -> Any:
    """A Config field read from property ``name``."""
    return field(default=default, metadata={_KEY: Key(name, default, parse, doc)})


@dataclass(frozen=True)
class Config:
    bootstrap_servers: str = _setting(
        "bootstrap.servers", "localhost:9092", _text, "Kafka brokers to bootstrap from"
    )
    listeners: tuple[Listener, ...] = _setting(
        "listeners",
        (_DEFAULT_LISTENER,),
        _listeners,
        "where this replica listens (the first one is bound)",
    )
    advertised_listeners: tuple[Listener, ...] = _setting(
        "advertised.listeners",
        (),
        _listeners,
        "public address used in `base_uri` (set it to the load balancer)",
    )
    id: str = _setting("id", "", _text, "inserted in generated instance names")
    consumer_instance_timeout_ms: int = _setting(
        "consumer.instance.timeout.ms",
        300_000,
        _int(1),
        "idle time before an instance is removed (cluster-wide)",
    )
    consumer_request_timeout_ms: int = _setting(
        "consumer.request.timeout.ms", 1_000, _int(0), "longest wait of a records read"
    )
    # Each instance is a live Kafka consumer (connections, a fetcher task, buffers): a client
    # that creates instances in a loop must meet a clear limit, not exhaust the replica.
    consumer_instances_max: int = _setting(
        "consumer.instances.max",
        1_000,
        _int(1),
        "consumer instances one replica holds at most (beyond: 503 50303, another may have room)",
    )
    consumer_instances_cluster_max: int = _setting(
        "consumer.instances.cluster.max",
        10_000,
        _int(0),
        "consumer instances the whole cluster holds at most (beyond: 429 42901; 0: no limit)",
    )
    # 5 minutes: the default idle timeout of an instance, which a single read should not
    # outlast, and far above any long poll a client behind a proxy can hold open.
    consumer_request_timeout_max_ms: int = _setting(
        "consumer.request.timeout.max.ms",
        300_000,
        _int(1, 2**31 - 1),
        "longest wait of any read: a create request asking for a longer `consumer.request.timeout.ms` gets 422",
    )
    consumer_request_max_bytes: int = _setting(
        "consumer.request.max.bytes", 67_108_864, _int(1), "cap on `max_bytes` of a records read"
    )
    fetch_min_bytes: int = _setting(
        "fetch.min.bytes",
        -1,
        _int(-1, 10_000_000),
        "default for instances: return a read once this many bytes arrived (-1: wait the full timeout)",
    )
    consumer_iterator_backoff_ms: int = _setting(
        "consumer.iterator.backoff.ms",
        50,
        _int(0),
        "accepted for Confluent files, unused: a read waits on Kafka's fetch, not a poll loop",
    )
    session_store_url: str = _setting(
        "session.store.url",
        "memory://",
        _session_store,
        "where instance ownership lives: `memory://` (one process), `redis://host:6379/0` "
        "(`rediss://` TLS, `unix://`), `redis+sentinel://h1:26379,h2:26379/name[/db]` or "
        "`redis+cluster://h1:6379,h2:6379` (`rediss+…` for TLS); see Session store high availability",
    )
    session_store_wait_replicas: int = _setting(
        "session.store.wait.replicas",
        -1,
        _wait_replicas,
        "replicas of the session store that must confirm each ownership change (create, claim,"
        " delete, lease renewal) before it is acted on (`WAIT`); `auto`: 1 with Sentinel or a"
        " Cluster whose shard has replicas, 0 with `redis://`; unconfirmed changes answer 503",
    )
    cluster_secret: str = _setting(
        "cluster.secret",
        "",
        _text,
        "HMAC key replicas sign forwarded requests with (required with Redis)",
    )
    node_url: str = _setting(
        "node.url",
        "",
        _url_or_empty,
        "how other replicas reach this one directly (unset: the listener)",
    )
    workers: int = _setting(
        "workers",
        0,
        _workers,
        "processes per replica sharing the listener: 0 or `auto` (the CPUs this process may"
        " use, cgroup limits included) or a number; always 1 with `memory://`",
    )
    node_lease_ms: int = _setting(
        "node.lease.ms",
        10_000,
        _int(1000),
        "a crashed replica's instances are taken over after this",
    )
    producer_max_block_ms: int = _setting(
        "producer.max.block.ms",
        10_000,
        _int(0),
        "bound on waiting for a topic's metadata when producing",
    )
    # Java's name and values, plus `auto` (see gateway/kafka.py: producer_options) so a
    # migrated file's `producer.enable.idempotence=false` still means what it meant there.
    producer_enable_idempotence: str = _setting(
        "producer.enable.idempotence",
        "auto",
        _choice("auto", "true", "false"),
        "idempotent produce (a retry after a leader change writes no duplicate): `auto` is on"
        " unless `producer.acks` is not `all` or the brokers refuse it, `true` requires it",
    )
    kafka_timeout_ms: int = _setting(
        "kafka.timeout.ms", 10_000, _int(1), "bound on any other Kafka call"
    )
    shutdown_readiness_delay_ms: int = _setting(
        "shutdown.readiness.delay.ms",
        2_000,
        _int(0),
        "on SIGTERM, time between readiness going false and draining",
    )
    shutdown_timeout_ms: int = _setting(
        "shutdown.timeout.ms", 15_000, _int(0), "bound on the drain"
    )
    http_header_read_timeout_ms: int = _setting(
        "http.header.read.timeout.ms",
        10_000,
        _int(1),
        "a request's headers must arrive within this of its first byte (or of connecting),"
        " else 408 and the connection is closed",
    )
    idle_timeout_ms: int = _setting(
        "idle.timeout.ms",
        75_000,
        _int(1),
        "an idle keep-alive connection is closed after this; keep it above the load balancer's"
        " idle timeout (and above 30 s, how long replicas keep theirs to each other)",
    )
    quota_requests_per_second: int = _setting(
        "quota.requests.per.second",
        0,
        _int(0),
        "requests one principal may make per second on each replica (beyond: 429 42903; 0: no limit)",
    )
    quota_produce_bytes_per_second: int = _setting(
        "quota.produce.bytes.per.second",
        0,
        _int(0),
        "produce body bytes one principal may send per second on each replica (beyond: 429 42904; 0: no limit)",
    )
    # Streaming consume (gateway/streaming/): long-lived responses, so each is a bounded resource.
    stream_max_open: int = _setting(
        "stream.max.open",
        1_000,
        _int(1),
        "record streams (SSE / NDJSON) one replica serves at once (beyond: 429 42905)",
    )
    stream_max_open_per_principal: int = _setting(
        "stream.max.open.per.principal",
        100,
        _int(1),
        "record streams one principal may hold open on each replica (beyond: 429 42905)",
    )
    stream_heartbeat_ms: int = _setting(
        "stream.heartbeat.ms",
        15_000,
        _int(100, 3_600_000),
        "an idle record stream sends a heartbeat (an SSE comment, an empty NDJSON line) this often,"
        " so proxies do not close it",
    )
    # CORS (gateway/security/cors.py): Confluent's key names.
    access_control_allow_origin: str = _setting(
        "access.control.allow.origin",
        "",
        _text,
        "CORS: origins browsers may call from (`*`, or a comma-separated list of origins; empty: CORS off)",
    )
    access_control_allow_methods: str = _setting(
        "access.control.allow.methods",
        "GET,POST,PUT,DELETE,HEAD,OPTIONS",
        _text,
        "CORS: methods a preflight allows",
    )
    access_control_allow_headers: str = _setting(
        "access.control.allow.headers",
        "origin,content-type,accept,authorization,last-event-id",
        _text,
        "CORS: request headers a preflight allows",
    )
    ui_enabled: bool = _setting(
        "ui.enabled",
        False,
        _bool,
        "serve the live topic page at `/ui/stream` (a browser example of `GET /topics/{t}/events`)",
    )
    log_format: str = _setting(
        "log.format", "text", _log_format, "`text` or `json` (one object per line)"
    )
    schema_registry_url: str = _setting(
        "schema.registry.url",
        "http://localhost:8081",
        _url_or_empty,
        "Confluent-compatible registry for avro/jsonschema/protobuf"
        " (with the built-in one, unset: this replica's listener)",
    )
    schema_registry_user_info: str = _setting(
        "schema.registry.basic.auth.user.info",
        "",
        _text,
        "`user:password` for HTTP basic auth to the registry",
    )
    schema_registry_builtin: bool = _setting(
        "schema.registry.builtin",
        False,
        _bool,
        "serve a registry from the gateway itself (stored in `schema.registry.topic`)",
    )
    schema_registry_topic: str = _setting(
        "schema.registry.topic",
        "_schemas",
        _text,
        "compacted topic the built-in registry keeps its schemas in (Confluent's format)",
    )
    topics_internal_allowed: tuple[str, ...] = _setting(
        "topics.internal.allowed",
        (),
        _topic_names,
        "protected topics (`schema.registry.topic` and Kafka's `__*`) clients may still produce"
        " to and consume from: comma-separated names, or `*` for all",
    )
    authentication_method: tuple[str, ...] = _setting(
        "authentication.method",
        (),
        _auth_methods,
        "NONE, or a comma-separated list of BASIC, BEARER, MTLS (the first a request carries credentials for is used)",
    )
    authentication_realm: str = _setting(
        "authentication.realm", "event-gateway", _text, "realm named in `WWW-Authenticate`"
    )
    authentication_basic_users_file: str = _setting(
        "authentication.basic.users.file",
        "",
        _text,
        "users file for BASIC (`name:bcrypt-hash[:groups]` lines; `event-gateway user add` writes it)",
    )
    # Bearer JWT (gateway/security/jwt.py). The key decides the algorithms: a secret only
    # HS*, a public key or JWKS only its own type's, so a token cannot pick its verifier.
    authentication_jwt_secret: str = _setting(
        "authentication.jwt.secret",
        "",
        _text,
        "BEARER: shared secret of HS256/384/512 tokens (never logged)",
    )
    authentication_jwt_public_key_file: str = _setting(
        "authentication.jwt.public.key.file",
        "",
        _text,
        "BEARER: PEM public key or certificate (RSA: RS*/PS*, EC: ES*) tokens are signed for",
    )
    authentication_jwt_jwks_url: str = _setting(
        "authentication.jwt.jwks.url",
        "",
        _url_or_empty,
        "BEARER: JWKS URL of the token issuer (fetched on first use, cached)",
    )
    authentication_jwt_jwks_refresh_ms: int = _setting(
        "authentication.jwt.jwks.refresh.ms",
        30_000,
        _int(1000),
        "a token with an unknown `kid` refetches the JWKS at most this often (and a set older"
        " than 120 times this is refetched anyway)",
    )
    authentication_jwt_issuer: str = _setting(
        "authentication.jwt.issuer", "", _text, "BEARER: required `iss` (unset: not checked)"
    )
    authentication_jwt_audience: tuple[str, ...] = _setting(
        "authentication.jwt.audience",
        (),
        _names,
        "BEARER: accepted `aud` values, comma-separated (unset: not checked)",
    )
    authentication_jwt_principal_claim: str = _setting(
        "authentication.jwt.principal.claim",
        "sub",
        _text,
        "BEARER: claim naming the principal (dots walk into objects: `a.b`)",
    )
    authentication_jwt_groups_claim: str = _setting(
        "authentication.jwt.groups.claim",
        "",
        _text,
        "BEARER: claim listing the principal's groups (a list, or a space-separated string)",
    )
    authentication_jwt_clock_skew_ms: int = _setting(
        "authentication.jwt.clock.skew.ms",
        30_000,
        _int(0, 600_000),
        "BEARER: tolerance on `exp`, `nbf` and `iat`",
    )
    authentication_mtls_principal: str = _setting(
        "authentication.mtls.principal",
        "CN",
        _choice("CN", "SAN_DNS", "SAN_EMAIL", "SUBJECT"),
        "MTLS: the client certificate's part that names the principal (SUBJECT: RFC 4514 text)",
    )
    authorization_rules_file: str = _setting(
        "authorization.rules.file",
        "",
        _text,
        "JSON allow rules per principal for produce, consume, metadata and the registry (set:"
        " authorisation on, anything not allowed is 403 40301; re-read when it changes)",
    )
    # TLS (gateway/security/tls.py): librdkafka's PEM names, not Confluent's Java keystores.
    ssl_certificate_location: str = _setting(
        "ssl.certificate.location",
        "",
        _text,
        "PEM certificate chain of an `https://` listener (reloaded on SIGHUP)",
    )
    ssl_key_location: str = _setting(
        "ssl.key.location", "", _text, "PEM private key of that certificate (reloaded on SIGHUP)"
    )
    ssl_key_password: str = _setting(
        "ssl.key.password", "", _text, "password of an encrypted `ssl.key.location`"
    )
    ssl_client_authentication: str = _setting(
        "ssl.client.authentication",
        "NONE",
        _choice("NONE", "REQUESTED", "REQUIRED"),
        "client certificates on the `https://` listener: not asked for, verified when sent, or"
        " required (handshake refused without one)",
    )
    ssl_ca_location: str = _setting(
        "ssl.ca.location",
        "",
        _text,
        "PEM CA certificates client certificates must chain to",
    )
    node_ssl_ca_location: str = _setting(
        "node.ssl.ca.location",
        "",
        _text,
        "PEM CA certificates trusted for `https://` node URLs (unset: `ssl.ca.location`, else"
        " the system store)",
    )
    # Pass-through: Kafka's own ACLs judge each caller, with the credentials it proved itself
    # with over HTTP (see gateway/kafka_pool.py).
    kafka_credentials: str = _setting(
        "kafka.credentials",
        "gateway",
        _choice("gateway", "principal"),
        "whom Kafka sees: `gateway` (the `client.sasl.*` identity) or `principal` (each"
        " authenticated caller: Basic as SASL PLAIN/SCRAM, Bearer as OAUTHBEARER)",
    )
    kafka_principal_sasl_mechanism: str = _setting(
        "kafka.principal.sasl.mechanism",
        "PLAIN",
        _choice("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"),
        "with `kafka.credentials=principal`: the SASL mechanism a Basic caller's password is"
        " sent with",
    )
    kafka_principal_clients_max: int = _setting(
        "kafka.principal.clients.max",
        100,
        _int(1),
        "with `kafka.credentials=principal`: callers whose Kafka clients one replica keeps"
        " (least recently used idle ones are closed beyond; all busy: 503 50003)",
    )
    kafka_principal_clients_idle_ms: int = _setting(
        "kafka.principal.clients.idle.ms",
        300_000,
        _int(1000),
        "with `kafka.credentials=principal`: a caller's Kafka clients are closed after this"
        " long unused",
    )
    # v3 produce (gateway/v3/produce*.py). Confluent's names and defaults: the limiter counts
    # every record (and its JSON size) of both produce endpoints, per cluster and per replica.
    api_v3_produce_rate_limit_enabled: bool = _setting(
        "api.v3.produce.rate.limit.enabled",
        False,
        _bool,
        "v3 produce: limit records (and their JSON bytes) per second; a record over the limit"
        " gets 429 in its result",
    )
    api_v3_produce_rate_limit_max_requests_per_sec: int = _setting(
        "api.v3.produce.rate.limit.max.requests.per.sec",
        10_000,
        _int(1),
        "v3 produce limiter: records per second into the cluster (each replica counts its own)",
    )
    api_v3_produce_rate_limit_max_bytes_per_sec: int = _setting(
        "api.v3.produce.rate.limit.max.bytes.per.sec",
        10_000_000,
        _int(1),
        "v3 produce limiter: record JSON bytes per second into the cluster (each replica)",
    )
    api_v3_produce_rate_limit_max_requests_global_per_sec: int = _setting(
        "api.v3.produce.rate.limit.max.requests.global.per.sec",
        10_000,
        _int(1),
        "v3 produce limiter: records per second through this replica, all clusters",
    )
    api_v3_produce_rate_limit_max_bytes_global_per_sec: int = _setting(
        "api.v3.produce.rate.limit.max.bytes.global.per.sec",
        10_000_000,
        _int(1),
        "v3 produce limiter: record JSON bytes per second through this replica, all clusters",
    )
    api_v3_produce_batch_maximum_entries: int = _setting(
        "api.v3.produce.batch.maximum.entries",
        10,
        _int(1, 50),
        "v3 `records:batch`: most entries one batch may hold (beyond: 422 42208)",
    )
    # Confluent's 0 means "no limit"; a streamed body must stay bounded, so 0 means 64 MiB,
    # the largest body any other endpoint reads.
    api_v3_produce_request_size_limit_max_bytes: int = _setting(
        "api.v3.produce.request.size.limit.max.bytes",
        67_108_864,
        _record_limit,
        "v3 produce: largest single record (JSON object) in a stream; a larger one ends the"
        " stream with a 400 entry (0: 64 MiB)",
    )
    streaming_connection_max_duration_ms: int = _setting(
        "streaming.connection.max.duration.ms",
        86_400_000,
        _int(1),
        "v3 streaming produce: records arriving on a stream open longer than this get 408",
    )
    streaming_connection_max_duration_grace_period_ms: int = _setting(
        "streaming.connection.max.duration.grace.period.ms",
        500,
        _int(0),
        "v3 streaming produce: a stream past its maximum duration is closed after this",
    )
    producer: Mapping[str, str] = field(default_factory=dict)
    consumer: Mapping[str, str] = field(default_factory=dict)
    admin: Mapping[str, str] = field(default_factory=dict)
    client: Mapping[str, str] = field(default_factory=dict)
    unknown_keys: tuple[str, ...] = ()

    @property
    def listener(self) -> Listener:
        """The listener the HTTP server binds (the first one)."""
        return self.listeners[0]

    @property
    def worker_count(self) -> int:
        """How many worker processes ``serve`` runs: 1 with the in-memory session store (its
        instances live in one process, so there is nothing for siblings to share)."""
        if self.session_store_url == "memory://":
            return 1
        if self.workers:
            return self.workers
        from gateway.workers.cpus import available_cpus  # only serve() needs the cgroup files

        return available_cpus()

    @property
    def self_url(self) -> str:
        """The URL other replicas use to reach this process directly."""
        if self.node_url:
            return self.node_url.rstrip("/")
        lst = self.listener
        host = "127.0.0.1" if lst.host in ("0.0.0.0", "", "::") else lst.host
        return f"{lst.scheme}://{host}:{lst.port}"

    def producer_settings(self) -> dict[str, str]:
        return {**self.client, **self.producer}

    def consumer_settings(self) -> dict[str, str]:
        return {**self.client, **self.consumer}

    def admin_settings(self) -> dict[str, str]:
        return {**self.client, **self.admin}

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)


# Accepted, but not Config attributes. Confluent's deprecated `port` and `host.name` are
# honoured when `listeners` is not given (their defaults are the default listener's).
_PORT = Key(
    "port",
    _DEFAULT_LISTENER.port,
    _int(1, 65535),
    "legacy Confluent key, read only without `listeners`: listen on `http://host.name:port`",
)
_HOST_NAME = Key(
    "host.name",
    _DEFAULT_LISTENER.host,
    _text,
    "legacy Confluent key, read only without `listeners` (see `port`)",
)
_NOT_STORED = (
    _PORT,
    _HOST_NAME,
    Key(
        "schema.registry.basic.auth.credentials.source",
        "",
        _text,
        "accepted for Confluent files and ignored: credentials come from"
        " `schema.registry.basic.auth.user.info`",
    ),
)

KEYS: dict[str, Key] = {
    k.name: k
    for k in (
        *(
            dataclasses.replace(f.metadata[_KEY], attr=f.name)
            for f in dataclasses.fields(Config)
            if _KEY in f.metadata
        ),
        *_NOT_STORED,
    )
}
"""Every property key the gateway accepts (pass-through prefixes aside), in README order."""


# --- rendering (the README table) -------------------------------------------------------------


def render_value(value: Any) -> str:
    """A typed value as it is written in a ``.properties`` file (``""`` for none)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(v.url if isinstance(v, Listener) else str(v) for v in value)
    return "" if value is None else str(value)


NO_DEFAULT = "\u2013"  # an en dash: the README's default cell of a key with no/empty default


def default_cell(value: Any) -> str:
    """A default as the README table shows it: `` `300000` ``, or an en dash for none."""
    text = render_value(value)
    return f"`{text}`" if text else NO_DEFAULT


def markdown_rows() -> list[str]:
    """The README configuration table's rows (without its header)."""
    rows = [f"| `{k.name}` | {default_cell(k.default)} | {k.doc} |" for k in KEYS.values()]
    prefixes = ", ".join(f"`{p}*`" for p in PASS_THROUGH_PREFIXES)
    rows.append(f"| {prefixes} | {NO_DEFAULT} | {PASS_THROUGH_DOC} |")
    return rows


def markdown_table() -> str:
    """The README configuration table: ``python3 -c 'import gateway.config as c;
    print(c.markdown_table())'``."""
    return "\n".join(["| key | default | meaning |", "|---|---|---|", *markdown_rows()])


# --- parsing ---------------------------------------------------------------------------------


def parse_properties(text: str) -> dict[str, str]:
    """Java ``.properties``: ``k=v``, ``k: v`` or ``k v``; ``#``/``!`` comments; ``\\`` joins."""
    out: dict[str, str] = {}
    logical: list[str] = []
    for raw in text.splitlines():
        line = raw.strip() if not logical else raw.lstrip()
        if not logical and (not line or line[0] in "#!"):
            continue
        if line.endswith("\\") and not line.endswith("\\\\"):
            logical.append(line[:-1])
            continue
        logical.append(line)
        entry = "".join(logical)
        logical = []
        m = re.match(r"^((?:[^\s=:\\]|\\.)+)\s*[=:\s]\s*(.*)$", entry)
        if m:
            out[_unescape(m.group(1))] = _unescape(m.group(2))
        else:
            out[_unescape(entry)] = ""
    return out


def _unescape(s: str) -> str:
    return re.sub(
        r"\\(.)", lambda m: {"n": "\n", "t": "\t", "r": "\r"}.get(m.group(1), m.group(1)), s
    )


def _parse(key: Key, raw: str) -> Any:
    try:
        return key.parse(str(raw))
    except ValueError as exc:
        raise ConfigError(f"{key.name}: {exc}") from None


def parse_listeners(value: str, key: str = "listeners") -> tuple[Listener, ...]:
    try:
        return _listeners(value)
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def env_key(name: str) -> str:
    """The property key an ``EVENT_GATEWAY_*`` variable sets (``_`` becomes ``.``)."""
    return name[len(ENV_PREFIX) :].lower().replace("_", ".")


def load(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Iterable[str] | Mapping[str, str] = (),
) -> Config:
    """Build the Config; raises :class:`ConfigError` naming the first invalid key."""
    props: dict[str, str] = {}
    if path is not None:
        try:
            with open(path, encoding="utf-8") as fh:
                props.update(parse_properties(fh.read()))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    env = os.environ if environ is None else environ
    for name, value in env.items():
        if name.startswith(ENV_PREFIX) and len(name) > len(ENV_PREFIX):
            props[env_key(name)] = value
    if isinstance(overrides, Mapping):
        props.update(overrides)
    else:
        for item in overrides:
            key, sep, value = item.partition("=")
            if not sep:
                raise ConfigError(f"--set {item!r}: expected key=value")
            props[key.strip()] = value
    return from_properties(props)


def _check_tls_and_tokens(values: Mapping[str, Any]) -> None:
    """What the TLS and token keys need of each other (files are read at start-up)."""
    methods = values.get("authentication_method", ())
    https = values["listeners"][0].scheme == "https"
    if https and not (values.get("ssl_certificate_location") and values.get("ssl_key_location")):
        raise ConfigError(
            "ssl.certificate.location: an https:// listener needs ssl.certificate.location and"
            " ssl.key.location (PEM files; Java keystores are not read)"
        )
    client_auth = values.get("ssl_client_authentication", "NONE")
    if client_auth != "NONE" and not (https and values.get("ssl_ca_location")):
        raise ConfigError(
            "ssl.client.authentication: needs an https:// listener and ssl.ca.location (the CA"
            " client certificates are verified against)"
        )
    if "MTLS" in methods and client_auth == "NONE":
        raise ConfigError(
            "authentication.method: MTLS needs ssl.client.authentication=REQUESTED or REQUIRED"
        )
    if "BEARER" in methods and not any(
        values.get(k)
        for k in (
            "authentication_jwt_secret",
            "authentication_jwt_public_key_file",
            "authentication_jwt_jwks_url",
        )
    ):
        raise ConfigError(
            "authentication.method: BEARER needs authentication.jwt.secret,"
            " authentication.jwt.public.key.file or authentication.jwt.jwks.url"
        )


def from_properties(props: Mapping[str, str]) -> Config:
    values: dict[str, Any] = {}
    passthrough: dict[str, dict[str, str]] = {p[:-1]: {} for p in PASS_THROUGH_PREFIXES}
    unknown: list[str] = []
    for name, raw in props.items():
        key = KEYS.get(name)
        if key is not None:
            if key.attr is not None:
                values[key.attr] = _parse(key, raw)
        elif name.startswith(PASS_THROUGH_PREFIXES):
            prefix, _, rest = name.partition(".")
            passthrough[prefix][rest] = str(raw)
        else:
            unknown.append(name)
    if not values.get("listeners"):
        port = _parse(_PORT, props["port"]) if "port" in props else _PORT.default
        host = _parse(_HOST_NAME, props.get("host.name", "")) or _HOST_NAME.default
        values["listeners"] = (Listener("http", host, port),)
    if values.get("schema_registry_builtin") and "schema_registry_url" not in values:
        # The built-in registry answers on this process's own listener.
        lst = values["listeners"][0]
        host = "127.0.0.1" if lst.host in ("0.0.0.0", "", "::") else lst.host
        values["schema_registry_url"] = f"{lst.scheme}://{host}:{lst.port}"
    wait = values.get("consumer_request_timeout_ms", KEYS["consumer.request.timeout.ms"].default)
    max_wait = values.get(
        "consumer_request_timeout_max_ms", KEYS["consumer.request.timeout.max.ms"].default
    )
    if wait > max_wait:
        raise ConfigError(
            f"consumer.request.timeout.ms: {wait} is above consumer.request.timeout.max.ms "
            f"({max_wait})"
        )
    if "BASIC" in values.get("authentication_method", ()) and not values.get(
        "authentication_basic_users_file"
    ):
        raise ConfigError(
            "authentication.basic.users.file: required when authentication.method has BASIC "
            "(write one with: event-gateway user add --users-file FILE NAME)"
        )
    _check_tls_and_tokens(values)
    store = values.get("session_store_url", KEYS["session.store.url"].default)
    if store != "memory://" and not values.get("cluster_secret"):
        raise ConfigError(
            "cluster.secret: required when session.store.url is a Redis URL "
            "(replicas sign the requests they forward to each other with it)"
        )
    if store == "memory://" and values.get("workers", 0) > 1:
        raise ConfigError(
            "workers: more than one worker needs session.store.url=redis://… (with memory://"
            " each worker would hold instances the others cannot find)"
        )
    fields: dict[str, Any] = {**values, **passthrough}
    return Config(**fields, unknown_keys=tuple(sorted(unknown)))
