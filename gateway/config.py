"""One typed Config from a Confluent-style ``.properties`` file, the environment and ``--set``.

Key names follow Confluent REST Proxy wherever one exists, so a user migrating from Confluent
can reuse their file. Precedence, lowest first: defaults, file, ``EVENT_GATEWAY_*`` environment,
``--set key=value``. An invalid value stops start-up naming the key; a key we do not know is
reported (it is probably a Confluent key we do not implement) but does not stop start-up.
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


@dataclass(frozen=True)
class Config:
    bootstrap_servers: str = "localhost:9092"
    listeners: tuple[Listener, ...] = (Listener("http", "0.0.0.0", 8082),)
    advertised_listeners: tuple[Listener, ...] = ()
    id: str = ""
    consumer_instance_timeout_ms: int = 300_000
    consumer_request_timeout_ms: int = 1_000
    consumer_request_max_bytes: int = 67_108_864
    fetch_min_bytes: int = -1
    consumer_iterator_backoff_ms: int = 50
    schema_registry_url: str = "http://localhost:8081"
    schema_registry_builtin: bool = False
    schema_registry_user_info: str = ""  # "user:password" for basic auth
    schema_registry_topic: str = "_schemas"
    session_store_url: str = "memory://"
    node_url: str = ""
    cluster_secret: str = ""
    producer_max_block_ms: int = 10_000
    kafka_timeout_ms: int = 10_000
    shutdown_timeout_ms: int = 15_000
    shutdown_readiness_delay_ms: int = 2_000
    node_lease_ms: int = 10_000
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


def parse_listeners(value: str, key: str) -> tuple[Listener, ...]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    out = []
    for item in items:
        parts = urlsplit(item)
        if parts.scheme not in ("http", "https") or (not parts.hostname and parts.hostname != ""):
            raise ConfigError(f"{key}: {item!r} is not a listener URL such as http://0.0.0.0:8082")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            raise ConfigError(f"{key}: {item!r} has an invalid port") from exc
        out.append(Listener(parts.scheme, parts.hostname or "0.0.0.0", port))
    return tuple(out)


def _int(key: str, lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    def conv(value: str) -> int:
        try:
            n = int(value.strip())
        except ValueError:
            raise ConfigError(f"{key}: {value!r} is not an integer") from None
        if (lo is not None and n < lo) or (hi is not None and n > hi):
            raise ConfigError(f"{key}: {n} is outside [{lo}, {hi}]")
        return n

    return conv


def _bool(key: str) -> Callable[[str], bool]:
    def conv(value: str) -> bool:
        v = value.strip().lower()
        if v not in ("true", "false"):
            raise ConfigError(f"{key}: {value!r} must be true or false")
        return v == "true"

    return conv


def _session_store(value: str) -> str:
    v = value.strip()
    if not (v.startswith(("redis://", "rediss://", "unix://")) or v == "memory://"):
        raise ConfigError(
            f"session.store.url: {value!r} must be memory:// or a redis:// / rediss:// URL"
        )
    return v


def _url_or_empty(key: str) -> Callable[[str], str]:
    def conv(value: str) -> str:
        v = value.strip()
        if v and urlsplit(v).scheme not in ("http", "https"):
            raise ConfigError(f"{key}: {value!r} is not an http(s) URL")
        return v

    return conv


# property key -> (Config field, converter)
_KEYS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "bootstrap.servers": ("bootstrap_servers", lambda v: v.strip()),
    "listeners": ("listeners", lambda v: parse_listeners(v, "listeners")),
    "advertised.listeners": (
        "advertised_listeners",
        lambda v: parse_listeners(v, "advertised.listeners"),
    ),
    "id": ("id", str.strip),
    "consumer.instance.timeout.ms": (
        "consumer_instance_timeout_ms",
        _int("consumer.instance.timeout.ms", 1),
    ),
    "consumer.request.timeout.ms": (
        "consumer_request_timeout_ms",
        _int("consumer.request.timeout.ms", 0),
    ),
    "consumer.request.max.bytes": (
        "consumer_request_max_bytes",
        _int("consumer.request.max.bytes", 1),
    ),
    "fetch.min.bytes": ("fetch_min_bytes", _int("fetch.min.bytes", -1, 10_000_000)),
    "consumer.iterator.backoff.ms": (
        "consumer_iterator_backoff_ms",
        _int("consumer.iterator.backoff.ms", 0),
    ),
    "schema.registry.url": ("schema_registry_url", _url_or_empty("schema.registry.url")),
    "schema.registry.builtin": ("schema_registry_builtin", _bool("schema.registry.builtin")),
    "schema.registry.basic.auth.user.info": ("schema_registry_user_info", str.strip),
    "schema.registry.basic.auth.credentials.source": ("_ignored", str.strip),
    "schema.registry.topic": ("schema_registry_topic", str.strip),
    "session.store.url": ("session_store_url", _session_store),
    "node.url": ("node_url", _url_or_empty("node.url")),
    "cluster.secret": ("cluster_secret", str.strip),
    "producer.max.block.ms": ("producer_max_block_ms", _int("producer.max.block.ms", 0)),
    "kafka.timeout.ms": ("kafka_timeout_ms", _int("kafka.timeout.ms", 1)),
    "shutdown.timeout.ms": ("shutdown_timeout_ms", _int("shutdown.timeout.ms", 0)),
    "shutdown.readiness.delay.ms": (
        "shutdown_readiness_delay_ms",
        _int("shutdown.readiness.delay.ms", 0),
    ),
    "node.lease.ms": ("node_lease_ms", _int("node.lease.ms", 1000)),
}

# Confluent's deprecated `port` is honoured when `listeners` is not given.
_LEGACY = {"port", "host.name"}


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


def from_properties(props: Mapping[str, str]) -> Config:
    values: dict[str, Any] = {}
    passthrough: dict[str, dict[str, str]] = {p[:-1]: {} for p in PASS_THROUGH_PREFIXES}
    unknown: list[str] = []
    for key, raw in props.items():
        if key in _KEYS:
            fld, conv = _KEYS[key]
            value = conv(str(raw))
            if not fld.startswith("_"):
                values[fld] = value
        elif key in _LEGACY:
            continue
        elif key.startswith(PASS_THROUGH_PREFIXES):
            prefix, _, rest = key.partition(".")
            passthrough[prefix][rest] = str(raw)
        else:
            unknown.append(key)
    if "listeners" not in values or not values["listeners"]:
        port = _int("port", 1, 65535)(props["port"]) if "port" in props else 8082
        host = props.get("host.name", "").strip() or "0.0.0.0"
        values["listeners"] = (Listener("http", host, port),)
    if values.get("schema_registry_builtin") and "schema_registry_url" not in values:
        # The built-in registry answers on this process's own listener.
        lst = values["listeners"][0]
        host = "127.0.0.1" if lst.host in ("0.0.0.0", "", "::") else lst.host
        values["schema_registry_url"] = f"{lst.scheme}://{host}:{lst.port}"
    store = values.get("session_store_url", "memory://")
    if store != "memory://" and not values.get("cluster_secret"):
        raise ConfigError(
            "cluster.secret: required when session.store.url is a Redis URL "
            "(replicas sign the requests they forward to each other with it)"
        )
    return Config(**values, **passthrough, unknown_keys=tuple(sorted(unknown)))
