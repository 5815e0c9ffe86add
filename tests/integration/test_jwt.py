"""Bearer JWT authentication on the in-process app with real Kafka.

Tokens are minted here with PyJWT (HS256, RS256, ES256); keys come from a shared secret, a PEM
file, or a JWKS served by a tiny aiohttp app in the test, whose key set the tests rotate.
Every refusal must be 401/40101 with an RFC 6750 ``invalid_token`` challenge, and a refused
produce must write nothing.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.harness.ports import free_port

SECRET = "a-shared-secret-of-decent-length-0123456789"
ISSUER = "https://issuer.test"
AUDIENCE = "event-gateway"

WhoAmI = Callable[[Mapping[str, str]], Awaitable[TestClient[web.Request, web.Application]]]


def _pem_public(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def keys_dir(tmp_path_factory: pytest.TempPathFactory, rsa_key: rsa.RSAPrivateKey) -> Path:
    d = tmp_path_factory.mktemp("jwt")
    (d / "rsa.pem").write_bytes(_pem_public(rsa_key))
    return d


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": "alice",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 300,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge_hs256(payload: dict[str, Any], secret: bytes) -> str:
    """An HS256 token keyed with arbitrary bytes (PyJWT itself refuses a PEM as HMAC key)."""
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(payload).encode())
    sig = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


@pytest.fixture
async def whoami(kafka_bootstrap: str) -> AsyncIterator[WhoAmI]:
    """A gateway with the given properties plus a route echoing the request's principal."""
    from gateway.app import build_app
    from gateway.config import from_properties
    from gateway.security.principal import principal_of

    async def echo(request: web.Request) -> web.Response:
        p = principal_of(request)
        return web.json_response(
            {"name": p.name, "groups": sorted(p.groups), "method": p.method, "secret": p.secret}
        )

    clients: list[TestClient[web.Request, web.Application]] = []

    async def make(props: Mapping[str, str]) -> TestClient[web.Request, web.Application]:
        cfg = from_properties(
            {"bootstrap.servers": kafka_bootstrap, "kafka.timeout.ms": "5000", **props}
        )
        app = build_app(cfg)
        app.router.add_get("/test/whoami", echo)
        client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in reversed(clients):
        await client.close()


async def ask(
    client: TestClient[web.Request, web.Application], token: str | None
) -> tuple[int, dict[str, Any], str]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with client.get("/test/whoami", headers=headers) as resp:
        return (
            resp.status,
            await resp.json(content_type=None),
            resp.headers.get("WWW-Authenticate", ""),
        )


def assert_invalid(got: tuple[int, dict[str, Any], str], what: str) -> None:
    status, body, challenge = got
    assert (status, body.get("error_code")) == (401, 40101), (what, body)
    assert challenge.startswith('Bearer realm="event-gateway", error="invalid_token"'), (
        what,
        challenge,
    )


async def test_hs256_tokens_and_their_claims(whoami: WhoAmI) -> None:
    gw = await whoami(
        {
            "authentication.method": "BEARER",
            "authentication.jwt.secret": SECRET,
            "authentication.jwt.issuer": ISSUER,
            "authentication.jwt.audience": f"other,{AUDIENCE}",
            "authentication.jwt.groups.claim": "realm_access.roles",
            "authentication.jwt.clock.skew.ms": "0",
        }
    )
    token = jwt.encode(claims(realm_access={"roles": ["ops", "dev"]}), SECRET, "HS256")
    status, body, _ = await ask(gw, token)
    assert status == 200, body
    assert body == {"name": "alice", "groups": ["dev", "ops"], "method": "bearer", "secret": token}

    now = int(time.time())
    bad = {
        "expired": jwt.encode(claims(exp=now - 5, iat=now - 600), SECRET, "HS256"),
        "not valid yet": jwt.encode(claims(nbf=now + 600), SECRET, "HS256"),
        "wrong audience": jwt.encode(claims(aud="someone-else"), SECRET, "HS256"),
        "no audience": jwt.encode(claims(aud=None), SECRET, "HS256"),
        "wrong issuer": jwt.encode(claims(iss="https://evil.test"), SECRET, "HS256"),
        "wrong secret": jwt.encode(claims(), SECRET + "x", "HS256"),
        "no expiry": jwt.encode(claims(exp=None), SECRET, "HS256"),
        "no subject": jwt.encode(claims(sub=None), SECRET, "HS256"),
        "alg none": jwt.encode(claims(), None, "none"),
        "garbage": "not.a.token",
        "empty": "",
        "tampered": token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"),
    }
    for what, t in bad.items():
        assert_invalid(await ask(gw, t), what)
    status, body, challenge = await ask(gw, None)
    assert (status, body["error_code"], challenge) == (401, 40101, 'Bearer realm="event-gateway"')


async def test_public_key_file_rs256_and_key_confusion(
    whoami: WhoAmI, keys_dir: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    gw = await whoami(
        {
            "authentication.method": "BEARER",
            "authentication.jwt.public.key.file": str(keys_dir / "rsa.pem"),
            "authentication.jwt.principal.claim": "preferred_username",
        }
    )
    token = jwt.encode(claims(preferred_username="svc-orders"), rsa_key, "RS256")
    status, body, _ = await ask(gw, token)
    assert (status, body["name"]) == (200, "svc-orders"), body
    ps = jwt.encode(claims(preferred_username="svc-orders"), rsa_key, "PS256")
    assert (await ask(gw, ps))[0] == 200

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert_invalid(
        await ask(gw, jwt.encode(claims(preferred_username="x"), other, "RS256")), "wrong key"
    )
    # The classic forgery: HS256 "signed" with the public key, hoping it is used as a secret.
    public_pem = (keys_dir / "rsa.pem").read_bytes()
    forged = forge_hs256(claims(preferred_username="svc-orders"), public_pem)
    assert_invalid(await ask(gw, forged), "HS256 with the public key")
    # An ES256 token cannot be checked with an RSA key at all.
    es = ec.generate_private_key(ec.SECP256R1())
    assert_invalid(await ask(gw, jwt.encode(claims(preferred_username="x"), es, "ES256")), "ES256")


async def test_es256_key_file_only_accepts_its_curve(whoami: WhoAmI, tmp_path: Path) -> None:
    es = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "ec.pem").write_bytes(_pem_public(es))
    gw = await whoami(
        {
            "authentication.method": "BEARER",
            "authentication.jwt.public.key.file": str(tmp_path / "ec.pem"),
            "authentication.jwt.secret": SECRET,  # HS tokens use the secret, never the EC key
        }
    )
    assert (await ask(gw, jwt.encode(claims(), es, "ES256")))[0] == 200
    assert (await ask(gw, jwt.encode(claims(sub="bob"), SECRET, "HS256")))[1]["name"] == "bob"
    assert_invalid(await ask(gw, forge_hs256(claims(), _pem_public(es))), "HS256 with EC key")


class Issuer:
    """A JWKS endpoint whose key set a test changes; counts its fetches."""

    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.fetches = 0
        self.status = 200
        self.delay = 0.0
        app = web.Application()
        app.router.add_get("/jwks", self._jwks)
        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/jwks"

    def add(self, kid: str) -> rsa.RSAPrivateKey:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return self.keys[kid]

    def token(self, kid: str, **overrides: Any) -> str:
        return jwt.encode(claims(**overrides), self.keys[kid], "RS256", headers={"kid": kid})

    async def _jwks(self, _: web.Request) -> web.Response:
        self.fetches += 1
        await asyncio.sleep(self.delay)
        jwks = []
        for kid, key in self.keys.items():
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
            jwks.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        # An HMAC key in a public set must never be used (anyone could mint tokens with it).
        jwks.append(
            {"kty": "oct", "kid": "shared", "k": b64(b"published-secret-of-thirty-two-bytes!")}
        )
        return web.json_response({"keys": jwks}, status=self.status)


@pytest.fixture
async def issuer() -> AsyncIterator[Issuer]:
    iss = Issuer()
    runner = web.AppRunner(iss.app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", iss.port).start()
    yield iss
    await runner.cleanup()


async def test_jwks_fetch_rotation_and_rate_limit(whoami: WhoAmI, issuer: Issuer) -> None:
    issuer.add("k1")
    gw = await whoami(
        {
            "authentication.method": "BEARER",
            "authentication.jwt.jwks.url": issuer.url,
            "authentication.jwt.jwks.refresh.ms": "1000",
            "authentication.jwt.audience": AUDIENCE,
        }
    )
    assert issuer.fetches == 0  # fetched on first use, not at start-up
    assert (await ask(gw, issuer.token("k1")))[0] == 200
    assert (await ask(gw, issuer.token("k1", sub="bob")))[1]["name"] == "bob"
    assert issuer.fetches == 1  # cached

    # Rotation: the issuer starts signing with a new key; the gateway fetches it on first sight.
    await asyncio.sleep(1.1)
    issuer.add("k2")
    issuer.delay = 0.2
    results = await asyncio.gather(*(ask(gw, issuer.token("k2")) for _ in range(10)))
    assert [r[0] for r in results] == [200] * 10
    assert issuer.fetches == 2  # ten requests, one fetch

    # A kid the issuer never published: one refetch at most per interval, then refused.
    forged_kid = jwt.encode(claims(), issuer.keys["k1"], "RS256", headers={"kid": "k9"})
    for _ in range(5):
        assert_invalid(await ask(gw, forged_kid), "unknown kid")
    assert issuer.fetches == 2  # inside the interval: no fetch at all
    # The published HMAC key is not a key: an HS256 token with it is refused.
    hs = jwt.encode(
        claims(), b"published-secret-of-thirty-two-bytes!", "HS256", headers={"kid": "shared"}
    )
    assert_invalid(await ask(gw, hs), "HS256 with a JWKS oct key")
    # The old key still verifies while it is published.
    assert (await ask(gw, issuer.token("k1")))[0] == 200


async def test_jwks_unreachable_is_503_not_401(whoami: WhoAmI, issuer: Issuer) -> None:
    issuer.add("k1")
    issuer.status = 500
    gw = await whoami(
        {
            "authentication.method": "BEARER",
            "authentication.jwt.jwks.url": issuer.url,
            "authentication.jwt.jwks.refresh.ms": "1000",
        }
    )
    async with gw.get(
        "/test/whoami", headers={"Authorization": f"Bearer {issuer.token('k1')}"}
    ) as resp:
        assert resp.status == 503, await resp.text()
        assert resp.headers["Retry-After"] == "1"
        assert (await resp.json())["error_code"] == 503
    issuer.status = 200
    await asyncio.sleep(1.05)  # first-fetch retries are at most a second apart
    assert (await ask(gw, issuer.token("k1")))[0] == 200


async def test_bearer_produce_and_basic_side_by_side(
    make_gateway: Any, new_topic: Any, tmp_path: Path
) -> None:
    """BEARER next to BASIC: each request uses the method its header names; a refused
    produce writes nothing."""
    from gateway.security.basic import user_line

    users = tmp_path / "users.txt"
    users.write_text(user_line("carol", "carol-pw", []) + "\n")
    gw = await make_gateway(
        {
            "authentication.method": "BASIC,BEARER",
            "authentication.basic.users.file": str(users),
            "authentication.jwt.secret": SECRET,
        }
    )
    topic = await new_topic(partitions=1)
    body = b'{"records":[{"value":"YQ=="}]}'

    async def produce(auth: str | None) -> tuple[int, dict[str, Any], str]:
        headers = {"Content-Type": "application/vnd.kafka.binary.v2+json"}
        if auth:
            headers["Authorization"] = auth
        async with gw.post(f"/topics/{topic}", data=body, headers=headers) as resp:
            return (
                resp.status,
                await resp.json(content_type=None),
                resp.headers.get("WWW-Authenticate", ""),
            )

    status, got, _ = await produce("Bearer " + jwt.encode(claims(aud=None), SECRET, "HS256"))
    assert status == 200 and got["offsets"][0]["offset"] == 0, got
    expired = jwt.encode(claims(exp=int(time.time()) - 3600), SECRET, "HS256")
    assert_invalid(await produce("Bearer " + expired), "expired produce")
    status, got, challenge = await produce(None)
    assert (status, got["error_code"]) == (401, 40101)
    assert challenge == 'Basic realm="event-gateway", Bearer realm="event-gateway"'
    basic = base64.b64encode(b"carol:carol-pw").decode()
    status, got, _ = await produce("Basic " + basic)
    assert status == 200 and got["offsets"][0]["offset"] == 1, got  # nothing written between


def test_bearer_needs_a_key() -> None:
    from gateway.config import ConfigError, from_properties

    with pytest.raises(ConfigError, match="BEARER needs"):
        from_properties({"authentication.method": "BEARER"})
