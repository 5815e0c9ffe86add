"""CORS and the live topic page on the whole in-process gateway, with real Kafka: the real
middleware order (preflights answered before authentication, a 401 that a page can read) and
a topic stream carrying the headers (sent from inside its handler).

The policy and the middleware alone are in tests/unit/test_cors.py; a real browser using the
page, and a page on another origin, are in tests/integration/test_browser_stream.py.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import bcrypt
import pytest

PAGE = "https://app.example.com"
OTHER = "https://evil.example.net"
BINARY = "application/vnd.kafka.binary.v2+json"


def basic(name: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()


@pytest.fixture(scope="module")
def users_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cors") / "users.txt"
    hashed = bcrypt.hashpw(b"alice-secret", bcrypt.gensalt(rounds=4)).decode()
    path.write_text(f"alice:{hashed}\n")
    return path


def cors_headers(headers: object) -> dict[str, str]:
    return {k: v for k, v in dict(headers).items() if k.lower().startswith("access-control")}  # type: ignore[call-overload]


async def test_a_page_on_an_allowed_origin_with_basic_authentication(
    make_gateway, users_file, new_topic
):
    gateway = await make_gateway(
        {
            "authentication.method": "BASIC",
            "authentication.basic.users.file": str(users_file),
            "access.control.allow.origin": f"{PAGE}, http://localhost:3000",
        }
    )
    topic = await new_topic(partitions=1)
    alice = {"Authorization": basic("alice", "alice-secret")}
    asks = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }

    # The preflight carries no credentials, and is answered before authentication.
    async with gateway.options(f"/topics/{topic}", headers={"Origin": PAGE, **asks}) as resp:
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Origin"] == PAGE
        assert resp.headers["Access-Control-Allow-Credentials"] == "true"
        allowed = resp.headers["Access-Control-Allow-Headers"].split(", ")
        assert {"authorization", "content-type", "last-event-id"} <= set(allowed)
        assert "POST" in resp.headers["Access-Control-Allow-Methods"].split(", ")
    async with gateway.options(f"/topics/{topic}", headers={"Origin": OTHER, **asks}) as resp:
        assert resp.status == 403
        assert await resp.json() == {
            "error_code": 403,
            "message": "Origin not allowed (access.control.allow.origin)",
        }
        assert cors_headers(resp.headers) == {}

    body = b'{"records":[{"value":"YQ=="}]}'
    produce = {"Origin": PAGE, "Content-Type": BINARY}
    # A 401 the page can read: the CORS headers, and the challenge exposed to its script.
    async with gateway.post(f"/topics/{topic}", data=body, headers=produce) as resp:
        assert resp.status == 401
        assert (await resp.json())["error_code"] == 40101
        assert resp.headers["Access-Control-Allow-Origin"] == PAGE
        assert resp.headers["Access-Control-Allow-Credentials"] == "true"
        assert "WWW-Authenticate" in resp.headers["Access-Control-Expose-Headers"]
        assert resp.headers["Vary"] == "Origin"
    async with gateway.post(f"/topics/{topic}", data=body, headers={**produce, **alice}) as resp:
        assert resp.status == 200
        assert (await resp.json())["offsets"][0]["offset"] == 0
        assert resp.headers["Access-Control-Allow-Origin"] == PAGE
    async with gateway.get("/topics/no-such-topic", headers={"Origin": PAGE, **alice}) as resp:
        assert resp.status == 404 and "error_code" in await resp.json()
        assert resp.headers["Access-Control-Allow-Origin"] == PAGE
    # Another origin's request is served, but without a header that would let its page read it.
    async with gateway.get(f"/topics/{topic}", headers={"Origin": OTHER, **alice}) as resp:
        assert resp.status == 200
        assert cors_headers(resp.headers) == {}

    # A stream: its headers leave from inside the handler, and carry CORS all the same.
    events = {"Origin": PAGE, "Accept": "text/event-stream", **alice}
    async with gateway.get(
        f"/topics/{topic}/events", params={"from": "beginning"}, headers=events
    ) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        assert resp.headers["Access-Control-Allow-Origin"] == PAGE
        assert resp.headers["Access-Control-Allow-Credentials"] == "true"
        # The record produced above arrives: this is a working stream, not only its headers.
        async with asyncio.timeout(15):
            seen = b""
            while b"event: record" not in seen:
                seen += await resp.content.readany()


async def test_off_leaves_options_requests_as_they_were(make_gateway, users_file, new_topic):
    topic = await new_topic(partitions=1)
    asks = {"Origin": PAGE, "Access-Control-Request-Method": "POST"}
    plain = await make_gateway()
    async with plain.options(f"/topics/{topic}", headers=asks) as resp:
        assert (resp.status, (await resp.json())["error_code"]) == (405, 405)
        assert cors_headers(resp.headers) == {}
        assert "Vary" not in resp.headers
    secured = await make_gateway(
        {"authentication.method": "BASIC", "authentication.basic.users.file": str(users_file)}
    )
    async with secured.options(f"/topics/{topic}", headers=asks) as resp:
        assert (resp.status, (await resp.json())["error_code"]) == (401, 40101)
        assert cors_headers(resp.headers) == {}


async def test_any_origin(make_gateway, new_topic):
    gateway = await make_gateway({"access.control.allow.origin": "*"})
    topic = await new_topic(partitions=1)
    async with gateway.get(f"/topics/{topic}", headers={"Origin": OTHER}) as resp:
        assert resp.status == 200
        assert cors_headers(resp.headers) == {
            "Access-Control-Allow-Origin": "*",
            "Access-Control-Expose-Headers": "Retry-After, WWW-Authenticate",
        }
    asks = {"Origin": OTHER, "Access-Control-Request-Method": "GET"}
    async with gateway.options(f"/topics/{topic}/events", headers=asks) as resp:
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert "Access-Control-Allow-Credentials" not in resp.headers


async def test_the_page_is_public_and_only_there_when_enabled(make_gateway, users_file):
    gateway = await make_gateway(
        {
            "ui.enabled": "true",
            "authentication.method": "BASIC",
            "authentication.basic.users.file": str(users_file),
        }
    )
    async with gateway.get("/ui/stream", params={"topic": "t"}) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/html" and resp.charset == "utf-8"
        page = await resp.text()
        assert "new EventSource(" in page and "window.streamState" in page
        # Self-contained: nothing loaded from anywhere else.
        assert "<script src" not in page and '<link rel="stylesheet"' not in page
        csp = resp.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "connect-src 'self'" in csp
        assert "script-src 'sha256-" in csp and "unsafe-inline" not in csp
    # What the page opens is authenticated as any read.
    async with gateway.get("/topics/t/events", headers={"Accept": "text/event-stream"}) as resp:
        assert (resp.status, (await resp.json())["error_code"]) == (401, 40101)

    default = await make_gateway()
    async with default.get("/ui/stream") as resp:
        assert (resp.status, (await resp.json())["error_code"]) == (404, 404)
