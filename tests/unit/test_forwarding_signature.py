"""Signing and verifying the one hop between replicas (``gateway.forwarding``), without Kafka.

``verify`` is called on mocked requests (a real ``StreamReader`` carries the body). The hop
tests run ``Forwarder.forward`` between in-process servers on the loopback interface: a front
replica (the real ``forwarding`` wrapper) and an owner, either an aiohttp app whose handler
runs the real ``verify`` on what arrived, or a raw socket stand-in that misbehaves on purpose
(breaks off mid-body, or waits to see whether the front hangs up on it).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from unittest import mock

import aiohttp
import pytest
from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.test_utils import TestServer, make_mocked_request
from multidict import CIMultiDict
from yarl import URL

from gateway.app import error_middleware
from gateway.errors import GatewayError
from gateway.forwarding import (
    FORWARDER,
    HEADER,
    LEGACY_HEADER,
    MARGIN_S,
    MAX_SKEW_S,
    STREAM_END_PATH,
    STREAM_HEADER,
    Forwarder,
    ForwardTo,
    NonceCache,
    forwarding,
    signature,
    signed_header,
    verify,
    wire_target,
)
from sessions.directory import InstanceRecord
from sessions.errors import Moving
from sessions.instance import ASSIGNMENT_WAIT_S
from sessions.router import Forward

SECRET = "s3cret-cluster-key"
SSE = "text/event-stream"
NDJSON = "application/x-ndjson"
NODE = "10.0.0.7:8082:0123456789ab"  # the owner's node id: what a hop is addressed to
PATH = "/consumers/g/instances/c1/records?timeout=500&max_bytes=1000"
BODY = b'{"topics":["orders"]}'
CT = "application/vnd.kafka.v2+json"
ACCEPT = "application/vnd.kafka.binary.v2+json"


async def request(
    method: str = "POST",
    path: str = PATH,
    body: bytes = BODY,
    header: str | None = None,
    headers: list[tuple[str, str]] | None = None,
) -> web.Request:
    stream = StreamReader(mock.Mock(_reading_paused=False), 2**16)
    if body:
        stream.feed_data(body)
    stream.feed_eof()
    hdrs: CIMultiDict[str] = CIMultiDict(
        headers if headers is not None else [("Content-Type", CT), ("Accept", ACCEPT)]
    )
    if header is not None:
        hdrs[HEADER] = header
    return make_mocked_request(method, path, headers=hdrs, payload=stream)


def signed(
    secret: str = SECRET,
    method: str = "POST",
    path: str = PATH,
    body: bytes = BODY,
    ts: str | None = None,
    nonce: str | None = None,
    target: str = NODE,
    content_type: str = CT,
    accept: str = ACCEPT,
) -> str:
    return signed_header(
        secret,
        target=target,
        method=method,
        path_qs=path,
        content_type=content_type,
        accept=accept,
        body=body,
        ts=ts,
        nonce=nonce,
    )


async def check(
    req: web.Request, secret: str = SECRET, node: str = NODE, nonces: NonceCache | None = None
) -> bool:
    return await verify(
        req, secret, node_id=node, nonces=NonceCache() if nonces is None else nonces
    )


async def refused(req: web.Request, secret: str = SECRET, **kw: Any) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        await check(req, secret, **kw)
    err = caught.value
    assert (err.status, err.error_code) == (403, 40301)
    assert err.message.startswith("Forwarded request refused: ")
    return err


# --- signature --------------------------------------------------------------------------------


def test_signature_is_hmac_sha256_over_length_prefixed_fields_and_body_digest() -> None:
    ts, nonce = "1700000000.123", "ab" * 16
    fields = [ts, nonce, NODE, "POST", PATH, CT, ACCEPT, ""]  # "": no principal (anonymous)
    msg = b"event-gateway forwarded request v2" + b"".join(
        len(f.encode()).to_bytes(4, "big") + f.encode() for f in fields
    )
    msg += hashlib.sha256(BODY).digest()
    expected = hmac.new(SECRET.encode(), msg, hashlib.sha256).hexdigest()
    base = dict(
        ts=ts,
        nonce=nonce,
        target=NODE,
        method="post",
        path_qs=PATH,
        content_type=CT,
        accept=ACCEPT,
        body=BODY,
    )
    assert signature(SECRET, **base) == expected  # type: ignore[arg-type]
    assert len(expected) == 64
    # Every input matters.
    changes: list[tuple[str, Any]] = [
        ("ts", "1700000000.124"),
        ("nonce", "cd" * 16),
        ("target", "10.0.0.8:8082:0123456789ab"),
        ("method", "GET"),
        ("principal", "eyJuYW1lIjoiYWxpY2UifQ=="),
        ("path_qs", PATH + "&x=1"),
        ("content_type", "application/vnd.kafka.json.v2+json"),
        ("accept", "application/json"),
        ("body", BODY + b" "),
    ]
    others = {signature(SECRET, **{**base, k: v}) for k, v in changes}  # type: ignore[arg-type]
    others.add(signature("other", **base))  # type: ignore[arg-type]
    assert expected not in others and len(others) == len(changes) + 1


def test_moving_text_between_adjacent_fields_changes_the_signature() -> None:
    """Fields are length-prefixed: no split of the same characters signs alike."""
    common = dict(ts="1", nonce="ab" * 16, target=NODE, method="GET", path_qs="/p", body=b"")
    a = signature(SECRET, content_type="a\nb", accept="c", **common)  # type: ignore[arg-type]
    b = signature(SECRET, content_type="a", accept="b\nc", **common)  # type: ignore[arg-type]
    assert a != b


def test_the_header_carries_ts_nonce_and_target_and_a_fresh_nonce_each_time() -> None:
    odd_node = "host;with;semicolons:8082:abc"
    header = signed(target=odd_node)
    ts, nonce, rest = header.split(";", 2)
    target, sig = rest.rsplit(";", 1)
    assert abs(float(ts) - time.time()) < 5
    assert len(nonce) == 32 and int(nonce, 16) >= 0
    assert target == odd_node and len(sig) == 64
    assert signed().split(";")[1] != signed().split(";")[1]


# --- verify -----------------------------------------------------------------------------------


async def test_a_correctly_signed_request_verifies() -> None:
    assert await check(await request(header=signed())) is True


async def test_a_target_node_id_with_semicolons_verifies() -> None:
    odd = "pod;1:8082:abc"
    assert await check(await request(header=signed(target=odd)), node=odd) is True


async def test_a_signed_request_without_body_verifies() -> None:
    path = "/consumers/g/instances/c1/assignments"
    req = await request("GET", path, b"", signed(method="GET", path=path, body=b""))
    assert await check(req) is True


async def test_a_request_without_content_type_or_accept_verifies_only_when_signed_so() -> None:
    path = "/consumers/g/instances/c1/subscription"
    bare = signed(method="GET", path=path, body=b"", content_type="", accept="")
    assert await check(await request("GET", path, b"", bare, headers=[])) is True
    # The owner must not be told "no Accept" when the client sent one, or the other way.
    with_accept = await request("GET", path, b"", bare, headers=[("Accept", "application/json")])
    assert "bad signature" in (await refused(with_accept)).message


async def test_duplicate_headers_are_all_covered() -> None:
    headers = [("Content-Type", CT), ("Accept", ACCEPT), ("Accept", "application/json")]
    both = signed(accept=f"{ACCEPT}, application/json")
    assert await check(await request(header=both, headers=headers)) is True
    first_only = signed()
    assert (
        "bad signature"
        in (await refused(await request(header=first_only, headers=headers))).message
    )


async def test_the_body_stays_readable_after_verification() -> None:
    req = await request(header=signed())
    assert await check(req) is True
    assert await req.read() == BODY
    assert await req.json() == {"topics": ["orders"]}


async def test_a_client_request_without_the_header_is_not_forwarded() -> None:
    assert await check(await request()) is False
    assert await check(await request(), "") is False  # no secret: plain requests still served


@pytest.mark.parametrize(
    ("what", "req_kw", "secret"),
    [
        ("tampered body", {"body": b'{"topics":["payroll"]}'}, SECRET),
        ("tampered path", {"path": "/consumers/g/instances/c2/records?timeout=500"}, SECRET),
        ("tampered query", {"path": PATH.replace("500", "50000")}, SECRET),
        ("decoded path", {"path": PATH.replace("c1", "%63%31")}, SECRET),
        ("different method", {"method": "DELETE"}, SECRET),
        (
            "tampered content type",
            {"headers": [("Content-Type", "application/json"), ("Accept", ACCEPT)]},
            SECRET,
        ),
        (
            "tampered accept",
            {"headers": [("Content-Type", CT), ("Accept", "application/vnd.kafka.json.v2+json")]},
            SECRET,
        ),
        ("accept dropped", {"headers": [("Content-Type", CT)]}, SECRET),
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


@pytest.mark.parametrize("field", [0, 1, 2], ids=["timestamp", "nonce", "target-node"])
async def test_changing_any_header_field_invalidates_the_signature(field: int) -> None:
    parts = signed().split(";")
    parts[field] = {
        0: f"{float(parts[0]) + 1:.3f}",
        1: "0" * 32,
        2: "10.0.0.8:8082:0123456789ab",  # the target swapped to another node's id
    }[field]
    node = parts[2]  # verified by that node, so only the signature can refuse it
    err = await refused(await request(header=";".join(parts)), node=node)
    assert "bad signature" in err.message


async def test_a_genuine_hop_addressed_to_another_node_is_a_retriable_refusal() -> None:
    """Signed correctly, but for node A and received by node B: a replay aimed at a node with
    other nonce memory, or a stale directory view (B restarted on A's URL). Never served;
    answered like any instance in motion (503, retry) rather than a 403 a genuine client
    could not get past."""
    req = await request(header=signed(target="10.0.0.8:8082:0123456789ab"))
    with pytest.raises(Moving):
        await check(req)


async def test_a_replayed_request_is_refused() -> None:
    nonces = NonceCache()
    header = signed()
    assert await check(await request(header=header), nonces=nonces) is True
    err = await refused(await request(header=header), nonces=nonces)
    assert "replayed" in err.message
    # A new request with its own nonce is fine, and the replay stays refused.
    assert await check(await request(header=signed()), nonces=nonces) is True
    assert "replayed" in (await refused(await request(header=header), nonces=nonces)).message


async def test_a_refused_forgery_does_not_take_a_nonce() -> None:
    """Only correctly signed requests are remembered: forgeries cannot fill the memory, nor
    burn the nonce of a genuine request they copied it from."""
    nonces = NonceCache()
    genuine = signed()
    nonce = genuine.split(";")[1]
    forged = signed(secret="not-the-cluster-secret", nonce=nonce)
    await refused(await request(header=forged), nonces=nonces)
    assert len(nonces) == 0
    assert await check(await request(header=genuine), nonces=nonces) is True


@pytest.mark.parametrize("age_s", [MAX_SKEW_S + 5, -(MAX_SKEW_S + 5), 86_400 * 365])
async def test_an_expired_or_future_timestamp_is_refused(age_s: float) -> None:
    ts = f"{time.time() - age_s:.3f}"
    err = await refused(await request(header=signed(ts=ts)))  # correctly signed, but stale
    assert "expired" in err.message


async def test_a_timestamp_just_inside_the_window_verifies() -> None:
    ts = f"{time.time() - (MAX_SKEW_S - 5):.3f}"
    assert await check(await request(header=signed(ts=ts))) is True


@pytest.mark.parametrize("ts", ["nan", "inf", "-inf", "1e999", "NaN"])
async def test_a_non_finite_timestamp_is_refused(ts: str) -> None:
    # Correctly signed over the garbage timestamp: only the timestamp check can refuse it.
    err = await refused(await request(header=signed(ts=ts)))
    assert "expired" in err.message


async def test_an_integral_timestamp_verifies() -> None:
    assert await check(await request(header=signed(ts=str(int(time.time()))))) is True


@pytest.mark.parametrize(
    "header",
    [
        "",
        "garbage",
        ";;;",
        "1700000000.123." + "0" * 64,  # the previous protocol's "<ts>.<sig>", new header
        f"{int(time.time())};{'0' * 32};{'0' * 64}",  # no target node
        f"{int(time.time())};{'0' * 31};{NODE};{'0' * 64}",  # short nonce
        f"{int(time.time())};{'G' * 32};{NODE};{'0' * 64}",  # not hex
        f"{int(time.time())};{'0' * 32};{NODE};{'0' * 63}",  # short signature
        f"{int(time.time())};{'0' * 32};;{'0' * 64}",  # empty target
        f"tomorrow;{'0' * 32};{NODE};{'0' * 64}",
        f"0x10;{'0' * 32};{NODE};{'0' * 64}",
    ],
)
async def test_a_malformed_header_is_refused(header: str) -> None:
    await refused(await request(header=header))


@pytest.mark.parametrize(
    "header",
    [
        f"{time.time():.3f};{'0' * 32};{NODE};" + "é" * 64,
        f"{time.time():.3f};{'0' * 32};{NODE};ü",
        f"{time.time():.3f};{'é' * 32};{NODE};{'0' * 64}",
        f"{time.time():.3f};{'0' * 32};nödé;{'0' * 64}",
        # Fullwidth digits: float() reads them, so only the ASCII check stops them.
        "\uff11" * 10 + f";{'0' * 32};{NODE};{'0' * 64}",
    ],
    ids=["e-acute-sig", "u-umlaut-sig", "nonce", "node", "fullwidth-ts"],
)
async def test_non_ascii_header_garbage_is_refused_not_a_server_error(header: str) -> None:
    """aiohttp hands non-ASCII header bytes over as text (utf-8, surrogateescape), and
    ``hmac.compare_digest`` raises ``TypeError`` on non-ASCII ``str``: that must still be a
    403, not an unhandled error (a 500 and a traceback). Any client can send such a header."""
    await refused(await request(header=header))


async def test_non_ascii_content_type_signed_as_sent_verifies() -> None:
    odd = "application/vnd.kafka.v2+json; x=ü"
    headers = [("Content-Type", odd), ("Accept", ACCEPT)]
    assert await check(await request(header=signed(content_type=odd), headers=headers))


async def test_undecodable_header_bytes_from_the_wire_are_a_403_or_verify_as_signed() -> None:
    """Bytes that are not UTF-8 reach handlers as surrogate escapes; the real parser, the real
    socket. Garbage in the signature header is a 403; garbage in a signed header is signed
    byte for byte on both ends, so a request that carried it verifies."""
    nonces = NonceCache()

    async def handler(req: web.Request) -> web.Response:
        try:
            ok = await verify(req, SECRET, node_id=NODE, nonces=nonces)
        except GatewayError as exc:
            return web.json_response({"error_code": exc.error_code}, status=exc.status)
        return web.json_response({"verified": ok})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    garbage_ct = "application/vnd.kafka.v2+json; x=\udcff\udcfe"
    good = signed(method="GET", path="/p", body=b"", content_type=garbage_ct, accept="")
    heads = {
        "bad signature bytes": f"{time.time():.3f};{'0' * 32};{NODE};".encode() + b"\xff\xfe" * 32,
        "bad node bytes": f"{time.time():.3f};{'0' * 32};".encode() + b"n\xff;" + b"0" * 64,
    }
    async with TestServer(app) as server:

        async def raw_get(header: bytes, content_type: bytes = b"") -> tuple[int, bytes]:
            reader, writer = await asyncio.open_connection(server.host, server.port)
            ct = b"Content-Type: " + content_type + b"\r\n" if content_type else b""
            writer.write(
                b"GET /p HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                + ct
                + HEADER.encode()
                + b": "
                + header
                + b"\r\n\r\n"
            )
            answer = await reader.read()
            writer.close()
            head, _, body = answer.partition(b"\r\n\r\n")
            return int(head.split(b" ", 2)[1]), body

        for what, header in heads.items():
            status, body = await raw_get(header)
            assert status == 403, (what, body)
        raw_ct = garbage_ct.encode("utf-8", "surrogateescape")
        status, body = await raw_get(good.encode(), raw_ct)
        assert (status, body) == (200, b'{"verified": true}')


@pytest.mark.parametrize("secret", [SECRET, ""])
async def test_a_hop_from_a_replica_of_the_previous_version_is_retriable_never_served(
    secret: str,
) -> None:
    """During a rolling upgrade an old replica forwards with the old header. It is neither
    served (it carries no nonce, no target) nor a 403 the client could not get past: a 503
    the client retries, which sooner or later lands on a replica that can serve it."""
    legacy = f"{time.time():.3f}." + "0" * 64
    req = await request(headers=[("Content-Type", CT), (LEGACY_HEADER, legacy)])
    with pytest.raises(Moving):
        await check(req, secret)
    assert HEADER != LEGACY_HEADER


async def test_a_replica_without_a_secret_refuses_forwarded_requests() -> None:
    err = await refused(await request(header=signed()), "")
    assert "cluster.secret" in err.message
    # Not even one "signed" with the empty secret.
    err = await refused(await request(header=signed(secret="")), "")
    assert "cluster.secret" in err.message


# --- the nonce memory ----------------------------------------------------------------------------


def test_nonces_are_forgotten_once_their_timestamp_leaves_the_window() -> None:
    cache = NonceCache(capacity=100, window_s=60)
    assert cache.admit("a", ts=1000.0, now=1000.0) is None
    assert cache.admit("a", ts=1000.0, now=1059.0) == "replayed"
    assert cache.admit("b", ts=1059.0, now=1061.0) is None
    assert len(cache) == 1  # "a" expired; by then the clock refuses it anyway


def test_memory_stays_bounded_under_a_flood_and_no_dropped_nonce_can_be_replayed() -> None:
    cache = NonceCache(capacity=1000, window_s=60)
    now = 5000.0
    for i in range(50_000):
        assert cache.admit(f"n{i}", ts=now + i * 1e-4, now=now) is None
    assert len(cache) == 1000
    # The first nonces were dropped, but the window narrowed past them: still refused.
    for i in (0, 1, 48_999):
        assert cache.admit(f"n{i}", ts=now + i * 1e-4, now=now) is not None
    assert cache.admit("n49999", ts=now + 49_999 * 1e-4, now=now) == "replayed"
    # A fresh request (timestamp now) is still accepted.
    assert cache.admit("fresh", ts=now + 5.0001, now=now) is None
    assert len(cache) == 1000


async def test_a_request_past_the_narrowed_window_is_a_retriable_refusal() -> None:
    nonces = NonceCache(capacity=2)
    now = time.time()
    for i in range(3):
        assert await check(await request(header=signed(ts=f"{now + i:.3f}")), nonces=nonces)
    with pytest.raises(GatewayError) as caught:
        await check(await request(header=signed(ts=f"{now - 1:.3f}")), nonces=nonces)
    assert (caught.value.status, caught.value.retry_after) == (503, 1)


# --- budget -----------------------------------------------------------------------------------


def route(**spec: Any) -> Forward:
    record = InstanceRecord("g", "c1", NODE, 3, {"group": "g", "name": "c1", **spec})
    return Forward("http://b:2", record)


FWD = Forwarder(SECRET, default_wait_ms=1000, kafka_timeout_ms=10_000)
INSTANCE = "/consumers/{group}/instances/{instance}"


async def routed_request(method: str, path: str) -> web.Request:
    """A mocked request matched against the real route shapes (so budget_s sees the route)."""
    app = web.Application()

    async def nothing(_: web.Request) -> web.Response:
        return web.Response()

    for m, suffix in [
        ("DELETE", ""),
        ("GET", "/records"),
        ("POST", "/positions"),
        ("POST", "/positions/beginning"),
        ("POST", "/positions/end"),
        ("POST", "/offsets"),
        ("DELETE", "/subscription"),
        ("POST", "/subscription"),
    ]:
        app.router.add_route(m, INSTANCE + suffix, nothing)
    req = make_mocked_request(method, path, app=app)
    match = await app.router.resolve(req)
    assert match.http_exception is None, (method, path)
    req._match_info = match  # what aiohttp's router does (make_mocked_request mocks the route)
    return req


@pytest.mark.parametrize(
    ("spec", "query", "wait_s"),
    [
        ({}, "", 1.0),  # no instance timeout: the default wait
        ({"request_timeout_ms": None}, "", 1.0),
        ({"request_timeout_ms": 500}, "", 0.5),  # the instance's own wait, even if shorter
        ({"request_timeout_ms": 30_000}, "", 30.0),  # the instance's own, longer wait
        ({"request_timeout_ms": 30_000}, "?timeout=2000", 2.0),  # the read asks for less
        ({"request_timeout_ms": 30_000}, "?timeout=60000", 30.0),  # capped by the instance
        ({}, "?timeout=0", 1.0),  # 0 and negative: the instance's wait, as the owner does
        ({}, "?timeout=-5", 1.0),
        ({}, "?timeout=%31%30%30", 0.1),  # decoded like the owner decodes it
    ],
)
async def test_records_budget_is_the_reads_own_wait_plus_a_kafka_call_and_a_margin(
    spec: dict[str, Any], query: str, wait_s: float
) -> None:
    req = await routed_request("GET", "/consumers/g/instances/c1/records" + query)
    assert FWD.budget_s(route(**spec), req) == pytest.approx(wait_s + 10.0 + MARGIN_S)


async def test_records_budget_of_a_schema_format_covers_a_registry_call() -> None:
    req = await routed_request("GET", "/consumers/g/instances/c1/records")
    binary = FWD.budget_s(route(format="binary"), req)
    assert FWD.budget_s(route(format="avro"), req) > binary + 10


@pytest.mark.parametrize("suffix", ["/positions", "/positions/beginning", "/positions/end"])
async def test_seek_budget_covers_the_assignment_wait_and_two_kafka_calls(suffix: str) -> None:
    req = await routed_request("POST", "/consumers/g/instances/c1" + suffix)
    budget = FWD.budget_s(route(), req)
    assert budget == pytest.approx(ASSIGNMENT_WAIT_S + 2 * 10.0 + MARGIN_S)
    # Longer than the old one-size budget (default wait + one Kafka call + 5 s), which gave
    # up on a seek the owner was still allowed to finish.
    assert budget > 1.0 + 10.0 + 5


async def test_delete_budget_covers_the_commit_and_the_close() -> None:
    delete = await routed_request("DELETE", "/consumers/g/instances/c1")
    assert FWD.budget_s(route(), delete) == pytest.approx(2 * 10.0 + MARGIN_S)
    # An instance named like a route suffix is still the instance's DELETE.
    named = await routed_request("DELETE", "/consumers/g/instances/subscription")
    assert FWD.budget_s(route(), named) == pytest.approx(2 * 10.0 + MARGIN_S)
    unsubscribe = await routed_request("DELETE", "/consumers/g/instances/c1/subscription")
    assert FWD.budget_s(route(), unsubscribe) == pytest.approx(10.0 + MARGIN_S)


async def test_other_budgets_cover_one_kafka_call_and_grow_with_its_timeout() -> None:
    req = await routed_request("POST", "/consumers/g/instances/records/offsets")
    assert FWD.budget_s(route(request_timeout_ms=30_000), req) == pytest.approx(10.0 + MARGIN_S)
    slower = Forwarder(SECRET, default_wait_ms=1000, kafka_timeout_ms=40_000)
    assert slower.budget_s(route(), req) - FWD.budget_s(route(), req) == pytest.approx(30.0)


# --- the hop itself -------------------------------------------------------------------------------


def test_the_wire_target_is_the_raw_path_byte_for_byte() -> None:
    for raw in [
        "/consumers/team%7Ex/instances/a%20b/records?max_bytes=%31000&x=%zz",
        "/consumers/g/instances/c%2E1/../records;p?q=%2B+&&",
        "/consumers/gr%C3%BCn/instances/%2F/offsets",
    ]:
        assert wire_target("http://b:2/", raw).raw_path_qs == raw
        assert str(wire_target("http://b:2", raw)) == "http://b:2" + raw
    # Bytes HTTP does not allow in a request line are percent-encoded, never sent raw.
    assert wire_target("http://b:2", "/g/\udcc3\udcbc ü").raw_path_qs == "/g/%C3%BC%20%C3%BC"
    # A proxy's absolute-form target keeps its path and query only.
    assert wire_target("http://b:2", "http://lb:80/c/%7E?x=1").raw_path_qs == "/c/%7E?x=1"


Seen = list[dict[str, Any]]


class Front:
    """A client of the front replica: ``path`` is sent as is (``encoded=True``)."""

    def __init__(self, base: str, http: aiohttp.ClientSession) -> None:
        self.base, self.http = base, http

    def url(self, path: str) -> URL:
        return URL(self.base + path, encoded=True)


@contextlib.asynccontextmanager
async def front_server(
    owner_url: str, budget_kafka_ms: int = 1000, path: str = "/{tail:.*}"
) -> AsyncIterator[tuple[Front, Forwarder]]:
    """A front replica whose every request is forwarded to ``owner_url`` (owner id NODE).

    Served by a plain ``AppRunner`` as ``gateway.server`` does, not aiohttp's TestServer,
    which cancels handlers on disconnect (production servers do not, and the forwarder must
    notice a departed client by itself).
    """

    @forwarding
    async def front_handler(req: web.Request) -> web.Response:
        raise ForwardTo(Forward(owner_url, route().record))

    front = web.Application(middlewares=[error_middleware])  # GatewayError -> Confluent body
    front.router.add_route("*", path, front_handler)
    forwarder = Forwarder(SECRET, default_wait_ms=1000, kafka_timeout_ms=budget_kafka_ms)
    front[FORWARDER] = forwarder
    runner = web.AppRunner(front, access_log=None)
    await runner.setup()
    await forwarder.start()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        async with aiohttp.ClientSession() as http:
            yield Front(f"http://127.0.0.1:{port}", http), forwarder
    finally:
        await forwarder.stop()
        await runner.cleanup()


async def hop(
    paths: list[str], body: bytes = BODY, headers: list[tuple[str, str]] | None = None
) -> Seen:
    """Send each path to a front replica that forwards it to an owner replica (loopback only).

    Returns, per request, what the owner saw (raw path, headers, verification) and what the
    client got.
    """
    seen: Seen = []
    nonces = NonceCache()

    async def owner_handler(req: web.Request) -> web.Response:
        try:
            forwarded: object = await verify(req, SECRET, node_id=NODE, nonces=nonces)
        except (GatewayError, Moving) as exc:
            forwarded = exc
        seen[-1].update(
            owner=req.raw_path,
            forwarded=forwarded,
            body=await req.read(),
            owner_headers=[(k, v) for k, v in req.headers.items() if k != HEADER],
        )
        return web.json_response({"ok": True}, status=207, headers={"Retry-After": "3"})

    owner = web.Application()
    owner.router.add_route("*", "/{tail:.*}", owner_handler)
    async with TestServer(owner) as owner_server:
        owner_url = str(owner_server.make_url("/"))
        async with front_server(owner_url) as (client, _):
            for path in paths:
                seen.append({})
                resp = await client.http.post(
                    client.url(path),
                    data=body,
                    headers=CIMultiDict(headers if headers is not None else [("Content-Type", CT)]),
                    skip_auto_headers=("Accept", "Content-Type", "Accept-Encoding", "User-Agent"),
                )
                seen[-1].update(
                    status=resp.status,
                    retry_after=resp.headers.get("Retry-After"),
                    content_length=resp.headers.get("Content-Length"),
                    answer=await resp.json(),
                )
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
        assert got["owner"] == path
        assert got["body"] == BODY
        assert (got["status"], got["retry_after"], got["answer"]) == (207, "3", {"ok": True})
        assert got["content_length"] == str(len(b'{"ok": true}'))


@pytest.mark.parametrize(
    "path",
    [
        "/consumers/team%7Ex/instances/c1/records",  # Java's URLEncoder writes ~ as %7E
        "/consumers/g/instances/c%2E1/records",
        "/consumers/g/instances/c1/records?timeout=%35%30%30",
        "/consumers/my%20group/instances/%C3%BC/records?max_bytes=%31000",
        "/consumers/g/instances/c1/records?",  # an empty query: yarl would drop the "?"
    ],
)
async def test_a_forwarded_request_with_encoded_characters_verifies(path: str) -> None:
    """The hop must send the path it signed, byte for byte.

    yarl re-quotes a URL it is handed as text, decoding percent-encoded unreserved characters
    (%7E -> ~, %2E -> ., %35 -> 5), so the owner would verify another path than the one
    signed and refuse a genuine request.
    """
    (got,) = await hop([path])
    assert got["owner"] == path.rstrip("?"), "the owner received another path than sent"
    assert got["forwarded"] is True, got


async def test_the_owner_sees_exactly_the_clients_content_type_and_accept() -> None:
    """aiohttp's client adds ``Accept: */*``, a Content-Type for a body and Accept-Encoding
    when absent; the owner must negotiate on what the client sent, nothing else."""
    (bare,) = await hop(["/consumers/g/instances/c1/offsets"], headers=[])
    assert bare["forwarded"] is True, bare
    names = {k.lower() for k, _ in bare["owner_headers"]}
    assert not names & {"accept", "content-type", "accept-encoding"}, bare["owner_headers"]

    sent = [("Content-Type", CT), ("Accept", "application/json"), ("Accept", ACCEPT)]
    (dup,) = await hop(["/consumers/g/instances/c1/offsets"], headers=sent)
    assert dup["forwarded"] is True, dup
    got = [(k, v) for k, v in dup["owner_headers"] if k.lower() in ("accept", "content-type")]
    assert got == sent


async def test_undecodable_header_bytes_from_a_client_still_make_a_verifiable_hop() -> None:
    """A client's Accept with bytes that are not UTF-8 (aiohttp's client would drop them if
    forwarded as they were parsed; the owner would then verify other text than was signed)."""
    seen = []
    nonces = NonceCache()

    async def owner_handler(req: web.Request) -> web.Response:
        seen.append(
            (await verify(req, SECRET, node_id=NODE, nonces=nonces), req.headers.getall("Accept"))
        )
        return web.json_response({"ok": True})

    owner = web.Application()
    owner.router.add_route("*", "/{tail:.*}", owner_handler)
    async with TestServer(owner) as owner_server:
        async with front_server(str(owner_server.make_url("/"))) as (client, _):
            url = URL(client.base)
            reader, writer = await asyncio.open_connection(url.host, url.port)
            writer.write(
                b"GET /consumers/g/instances/c1/subscription HTTP/1.1\r\nHost: x\r\n"
                b"Connection: close\r\nAccept: application/vnd.kafka.v2+json, x/\xff\xfe\r\n\r\n"
            )
            answer = await asyncio.wait_for(reader.read(), 10)
            writer.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert seen == [(True, ["application/vnd.kafka.v2+json, x/\ufffd\ufffd"])]


# --- a broken owner, a departed client --------------------------------------------------------------


async def raw_owner(
    serve: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> tuple[asyncio.Server, str]:
    """An owner stand-in speaking raw HTTP/1.1 on loopback: it answers however ``serve`` says."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")  # the hop's request head (GETs have no body)
            await serve(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, family=socket.AF_INET)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.kafka.binary.v2+json\r\n"
        b"Content-Length: 4000\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.kafka.binary.v2+json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n",
    ],
    ids=["content-length", "chunked"],
)
async def test_an_owner_that_breaks_off_mid_body_is_an_error_not_a_short_200(head: bytes) -> None:
    chunked = b"chunked" in head
    partial = b'[{"topic":"t","key":null,"value":"AAAA","partition":0,"offset":0}'

    async def serve(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(head)
        writer.write(f"{len(partial):x}\r\n".encode() + partial + b"\r\n" if chunked else partial)
        await writer.drain()
        await asyncio.sleep(0.2)  # the front has relayed the start; now the owner dies

    server, url = await raw_owner(serve)
    async with server:
        async with front_server(url) as (client, _):
            resp = await client.http.get(client.url("/consumers/g/instances/c1/records"))
            assert resp.status == 200  # the start of the answer was already on its way ...
            if not chunked:
                assert resp.headers["Content-Length"] == "4000"
            with pytest.raises(aiohttp.ClientPayloadError):
                # ... but it never looks complete (nor hangs: the front hangs up on it).
                await asyncio.wait_for(resp.read(), 10)


@pytest.mark.parametrize(
    "answer",
    [
        b"",  # closes without answering
        b"HTTP/1.1 200 OK\r\nContent-Length: 4000\r\n\r\n",  # headers, then nothing
    ],
    ids=["nothing", "headers-only"],
)
async def test_an_owner_that_fails_before_its_body_is_a_clean_retriable_error(
    answer: bytes,
) -> None:
    async def serve(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(answer)
        await writer.drain()

    server, url = await raw_owner(serve)
    async with server:
        async with front_server(url) as (client, _):
            resp = await client.http.get(client.url("/consumers/g/instances/c1/records"))
            body = await resp.json()
            assert (resp.status, body["error_code"]) == (503, 50302), body
            assert resp.headers["Retry-After"] == "1"


async def test_a_client_that_goes_away_takes_the_hop_with_it() -> None:
    """The owner stand-in holds a long poll; the client gives up after 0.5 s. The front must
    close its upstream connection (so a real owner's response write fails and it rewinds)
    instead of waiting out its budget and handing records to nobody."""
    closed_after: list[float] = []
    began = time.monotonic()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            # Nothing more comes from the front; EOF means it hung up on the owner.
            await asyncio.wait_for(reader.read(1), 20)
            closed_after.append(time.monotonic() - began)
        except TimeoutError:
            closed_after.append(float("inf"))

    server, url = await raw_owner(serve)
    async with server:
        async with front_server(url, budget_kafka_ms=30_000) as (client, forwarder):
            with pytest.raises(TimeoutError):
                await client.http.get(
                    client.url("/consumers/g/instances/c1/records"),
                    timeout=aiohttp.ClientTimeout(total=0.5),
                )
            for _ in range(100):
                if closed_after:
                    break
                await asyncio.sleep(0.05)
            assert closed_after and closed_after[0] < 2.0, closed_after
            assert not forwarder._inflight  # nothing left to watch


# --- a relaying replica's drain ------------------------------------------------------------------


async def test_a_draining_relay_asks_the_owner_to_end_its_stream_with_a_signed_hop() -> None:
    """The relayed stream's hop carries a token; the drain's end request names it, verifies on
    the owner as a hop, and after the drain no new stream is relayed (a retriable 503)."""
    seen: dict[str, Any] = {}
    nonces = NonceCache()
    ended = asyncio.Event()

    async def stream(req: web.Request) -> web.StreamResponse:
        assert await verify(req, SECRET, node_id=NODE, nonces=nonces) is True
        seen["token"] = req.headers.get(STREAM_HEADER)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(req)
        await resp.write(b"event: record\ndata: 1\n\n")
        await ended.wait()  # the owner ends it when asked, after what it wrote
        await resp.write(b"event: record\ndata: 2\n\n")
        await resp.write_eof()
        return resp

    async def end(req: web.Request) -> web.Response:
        seen["end_verified"] = await verify(req, SECRET, node_id=NODE, nonces=nonces)
        seen["end_token"] = req.match_info["token"]
        ended.set()
        return web.Response(status=204)

    owner = web.Application()
    owner.router.add_get(INSTANCE + "/records", stream)
    owner.router.add_post(STREAM_END_PATH, end)
    async with TestServer(owner) as owner_server:
        owner_url = str(owner_server.make_url("/"))
        # Routed as the gateway routes it: a stream is a records read (by route and Accept).
        async with front_server(owner_url, path=INSTANCE + "/records") as (client, forwarder):
            path = "/consumers/g/instances/c1/records"
            resp = await client.http.get(client.url(path), headers={"Accept": SSE})
            assert resp.status == 200
            assert await resp.content.readuntil(b"\n\n") == b"event: record\ndata: 1\n\n"
            await forwarder.end_relayed_streams(5.0)
            assert await asyncio.wait_for(resp.read(), 5) == b"event: record\ndata: 2\n\n"
            assert seen["end_verified"] is True
            assert seen["token"] and seen["end_token"] == seen["token"]

            # An EventSource gets the refusal as the short stream that tells it to retry.
            again = await client.http.get(client.url(path), headers={"Accept": SSE})
            assert (again.status, again.headers.get("Retry-After")) == (200, "1")
            assert b"50302" in await again.read()
            again = await client.http.get(client.url(path), headers={"Accept": NDJSON})
            assert again.status == 503
            assert (await again.json())["error_code"] == 50302
            assert forwarder._relayed == {}  # the ended stream is forgotten
