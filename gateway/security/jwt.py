"""Bearer JWT authentication: ``Authorization: Bearer <token>`` becomes a :class:`Principal`.

The configured keys decide which algorithms a token may use, never the token: a shared secret
verifies only HS256/384/512 tokens, an RSA key only RS*/PS*, an EC key only the ES* of its
curve. A token that names ``none``, or HS256 with a public key as its "secret" (the classic
key-confusion forgery), finds no key and is refused.

Keys come from a shared secret, a PEM file, and/or a JWKS URL. The JWKS is fetched on first
use and cached; a token whose ``kid`` the cache does not know triggers a refetch (that is how
an issuer's key rotation reaches us), at most once per ``authentication.jwt.jwks.refresh.ms``
so that a flood of tokens with made-up ``kid`` values cannot turn the gateway into a
hammer on the issuer. Concurrent requests share one fetch; a fetch is bounded in time and size.

Every refusal is a 401 (40101) with ``WWW-Authenticate: Bearer realm=..., error="invalid_token"``
(RFC 6750). An issuer whose keys cannot be fetched while we have none is not the client's
fault: that is a retriable 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import orjson
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from ..config import Config, ConfigError
from ..errors import GatewayError
from .principal import Principal

log = logging.getLogger(__name__)

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
# A JWKS is a handful of keys; anything much larger is not one (or is an attack on memory).
JWKS_MAX_BYTES = 1 << 20
JWKS_TIMEOUT_S = 5.0
# A set this many refresh intervals old is refetched even if every kid is known, so a key the
# issuer revoked stops verifying tokens within hours, not at the next restart.
JWKS_MAX_AGE_REFRESHES = 120
# With no keys at all (first fetch failed), retry this often at most: every request is waiting.
_RETRY_EMPTY_S = 1.0

Method = Callable[[web.Request], Awaitable[Principal | None]]


@dataclass(frozen=True, slots=True)
class VerifyingKey:
    kid: str | None
    key: Any  # a cryptography public key, or the HMAC secret's bytes
    algorithms: frozenset[str]


def algorithms_for(key: Any) -> frozenset[str]:
    """The algorithms a public key can honestly verify (empty: not a signing key we take)."""
    if isinstance(key, rsa.RSAPublicKey):
        return RSA_ALGORITHMS
    if isinstance(key, ec.EllipticCurvePublicKey):
        alg = _EC_ALGORITHMS.get(key.curve.name)
        return frozenset({alg}) if alg else frozenset()
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return frozenset({"EdDSA"})
    return frozenset()


def load_public_key_file(path: str) -> VerifyingKey:
    """A PEM public key or certificate; a bad file stops start-up naming the key."""
    name = "authentication.jwt.public.key.file"
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read {path}: {exc.strerror}") from exc
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            key: Any = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = load_pem_public_key(data)
    except ValueError as exc:
        raise ConfigError(f"{name}: {path} is not a PEM public key or certificate") from exc
    algorithms = algorithms_for(key)
    if not algorithms:
        raise ConfigError(f"{name}: {path} holds a key type tokens cannot be verified with")
    return VerifyingKey(None, key, algorithms)


def parse_jwks(doc: Any) -> list[VerifyingKey]:
    """The signature keys of a JWKS document; keys we cannot or must not use are skipped.

    Symmetric (``oct``) keys are never taken from a URL: a secret published there is no
    secret, and accepting one would let anyone mint HS256 tokens.
    """
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise ValueError("not a JWKS document (no 'keys' list)")
    out: list[VerifyingKey] = []
    for jwk in doc["keys"]:
        if not isinstance(jwk, dict) or jwk.get("kty") == "oct" or jwk.get("use", "sig") != "sig":
            continue
        try:
            key = jwt.PyJWK(jwk).key
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            continue
        algorithms = algorithms_for(key)
        alg = jwk.get("alg")
        if isinstance(alg, str):
            algorithms = algorithms & {alg}
        kid = jwk.get("kid")
        if algorithms:
            out.append(VerifyingKey(kid if isinstance(kid, str) else None, key, algorithms))
    return out


class KeysUnavailable(Exception):
    """The JWKS cannot be fetched and no earlier copy is at hand."""


class JwksCache:
    """The issuer's keys, fetched on demand (see the module docstring for when)."""

    def __init__(self, url: str, refresh_s: float, *, timeout_s: float = JWKS_TIMEOUT_S) -> None:
        self.url = url
        self._refresh_s = refresh_s
        self._timeout_s = timeout_s
        self._keys: list[VerifyingKey] | None = None
        self._fetched_at = -math.inf
        self._attempted_at = -math.inf
        self._fetch: asyncio.Task[None] | None = None
        self._error = ""
        self.fetches = 0  # successful fetches (tests and logs read it)

    async def keys(self, kid: str | None) -> list[VerifyingKey]:
        now = time.monotonic()
        keys = self._keys
        stale = now - self._fetched_at > self._refresh_s * JWKS_MAX_AGE_REFRESHES
        unknown = kid is not None and keys is not None and all(k.kid != kid for k in keys)
        if keys is None or stale or unknown:
            gap = self._refresh_s if keys is not None else min(self._refresh_s, _RETRY_EMPTY_S)
            if self._fetch is not None or now - self._attempted_at >= gap:
                await self._refetch()
        if self._keys is None:
            raise KeysUnavailable(self._error or "not fetched yet")
        return self._keys

    async def _refetch(self) -> None:
        if self._fetch is None:
            self._attempted_at = time.monotonic()
            self._fetch = asyncio.create_task(self._fetch_once())
            self._fetch.add_done_callback(self._fetched)
        # Shielded: one client hanging up must not cancel the fetch the others wait for.
        with contextlib.suppress(Exception):
            await asyncio.shield(self._fetch)

    def _fetched(self, task: asyncio.Task[None]) -> None:
        self._fetch = None
        if not task.cancelled() and task.exception() is not None:
            self._error = str(task.exception())
            log.warning("cannot fetch JWKS from %s: %s", self.url, self._error)

    async def _fetch_once(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self._timeout_s)
        # A session per fetch: fetches are minutes apart, and nothing needs stopping at exit.
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(self.url, headers={"Accept": "application/json"}) as resp,
        ):
            if resp.status != 200:
                raise ValueError(f"HTTP {resp.status}")
            body = await resp.content.read(JWKS_MAX_BYTES + 1)
            if len(body) > JWKS_MAX_BYTES:
                raise ValueError(f"larger than {JWKS_MAX_BYTES} bytes")
        try:
            keys = parse_jwks(orjson.loads(body))
        except orjson.JSONDecodeError as exc:
            raise ValueError("not JSON") from exc
        self._keys = keys
        self._fetched_at = time.monotonic()
        self._error = ""
        self.fetches += 1
        log.info("JWKS from %s: %d signature key(s)", self.url, len(keys))


def _claim(claims: Mapping[str, Any], path: str) -> Any:
    """``claims[path]``, else walk ``a.b.c`` into nested objects (Keycloak's
    ``realm_access.roles``)."""
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _groups(value: Any) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, Iterable) and not isinstance(value, Mapping):
        return frozenset(g for g in value if isinstance(g, str) and g)
    return frozenset()


class BearerTokens:
    """Verifies bearer tokens against the configured keys and claims."""

    def __init__(self, config: Config) -> None:
        self.realm = config.authentication_realm
        secret = config.authentication_jwt_secret
        self._secret = VerifyingKey(None, secret.encode(), HMAC_ALGORITHMS) if secret else None
        self._static = (
            [load_public_key_file(config.authentication_jwt_public_key_file)]
            if config.authentication_jwt_public_key_file
            else []
        )
        self.jwks = (
            JwksCache(
                config.authentication_jwt_jwks_url, config.authentication_jwt_jwks_refresh_ms / 1000
            )
            if config.authentication_jwt_jwks_url
            else None
        )
        self._issuer = config.authentication_jwt_issuer or None
        self._audience = list(config.authentication_jwt_audience) or None
        self._principal_claim = config.authentication_jwt_principal_claim
        self._groups_claim = config.authentication_jwt_groups_claim
        self._leeway = config.authentication_jwt_clock_skew_ms / 1000

    def invalid(self, description: str) -> GatewayError:
        # The description goes into a quoted header parameter: keep it to plain characters.
        safe = "".join(c for c in description if c.isprintable() and c not in '"\\')
        challenge = (
            f'Bearer realm="{self.realm}", error="invalid_token", error_description="{safe}"'
        )
        return GatewayError(
            401,
            40101,
            f"Invalid bearer token: {description}",
            headers={"WWW-Authenticate": challenge},
        )

    async def authenticate(self, request: web.Request) -> Principal | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        return await self.verify(token.strip())

    async def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise self.invalid("malformed token") from None
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str):
            raise self.invalid("no algorithm")
        keys = await self._candidates(alg, kid if isinstance(kid, str) else None)
        if not keys:
            raise self.invalid(
                f"no key accepts algorithm {alg[:20]}" + (" and this kid" if kid else "")
            )
        for key in keys:
            try:
                claims = jwt.decode(
                    token,
                    key.key,
                    algorithms=[alg],
                    audience=self._audience,
                    issuer=self._issuer,
                    leeway=self._leeway,
                    options={
                        "require": ["exp"],
                        "verify_aud": self._audience is not None,
                        "verify_iss": self._issuer is not None,
                    },
                )
            except (jwt.InvalidSignatureError, jwt.InvalidKeyError):
                continue  # another key of the set may be the one (tokens without a kid)
            except jwt.ExpiredSignatureError:
                raise self.invalid("token expired") from None
            except jwt.ImmatureSignatureError:
                raise self.invalid("token not valid yet") from None
            except jwt.InvalidAudienceError:
                raise self.invalid("wrong audience") from None
            except jwt.InvalidIssuerError:
                raise self.invalid("wrong issuer") from None
            except jwt.MissingRequiredClaimError as exc:
                raise self.invalid(f"no {exc.claim} claim") from None
            except jwt.PyJWTError:
                raise self.invalid("malformed token") from None
            return self._principal(claims, token)
        raise self.invalid("signature does not verify")

    async def _candidates(self, alg: str, kid: str | None) -> list[VerifyingKey]:
        if alg in HMAC_ALGORITHMS:
            return [self._secret] if self._secret is not None else []
        keys = [k for k in self._static if alg in k.algorithms]
        if self.jwks is not None:
            try:
                published = await self.jwks.keys(kid)
            except KeysUnavailable as exc:
                if keys:
                    return keys
                raise GatewayError(
                    503,
                    503,
                    f"The token issuer's keys cannot be fetched ({exc}); retry shortly.",
                    retry_after=1,
                ) from None
            keys += [k for k in published if alg in k.algorithms and (kid is None or k.kid == kid)]
        return keys

    def _principal(self, claims: Mapping[str, Any], token: str) -> Principal:
        name = _claim(claims, self._principal_claim)
        if not isinstance(name, str) or not name:
            raise self.invalid(f"no {self._principal_claim} claim naming the caller")
        groups = _groups(_claim(claims, self._groups_claim)) if self._groups_claim else frozenset()
        return Principal(name, groups, "bearer", secret=token)


def bearer_method(config: Config) -> Method:
    """The ``BEARER`` method for :class:`~gateway.security.authn.Authenticator`."""
    return BearerTokens(config).authenticate
