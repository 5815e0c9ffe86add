"""How the gateway proves itself to Kafka: Java/librdkafka security settings -> aiokafka.

Operators migrating from Confluent bring Java client files (``security.protocol``,
``sasl.mechanism``, ``sasl.jaas.config``, ``ssl.truststore.*``); teams running librdkafka
clients bring ``sasl.username`` and ``ssl.ca.location``. Both spellings are read, under any
of the ``client.``/``producer.``/``consumer.``/``admin.`` prefixes, and turned into the one
set of aiokafka arguments (``security_protocol``, ``sasl_*``, ``ssl_context``) that every
Kafka client the gateway builds receives through :func:`gateway.kafka.kafka_kwargs`.

Java keystores (JKS, PKCS12) cannot be read without a JVM, so only PEM is accepted: Kafka's
own ``ssl.truststore.type=PEM`` / ``ssl.keystore.type=PEM`` files, or librdkafka's separate
CA, certificate and key files. A JKS file is refused at start-up with the command that
converts it, rather than failing at the first connection.

Nothing here logs or echoes a password: a malformed JAAS line is reported without its text.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiokafka.abc import AbstractTokenProvider
from aiokafka.helpers import create_ssl_context

from .config import ConfigError

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")

# Settings read here (their aiokafka counterparts are built, not renamed). Every other
# ssl.*/sasl.* key (e.g. ssl.enabled.protocols) is left to kafka_kwargs, which reports it.
SASL_KEYS = frozenset(
    {"security.protocol", "sasl.mechanism", "sasl.mechanisms", "sasl.jaas.config"}
    | {"sasl.username", "sasl.password"}
)
SSL_KEYS = frozenset(
    {"ssl.truststore.location", "ssl.truststore.type", "ssl.truststore.password"}
    | {"ssl.keystore.location", "ssl.keystore.type", "ssl.keystore.password"}
    | {"ssl.key.password", "ssl.endpoint.identification.algorithm"}
    | {"ssl.ca.location", "ssl.certificate.location", "ssl.key.location"}
)
KEYS = SASL_KEYS | SSL_KEYS

_LOGIN_MODULES = {
    "org.apache.kafka.common.security.plain.PlainLoginModule": ("PLAIN",),
    "org.apache.kafka.common.security.scram.ScramLoginModule": ("SCRAM-SHA-256", "SCRAM-SHA-512"),
}
# One JAAS option: name=value, the value double-quoted (with \" and \\ escapes) or bare.
_OPTION = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s;"][^\s;]*)')


def parse_jaas(text: str, *, key: str) -> tuple[str, dict[str, str]]:
    """``(login module, options)`` of one JAAS entry as Kafka clients take it:
    ``org...PlainLoginModule required username="u" password="p";``."""
    m = re.match(r"\s*([A-Za-z0-9_.$]+)\s+(required|requisite|sufficient|optional)\b", text)
    if not m:
        raise ConfigError(f'{key}: not a JAAS entry (expected `<LoginModule> required k="v";`)')
    options: dict[str, str] = {}
    rest = text[m.end() :]
    while True:
        opt = _OPTION.match(rest)
        if not opt:
            break
        value = opt.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        options[opt.group(1)] = value
        rest = rest[opt.end() :]
    if rest.strip() not in (";", ""):
        # The remainder may hold a password: say where, never what.
        raise ConfigError(f"{key}: cannot parse the JAAS options after {sorted(options)}")
    return m.group(1), options


def security_kwargs(settings: Mapping[str, str], *, source: str) -> dict[str, Any]:
    """aiokafka arguments for the security settings among ``settings`` (empty if none).

    Raises :class:`ConfigError` naming the key (``source.key``) when they are inconsistent,
    so a misconfigured gateway stops at start-up instead of failing every connection.
    """
    if not KEYS & settings.keys():
        return {}
    protocol = settings.get("security.protocol", "PLAINTEXT").strip().upper()
    if protocol not in PROTOCOLS:
        raise ConfigError(f"{source}.security.protocol: {protocol!r} is not one of {PROTOCOLS}")
    out: dict[str, Any] = {"security_protocol": protocol}
    if protocol.startswith("SASL_"):
        out.update(_sasl(settings, source))
    if protocol in ("SSL", "SASL_SSL"):
        out["ssl_context"] = _ssl_context(settings, source)
    return out


def _sasl(settings: Mapping[str, str], source: str) -> dict[str, Any]:
    # librdkafka spells it sasl.mechanisms (plural).
    mechanism = (settings.get("sasl.mechanism") or settings.get("sasl.mechanisms") or "").strip()
    mechanism = mechanism.upper()
    username = settings.get("sasl.username")
    password = settings.get("sasl.password")
    if jaas := settings.get("sasl.jaas.config"):
        module, options = parse_jaas(jaas, key=f"{source}.sasl.jaas.config")
        allowed = _LOGIN_MODULES.get(module)
        if allowed is None:
            raise ConfigError(
                f"{source}.sasl.jaas.config: login module {module} is not supported "
                f"(use {' or '.join(_LOGIN_MODULES)})"
            )
        if not mechanism:
            if len(allowed) > 1:
                raise ConfigError(f"{source}.sasl.mechanism: required with {module}")
            mechanism = allowed[0]  # Java would default to GSSAPI and fail at connect
        elif mechanism not in allowed:
            raise ConfigError(
                f"{source}.sasl.mechanism: {mechanism} does not go with {module} in "
                "sasl.jaas.config"
            )
        username, password = options.get("username"), options.get("password")
    mechanism = mechanism or "PLAIN"
    if mechanism not in MECHANISMS:
        raise ConfigError(f"{source}.sasl.mechanism: {mechanism!r} is not one of {MECHANISMS}")
    if mechanism == "OAUTHBEARER":
        # A static token would expire under the gateway; tokens come from principals only.
        raise ConfigError(
            f"{source}.sasl.mechanism: OAUTHBEARER is only used in pass-through mode "
            "(kafka.credentials=principal), with each caller's bearer token"
        )
    if not username or password is None:
        raise ConfigError(
            f"{source}.sasl.jaas.config: {mechanism} needs a username and a password "
            "(or sasl.username and sasl.password)"
        )
    return {
        "sasl_mechanism": mechanism,
        "sasl_plain_username": username,
        "sasl_plain_password": password,
    }


def _ssl_context(settings: Mapping[str, str], source: str) -> ssl.SSLContext:
    def pem(key: str, type_key: str | None = None) -> str | None:
        location = settings.get(key, "").strip()
        if not location:
            return None
        kind = settings.get(type_key, "").strip().upper() if type_key else ""
        if kind and kind != "PEM":
            raise ConfigError(
                f"{source}.{type_key}: {kind} needs a JVM; convert it to PEM (keytool "
                "-importkeystore -deststoretype PKCS12, then openssl pkcs12 -nodes) and set "
                f"{type_key}=PEM"
            )
        try:
            head = Path(location).read_bytes()[:4096]
        except OSError as exc:
            raise ConfigError(f"{source}.{key}: cannot read {location}: {exc.strerror}") from None
        if b"-----BEGIN" not in head:
            raise ConfigError(f"{source}.{key}: {location} is not a PEM file")
        return location

    cafile = pem("ssl.ca.location") or pem("ssl.truststore.location", "ssl.truststore.type")
    # Kafka's PEM keystore holds the key and its certificate chain in one file.
    keystore = pem("ssl.keystore.location", "ssl.keystore.type")
    certfile = pem("ssl.certificate.location") or keystore
    keyfile = pem("ssl.key.location") or keystore
    if (keyfile is None) != (certfile is None):
        raise ConfigError(
            f"{source}.ssl.key.location: a client certificate needs both its certificate "
            "and its key"
        )
    password = settings.get("ssl.key.password") or settings.get("ssl.keystore.password")
    try:
        context: ssl.SSLContext = create_ssl_context(
            cafile=cafile, certfile=certfile, keyfile=keyfile, password=password or None
        )
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"{source}: cannot load the TLS files ({type(exc).__name__})") from None
    algorithm = settings.get("ssl.endpoint.identification.algorithm", "https").strip()
    if not algorithm:  # Kafka's way of turning host name verification off
        context.check_hostname = False
    return context


# --- pass-through: connect to Kafka as the HTTP caller ---------------------------------------


class StaticToken(AbstractTokenProvider):  # type: ignore[misc]  # aiokafka.abc is untyped
    """The caller's bearer token, updated on each of its requests: aiokafka asks for a token
    whenever it (re)connects, and must then get the newest one the caller proved itself with."""

    def __init__(self, token: str) -> None:
        self.value = token

    async def token(self) -> str:
        return self.value


def principal_kwargs(
    method: str, name: str, secret: str, *, protocol: str, mechanism: str
) -> dict[str, Any]:
    """aiokafka SASL arguments that make a client authenticate as the caller.

    ``protocol`` is the gateway's own ``security.protocol`` (SASL_PLAINTEXT or SASL_SSL;
    the TLS context stays the gateway's), ``mechanism`` the one Basic passwords are used with
    (PLAIN or SCRAM-*); a bearer token always goes as OAUTHBEARER.
    """
    if method == "bearer":
        return {
            "security_protocol": protocol,
            "sasl_mechanism": "OAUTHBEARER",
            "sasl_oauth_token_provider": StaticToken(secret),
        }
    return {
        "security_protocol": protocol,
        "sasl_mechanism": mechanism,
        "sasl_plain_username": name,
        "sasl_plain_password": secret,
    }


# --- diagnosis --------------------------------------------------------------------------------

_CONNECTION_KEYS = (
    "security_protocol",
    "ssl_context",
    "sasl_mechanism",
    "sasl_plain_username",
    "sasl_plain_password",
    "sasl_oauth_token_provider",
)


async def refused_credentials(
    bootstrap_servers: str, kwargs: Mapping[str, Any], timeout_s: float
) -> str | None:
    """Why Kafka refused these credentials, or None if it did not (or cannot be asked).

    aiokafka reports a failed SASL handshake only as "Unable to bootstrap", which reads like a
    network outage; one bounded connection attempt with the same settings brings back the
    broker's own reason ("Invalid username or password"), so an operator sees what to fix.
    """
    from aiokafka.conn import create_conn
    from aiokafka.errors import (
        AuthenticationFailedError,
        SaslAuthenticationFailed,
        UnsupportedSaslMechanismError,
    )

    if not str(kwargs.get("security_protocol", "")).startswith("SASL"):
        return None
    first = bootstrap_servers.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    if not host or not port.isdigit():
        return None
    options = {k: kwargs[k] for k in _CONNECTION_KEYS if k in kwargs}
    try:
        conn = await asyncio.wait_for(
            create_conn(
                host.strip("[]"), int(port), request_timeout_ms=int(timeout_s * 1000), **options
            ),
            timeout_s,
        )
    except (
        SaslAuthenticationFailed,
        AuthenticationFailedError,
        UnsupportedSaslMechanismError,
    ) as exc:
        text = str(exc).strip() or type(exc).__name__
        return f"Kafka refused the gateway's credentials: {text}"
    except Exception:
        return None  # unreachable or slow: the original error says enough
    conn.close()
    return None
