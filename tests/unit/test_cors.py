"""CORS: the policy read from ``access.control.allow.*``, and the middleware and response hook
on a small real aiohttp app (no Kafka): headers on answers, errors and streams, preflights.

The same behaviour on the whole gateway (authentication, the real middleware order) is in
tests/integration/test_cors.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import error_middleware
from gateway.config import ConfigError, from_properties
from gateway.context import CONFIG
from gateway.errors import GatewayError
from gateway.security.cors import EXPOSED_HEADERS, cors_middleware, install_cors, policy

PAGE = "https://app.example.com"
OTHER = "https://evil.example.net"


def cors(**props: str) -> dict[str, str]:
    return {f"access.control.allow.{k}": v for k, v in props.items()}


# --- the policy -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["", " ", ",", " , "])
def test_empty_is_off(value: str) -> None:
    assert policy(from_properties(cors(origin=value))) is None


def test_any_origin() -> None:
    p = policy(from_properties(cors(origin="*")))
    assert p is not None and p.any_origin
    assert p.response_headers("http://anything:1234") == {
        "Access-Control-Allow-Origin": "*",
        "Access-Control-Expose-Headers": EXPOSED_HEADERS,
    }
    assert p.response_headers(None) == {}


def test_listed_origins_are_matched_as_browsers_serialize_them() -> None:
    p = policy(
        from_properties(
            cors(origin="https://App.Example.com:443/, http://localhost:3000,http://[::1]:80")
        )
    )
    assert p is not None and not p.any_origin
    assert p.origins == {PAGE, "http://localhost:3000", "http://[::1]"}
    assert p.response_headers(PAGE) == {
        "Access-Control-Allow-Origin": PAGE,
        "Access-Control-Allow-Credentials": "true",
        "Access-Control-Expose-Headers": EXPOSED_HEADERS,
    }
    for refused in (OTHER, "http://app.example.com", "https://app.example.com:8443", "null"):
        assert p.response_headers(refused) == {}, refused


def test_preflight_headers_carry_the_configured_lists() -> None:
    p = policy(from_properties(cors(origin=PAGE, methods="GET, POST", headers="accept ,x-a")))
    assert p is not None
    assert p.preflight_headers(PAGE) == {
        "Access-Control-Allow-Origin": PAGE,
        "Access-Control-Allow-Methods": "GET, POST",
        "Access-Control-Allow-Headers": "accept, x-a",
        "Access-Control-Max-Age": "600",
        "Access-Control-Allow-Credentials": "true",
    }
    star = policy(from_properties(cors(origin="*")))
    assert star is not None
    assert "Access-Control-Allow-Credentials" not in star.preflight_headers(PAGE)


@pytest.mark.parametrize(
    "entry",
    [
        "app.example.com",  # no scheme
        "https://app.example.com/path",
        "null",
        "ftp://files.example.com",
        "https://user:pw@app.example.com",
        "https://app.example.com:99999",
        "https://app.example.com?x=1",
    ],
)
def test_an_entry_that_is_not_an_origin_stops_start_up(entry: str) -> None:
    config = from_properties(cors(origin=f"{PAGE},{entry}"))
    with pytest.raises(ConfigError, match=r"access\.control\.allow\.origin"):
        policy(config)
    with pytest.raises(ConfigError):
        install_cors(web.Application(), config)


# --- on a real (small) application ------------------------------------------------------------


async def _ok(_: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def _too_many(_: web.Request) -> web.Response:
    raise GatewayError(429, 42905, "too many", retry_after=1)


async def _stream(request: web.Request) -> web.StreamResponse:
    """Headers sent from inside the handler, as every record stream does."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(b"data: 1\n\n")
    await response.write_eof()
    return response


@pytest.fixture
async def make_client() -> AsyncIterator[object]:
    clients: list[TestClient[web.Request, web.Application]] = []

    async def make(props: Mapping[str, str]) -> TestClient[web.Request, web.Application]:
        config = from_properties(dict(props))
        app = web.Application(middlewares=[cors_middleware, error_middleware])
        app[CONFIG] = config
        install_cors(app, config)
        app.router.add_get("/ok", _ok)
        app.router.add_get("/limited", _too_many)
        app.router.add_get("/events", _stream)
        client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


async def test_allowed_origin_gets_the_headers_on_answers_errors_and_streams(make_client) -> None:
    client = await make_client(cors(origin=f"{PAGE},http://localhost:3000"))
    for path, status in [("/ok", 200), ("/limited", 429), ("/events", 200), ("/nowhere", 404)]:
        async with client.get(path, headers={"Origin": PAGE}) as resp:
            await resp.read()
            assert resp.status == status, path
            assert resp.headers["Access-Control-Allow-Origin"] == PAGE, path
            assert resp.headers["Access-Control-Allow-Credentials"] == "true", path
            assert resp.headers["Access-Control-Expose-Headers"] == EXPOSED_HEADERS, path
            assert resp.headers.getall("Vary") == ["Origin"], path
    async with client.get("/limited", headers={"Origin": PAGE}) as resp:
        assert resp.headers["Retry-After"] == "1"
        assert (await resp.json())["error_code"] == 42905


async def test_disallowed_or_absent_origin_gets_no_cors_header_but_vary(make_client) -> None:
    client = await make_client(cors(origin=PAGE))
    for headers in ({"Origin": OTHER}, {}):
        for path in ("/ok", "/events", "/limited"):
            async with client.get(path, headers=headers) as resp:
                await resp.read()
                assert not [h for h in resp.headers if h.lower().startswith("access-control")]
                # A cache must not serve this answer to an allowed origin.
                assert resp.headers.getall("Vary") == ["Origin"]


async def test_any_origin_sends_a_star_without_credentials_or_vary(make_client) -> None:
    client = await make_client(cors(origin="*"))
    for path in ("/ok", "/events"):
        async with client.get(path, headers={"Origin": OTHER}) as resp:
            await resp.read()
            assert resp.headers["Access-Control-Allow-Origin"] == "*"
            assert "Access-Control-Allow-Credentials" not in resp.headers
            assert "Vary" not in resp.headers


async def test_preflight(make_client) -> None:
    client = await make_client(cors(origin=PAGE))
    asks = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    async with client.options("/ok", headers={"Origin": PAGE, **asks}) as resp:
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Origin"] == PAGE
        assert (
            resp.headers["Access-Control-Allow-Methods"] == "GET, POST, PUT, DELETE, HEAD, OPTIONS"
        )
        assert "content-type" in resp.headers["Access-Control-Allow-Headers"].split(", ")
        assert "last-event-id" in resp.headers["Access-Control-Allow-Headers"].split(", ")
        assert resp.headers["Access-Control-Max-Age"] == "600"
        assert resp.headers["Vary"] == "Origin"
    async with client.options("/ok", headers={"Origin": OTHER, **asks}) as resp:
        assert resp.status == 403
        assert (await resp.json())["error_code"] == 403
        assert "Access-Control-Allow-Origin" not in resp.headers
    # An OPTIONS that is no preflight is routed as before (here: no OPTIONS route).
    async with client.options("/ok", headers={"Origin": PAGE}) as resp:
        assert resp.status == 405
        assert (await resp.json())["error_code"] == 405
        assert resp.headers["Access-Control-Allow-Origin"] == PAGE


async def test_off_changes_nothing(make_client) -> None:
    client = await make_client({})
    asks = {"Origin": PAGE, "Access-Control-Request-Method": "GET"}
    async with client.options("/ok", headers=asks) as resp:
        assert resp.status == 405
    for path in ("/ok", "/events", "/limited"):
        async with client.get(path, headers={"Origin": PAGE}) as resp:
            await resp.read()
            assert not [h for h in resp.headers if h.lower().startswith("access-control")]
            assert "Vary" not in resp.headers
