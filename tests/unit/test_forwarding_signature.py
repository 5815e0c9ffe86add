"""Signing and verifying the one hop between replicas (``gateway.forwarding``), without Kafka.

``verify`` is called on mocked requests (a real ``StreamReader`` carries the body); one test
replays a request through ``Forwarder.forward`` between two in-process aiohttp servers on the
loopback interface, so the header the sender writes is checked by the receiver's ``verify``.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any
from unittest import mock

import pytest
from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request
from yarl import URL

from gateway.errors import GatewayError
from gateway.forwarding import (
    FORWARDER,
    HEADER,
    MAX_SKEW_S,
    Forwarder,
    ForwardTo,
    forwarding,
    signature,
    verify,
)
from sessions.directory import InstanceRecord
from sessions.router import Forward

SECRET = "s3cret-cluster-key"
PATH = "/consumers/g/instances/c1/records?timeout=500&max_bytes=1000"
BODY = b'{"topics":["orders"]}'


async def request(
    method: str = "POST",
    path: str = PATH,
    body: bytes = BODY,
    header: str | None = None,
) -> web.Request:
    stream = StreamReader(mock.Mock(_reading_paused=False), 2**16)
    if body:
        stream.feed_data(body)
    stream.feed_eof()
    headers = {"Content-Type": "application/vnd.kafka.v2+json"}
    if header is not None:
        headers[HEADER] = header
    return make_mocked_request(method, path, headers=headers, payload=stream)


def signed(
    secret: str = SECRET,
    method: str = "POST",
    path: str = PATH,
    body: bytes = BODY,
    ts: str | None = None,
) -> str:
    ts = f"{time.time():.3f}" if ts is None else ts
    return f"{ts}.{signature(secret, ts, method, path, body)}"


async def refused(req: web.Request, secret: str = SECRET) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        await verify(req, secret)
    err = caught.value
    assert (err.status, err.error_code) == (403, 40301)
    assert err.message.startswith("Forwarded request refused: ")
    return err


# --- signature --------------------------------------------------------------------------------


def test_signature_is_hmac_sha256_over_ts_method_path_and_body_digest() -> None:
    ts = "1700000000.123"
    msg = f"{ts}\nPOST\n{PATH}\n{hashlib.sha256(BODY).hexdigest()}".encode()
    expected = hmac.new(SECRET.encode(), msg, hashlib.sha256).hexdigest()
    assert signature(SECRET, ts, "post", PATH, BODY) == expected
    assert len(expected) == 64 and "." not in expected
    # Every input matters.
    others = {
        signature("other", ts, "POST", PATH, BODY),
        signature(SECRET, "1700000000.124", "POST", PATH, BODY),
        signature(SECRET, ts, "GET", PATH, BODY),
        signature(SECRET, ts, "POST", PATH + "&x=1", BODY),
        signature(SECRET, ts, "POST", PATH, BODY + b" "),
    }
    assert expected not in others and len(others) == 5


# --- verify -----------------------------------------------------------------------------------


async def test_a_correctly_signed_request_verifies() -> None:
    assert await verify(await request(header=signed()), SECRET) is True


async def test_a_signed_request_without_body_verifies() -> None:
    req = await request(
        "GET",
        "/consumers/g/instances/c1/assignments",
        b"",
        signed(method="GET", path="/consumers/g/instances/c1/assignments", body=b""),
    )
    assert await verify(req, SECRET) is True


async def test_the_body_stays_readable_after_verification() -> None:
    req = await request(header=signed())
    assert await verify(req, SECRET) is True
    assert await req.read() == BODY
    assert await req.json() == {"topics": ["orders"]}


async def test_a_client_request_without_the_header_is_not_forwarded() -> None:
    assert await verify(await request(), SECRET) is False
    assert await verify(await request(), "") is False  # no secret: plain requests still served


@pytest.mark.parametrize(
    ("what", "req_kw", "secret"),
    [
        ("tampered body", {"body": b'{"topics":["payroll"]}'}, SECRET),
        ("tampered path", {"path": "/consumers/g/instances/c2/records?timeout=500"}, SECRET),
        ("tampered query", {"path": PATH.replace("500", "50000")}, SECRET),
        ("different method", {"method": "DELETE"}, SECRET),
        ("wrong secret", {}, "not-the-cluster-secret"),
    ],
)
async def test_a_changed_request_is_refused(what: str, req_kw: dict[str, Any], secret: str) -> None:
    req = await request(header=signed(), **req_kw)
    err = await refused(req, secret)
    assert "bad signature" in err.message, what


async def test_a_signature_from_another_request_is_refused() -> None:
    other = signed(path="/consumers/g/instances/c1/offsets", body=b"{}")
    assert "bad signature" in (await refused(await request(header=other))).message


async def test_a_timestamp_change_invalidates_the_signature() -> None:
    ts = f"{time.time():.3f}"
    sig = signature(SECRET, ts, "POST", PATH, BODY)
    later = f"{float(ts) + 1:.3f}"
    assert "bad signature" in (await refused(await request(header=f"{later}.{sig}"))).message


@pytest.mark.parametrize("age_s", [MAX_SKEW_S + 5, -(MAX_SKEW_S + 5), 86_400 * 365])
async def test_an_expired_or_future_timestamp_is_refused(age_s: float) -> None:
    ts = f"{time.time() - age_s:.3f}"
    err = await refused(await request(header=signed(ts=ts)))  # correctly signed, but stale
    assert "expired" in err.message


async def test_a_timestamp_just_inside_the_window_verifies() -> None:
    ts = f"{time.time() - (MAX_SKEW_S - 5):.3f}"
    assert await verify(await request(header=signed(ts=ts)), SECRET) is True


@pytest.mark.parametrize("ts", ["nan", "inf", "-inf", "1e999", "NaN"])
async def test_a_non_finite_timestamp_is_refused(ts: str) -> None:
    # Correctly signed over the garbage timestamp: only the timestamp check can refuse it.
    err = await refused(await request(header=signed(ts=ts)))
    assert "expired" in err.message


@pytest.mark.parametrize(
    "header",
    [
        "",
        "garbage",
        "abc.def",
        ".",
        "..",
        "1700000000",  # no signature part at all
        "0x10.deadbeef",
        "tomorrow.0123456789abcdef",
    ],
)
async def test_a_malformed_header_is_refused(header: str) -> None:
    await refused(await request(header=header))


@pytest.mark.parametrize("sig", ["é" * 64, "ü"], ids=["e-acute-x64", "u-umlaut"])
async def test_a_non_ascii_signature_is_refused_not_a_server_error(sig: str) -> None:
    """aiohttp hands non-ASCII header bytes over as non-ASCII text (utf-8, surrogateescape).

    ``hmac.compare_digest`` raises ``TypeError`` on non-ASCII ``str``: that must still be a
    403, not an unhandled error (a 500 and a logged traceback from the error middleware). Any
    client can send such a header: the timestamp check passes with a current timestamp.
    """
    ts = f"{time.time():.3f}"
    await refused(await request(header=f"{ts}.{sig}"))


async def test_the_timestamp_has_a_dot_split_at_the_last_one() -> None:
    """Regression: "<ts>.<sig>" with ts = "1700000000.123"; splitting at the first dot made
    every genuine forwarded request fail."""
    header = signed()
    ts, sig = header.rsplit(".", 1)
    assert ts.count(".") == 1 and len(sig) == 64
    assert await verify(await request(header=header), SECRET) is True
    # An integral timestamp (no dot in it) is a valid header too.
    assert await verify(await request(header=signed(ts=str(int(time.time())))), SECRET)


async def test_a_replica_without_a_secret_refuses_forwarded_requests() -> None:
    err = await refused(await request(header=signed()), "")
    assert "cluster.secret" in err.message
    # Not even one "signed" with the empty secret.
    err = await refused(await request(header=signed(secret="")), "")
    assert "cluster.secret" in err.message


# --- budget -----------------------------------------------------------------------------------


def route(**spec: Any) -> Forward:
    record = InstanceRecord("g", "c1", "b:2:abc", 3, {"group": "g", "name": "c1", **spec})
    return Forward("http://b:2", record)


FWD = Forwarder(SECRET, default_wait_ms=1000, kafka_timeout_ms=10_000)


@pytest.mark.parametrize(
    ("spec", "wait_s"),
    [
        ({}, 1.0),  # no instance timeout: the default wait
        ({"request_timeout_ms": None}, 1.0),
        ({"request_timeout_ms": 500}, 1.0),  # shorter than the default: the default
        ({"request_timeout_ms": 30_000}, 30.0),  # the instance's own, longer wait
    ],
)
def test_budget_covers_the_longest_wait_plus_a_kafka_call(
    spec: dict[str, Any], wait_s: float
) -> None:
    budget = FWD.budget_s(route(**spec))
    assert budget >= wait_s + 10.0
    assert budget <= wait_s + 10.0 + 30  # a margin, not an unbounded wait


def test_budget_grows_with_the_instance_wait_and_the_kafka_timeout() -> None:
    short = FWD.budget_s(route(request_timeout_ms=2_000))
    long = FWD.budget_s(route(request_timeout_ms=20_000))
    assert long - short == pytest.approx(18.0)
    slower = Forwarder(SECRET, default_wait_ms=1000, kafka_timeout_ms=40_000)
    assert slower.budget_s(route()) - FWD.budget_s(route()) == pytest.approx(30.0)


# --- the hop itself -------------------------------------------------------------------------------


async def hop(paths: list[str], body: bytes = BODY) -> list[dict[str, Any]]:
    """Send each path to a front replica that forwards it to an owner replica (loopback only).

    Returns, per request, what the front saw, what the owner saw and what the client got.
    """
    seen: list[dict[str, Any]] = []

    async def owner_handler(req: web.Request) -> web.Response:
        try:
            forwarded: object = await verify(req, SECRET)
        except GatewayError as exc:
            forwarded = exc
        seen[-1].update(owner=req.path_qs, forwarded=forwarded, body=await req.read())
        return web.json_response({"ok": True}, status=207, headers={"Retry-After": "3"})

    owner = web.Application()
    owner.router.add_route("*", "/{tail:.*}", owner_handler)
    async with TestServer(owner) as owner_server:
        owner_url = str(owner_server.make_url("/"))

        @forwarding
        async def front_handler(req: web.Request) -> web.Response:
            seen[-1]["front"] = req.path_qs
            raise ForwardTo(Forward(owner_url, route().record))

        front = web.Application()
        front.router.add_route("*", "/{tail:.*}", front_handler)
        forwarder = Forwarder(SECRET, default_wait_ms=1000, kafka_timeout_ms=1000)
        front[FORWARDER] = forwarder
        await forwarder.start()
        try:
            async with TestClient(TestServer(front)) as client:
                for path in paths:
                    seen.append({})
                    resp = await client.post(
                        URL(path, encoded=True),
                        data=body,
                        headers={"Content-Type": "application/vnd.kafka.v2+json"},
                    )
                    seen[-1].update(
                        status=resp.status,
                        retry_after=resp.headers.get("Retry-After"),
                        answer=await resp.json(),
                    )
        finally:
            await forwarder.stop()
    return seen


async def test_a_forwarded_request_verifies_on_the_owner() -> None:
    """Forwarder.forward signs exactly what the owner's verify checks (path, query, body)."""
    paths = [
        "/consumers/g/instances/c1/records?timeout=500&max_bytes=1000",
        "/consumers/g/instances/a%2Fb/records",  # an encoded slash in an instance name
        "/consumers/gr%C3%BCn/instances/c1/offsets?q=a%2Bb&r=%25&s=a%20b",
        "/consumers/g/instances/c1/subscription",
    ]
    seen = await hop(paths)
    for path, got in zip(paths, seen, strict=True):
        assert got["forwarded"] is True, (path, got)
        assert got["owner"] == got["front"] == path
        assert got["body"] == BODY
        assert (got["status"], got["retry_after"], got["answer"]) == (207, "3", {"ok": True})


@pytest.mark.parametrize(
    "path",
    [
        "/consumers/team%7Ex/instances/c1/records",  # Java's URLEncoder writes ~ as %7E
        "/consumers/g/instances/c%2E1/records",
        "/consumers/g/instances/c1/records?timeout=%35%30%30",
    ],
)
async def test_a_forwarded_request_with_encoded_unreserved_characters_verifies(path: str) -> None:
    """The hop must send the path it signed, byte for byte.

    ``forward`` hands aiohttp the string ``owner_url + request.path_qs``; yarl re-quotes it
    and decodes percent-encoded unreserved characters (%7E -> ~, %2E -> ., %35 -> 5), so the
    owner verifies a different path than the one signed and refuses a genuine request.
    """
    (got,) = await hop([path])
    assert got["front"] == path
    assert got["owner"] == path, "the owner received a different path than was signed"
    assert got["forwarded"] is True
