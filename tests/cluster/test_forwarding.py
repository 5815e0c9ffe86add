"""The hop between replicas is byte-exact and unforgeable; its failures are ones clients see.

Real gateway processes, real Redis, real Kafka, real HAProxy. Requests that must take the hop
go to a replica's own address (not the balancer), so the hop is certain; the directory record
is read back from Redis to prove the owner never changed (the instance was forwarded to, not
adopted). Paths are sent with ``encoded=True`` so the percent-encoding on the wire is exactly
the one written here (aiohttp would otherwise normalise ``%7E`` to ``~``).

Where a real owner cannot be made to misbehave on cue (break off mid-body, hold a request,
answer slowly), a stand-in owner in the test process takes its place: a node lease and an
instance record in Redis point real replicas at it, and it checks the real replicas' hops
with the product's own ``verify``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from gateway.forwarding import HEADER, LEGACY_HEADER, NonceCache, signed_header, verify
from sessions.directory import InstanceRecord, RedisDirectory
from tests.harness.api import MakeClusterFn, NewTopicFn

pytestmark = pytest.mark.asyncio

V2_JSON = "application/vnd.kafka.v2+json"
BINARY = "application/vnd.kafka.binary.v2+json"


@dataclass
class Answer:
    status: int
    headers: CIMultiDict[str]
    raw: bytes

    @property
    def body(self) -> Any:
        return orjson.loads(self.raw) if self.raw else None

    @property
    def ctype(self) -> str | None:
        return self.headers.get("Content-Type")


async def call(
    http: aiohttp.ClientSession,
    base: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    ctype: str | None = V2_JSON,
    accept: str | None = None,
    headers: dict[str, str] | None = None,
    skip_auto_headers: tuple[str, ...] = (),
) -> Answer:
    """``path`` (with its query) goes on the wire exactly as written."""
    data = orjson.dumps(body) if body is not None else raw
    hdrs = dict(headers or {})
    if ctype and data is not None:
        hdrs.setdefault("Content-Type", ctype)
    if accept:
        hdrs.setdefault("Accept", accept)
    async with http.request(
        method,
        URL(base + path, encoded=True),
        data=data,
        headers=hdrs,
        skip_auto_headers=skip_auto_headers,
    ) as resp:
        return Answer(resp.status, CIMultiDict(resp.headers), await resp.read())


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session


@pytest.fixture
async def directory(redis_url: str) -> AsyncIterator[RedisDirectory]:
    """The replicas' own directory (same Redis, same key prefix), read and written directly."""
    d = RedisDirectory(redis_url)
    await d.start()
    yield d
    await d.stop()


async def owner_of(directory: RedisDirectory, group: str, name: str) -> tuple[str, int]:
    rec = await directory.get(group, name)
    assert rec is not None, (group, name)
    return rec.owner, rec.epoch


def assert_confluent_error(answer: Answer, status: int, code: int) -> None:
    assert answer.status == status, (answer.status, answer.raw)
    body = answer.body
    assert isinstance(body, dict) and set(body) == {"error_code", "message"}, answer.raw
    assert body["error_code"] == code, body
    assert isinstance(body["message"], str) and body["message"], body


# --- names and queries that must survive the hop byte for byte -----------------------------------

# (group on the wire, instance on the wire, group, instance): ~ written as %7E (Java's
# URLEncoder does), spaces as %20, a non-ASCII letter as its UTF-8 escapes.
ENCODED_NAMES = [
    ("team%7Ex-{u}", "c%7E1", "team~x-{u}", "c~1"),
    ("my%20group-{u}", "consumer%20one", "my group-{u}", "consumer one"),
    ("gr%C3%BCn-{u}", "%C3%BC", "grün-{u}", "ü"),
]


async def test_encoded_names_and_query_values_answer_through_a_non_owner_as_on_the_owner(
    make_cluster: MakeClusterFn,
    new_topic: NewTopicFn,
    http: aiohttp.ClientSession,
    directory: RedisDirectory,
) -> None:
    cluster = await make_cluster(n=2)
    owner, other = cluster.urls
    for wire_group, wire_name, group, name in ENCODED_NAMES:
        u = uuid.uuid4().hex[:8]
        wire_group, group = wire_group.format(u=u), group.format(u=u)
        await _whole_life_through_a_non_owner(
            http, directory, owner, other, await new_topic(partitions=1), wire_group,
            wire_name, group, name,
        )  # fmt: skip


async def _whole_life_through_a_non_owner(
    http: aiohttp.ClientSession,
    directory: RedisDirectory,
    owner: str,
    other: str,
    topic: str,
    wire_group: str,
    wire_name: str,
    group: str,
    name: str,
) -> None:
    case = f"{group!r}/{name!r}"
    inst = f"/consumers/{wire_group}/instances/{wire_name}"

    created = await call(
        http, owner, "POST", f"/consumers/{wire_group}", {"name": name, "format": "binary",
        "auto.offset.reset": "earliest"},
    )  # fmt: skip
    assert created.status == 200, (case, created.raw)
    assert created.body["instance_id"] == name, case
    node, epoch = await owner_of(directory, group, name)

    subscribed = await call(http, other, "POST", inst + "/subscription", {"topics": [topic]})
    assert subscribed.status == 204, (case, subscribed.raw)

    # Three records of 400 bytes: a read capped at max_bytes=1000 returns two of them.
    values = [bytes([65 + i]) * 400 for i in range(3)]
    produced = await call(
        http,
        other,
        "POST",
        f"/topics/{topic}",
        {"records": [{"value": base64.b64encode(v).decode()} for v in values]},
        ctype=BINARY,
    )
    assert produced.status == 200, (case, produced.raw)

    # max_bytes=%31000 is "1000" and timeout=%33000 is "3000", once decoded by the owner.
    batches: list[list[bytes]] = []
    for _ in range(20):
        read = await call(
            http, other, "GET", inst + "/records?max_bytes=%31000&timeout=%33000", accept=BINARY
        )
        assert (read.status, read.ctype) == (200, BINARY), (case, read.raw)
        if read.body:
            batches.append([base64.b64decode(r["value"]) for r in read.body])
        if sum(map(len, batches)) >= 3:
            break
    assert [v for b in batches for v in b] == values, case
    assert max(map(len, batches)) == 2, (case, [len(b) for b in batches])

    committed = await call(http, other, "POST", inst + "/offsets")  # everything delivered
    assert (committed.status, committed.body) == (200, []), (case, committed.raw)

    # The same questions answer byte for byte alike through the owner and through the hop.
    offsets = {"partitions": [{"topic": topic, "partition": 0}]}
    for method, suffix, body in [
        ("GET", "/subscription", None),
        ("GET", "/assignments", None),
        ("GET", "/offsets", offsets),
    ]:
        direct = await call(http, owner, method, inst + suffix, body, accept=V2_JSON)
        hopped = await call(http, other, method, inst + suffix, body, accept=V2_JSON)
        assert direct.status == 200, (case, suffix, direct.raw)
        assert (hopped.status, hopped.ctype, hopped.raw) == (
            direct.status,
            direct.ctype,
            direct.raw,
        ), (case, suffix)
        if suffix == "/offsets":
            assert direct.body["offsets"][0]["offset"] == 3, (case, direct.body)

    # Every request above went through the non-owner, which forwarded it: nothing moved.
    assert await owner_of(directory, group, name) == (node, epoch), case

    deleted = await call(http, other, "DELETE", inst)
    assert deleted.status == 204, (case, deleted.raw)
    for base in (owner, other):
        gone = await call(http, base, "GET", inst + "/subscription")
        assert_confluent_error(gone, 404, 40403)


# --- replayed and tampered hops ---------------------------------------------------------------


async def test_replayed_and_tampered_forwarded_requests_are_refused(
    make_cluster: MakeClusterFn, http: aiohttp.ClientSession, directory: RedisDirectory
) -> None:
    cluster = await make_cluster(n=2)
    owner, other = cluster.urls
    secret = cluster.secret
    group = "g-" + uuid.uuid4().hex[:10]
    for base, name in [(owner, "r"), (owner, "r2"), (other, "x")]:
        assert (await call(http, base, "POST", f"/consumers/{group}", {"name": name})).status == 200
    owner_node, _ = await owner_of(directory, group, "r")
    other_node, _ = await owner_of(directory, group, "x")
    assert owner_node != other_node
    inst = f"/consumers/{group}/instances/r"
    path = inst + "/subscription"
    body = b'{"topics":["replayed-topic"]}'

    def hop_headers(
        *, target: str = owner_node, p: str = path, b: bytes = body, ct: str = V2_JSON
    ) -> dict[str, str]:
        """What a replica sends when it forwards ``POST p`` to ``target``."""
        return {
            "Content-Type": ct,
            "Accept": V2_JSON,
            HEADER: signed_header(
                secret, target=target, method="POST", path_qs=p, content_type=ct,
                accept=V2_JSON, body=b,
            ),
        }  # fmt: skip

    async def topics(name: str) -> list[str]:
        got = await call(http, other, "GET", f"/consumers/{group}/instances/{name}/subscription")
        assert got.status == 200, got.raw
        return list(got.body["topics"])

    # A genuine hop is served once ...
    genuine = hop_headers()
    first = await call(http, owner, "POST", path, raw=body, headers=genuine)
    assert first.status == 204, first.raw
    assert await topics("r") == ["replayed-topic"]
    assert (await call(http, other, "DELETE", path)).status == 204
    assert await topics("r") == []
    # ... and its exact copy (same headers, same body) is refused and changes nothing.
    replay = await call(http, owner, "POST", path, raw=body, headers=genuine)
    assert_confluent_error(replay, 403, 40301)
    assert "replayed" in replay.body["message"]
    assert await topics("r") == []

    # Tampered: signed for one request, sent as another.
    moved_target = hop_headers(target=other_node)
    parts = moved_target[HEADER].split(";")
    parts[2] = owner_node  # readdressed to the owner, keeping the other node's signature
    moved_target[HEADER] = ";".join(parts)
    tampered: dict[str, tuple[str, bytes, dict[str, str]]] = {
        "path": (f"/consumers/{group}/instances/r2/subscription", body, hop_headers()),
        "body": (path, b'{"topics":["tampered"]}', hop_headers()),
        "content type": (path, body, {**hop_headers(), "Content-Type": "application/json"}),
        "accept": (path, body, {**hop_headers(), "Accept": "application/json"}),
        "target node": (path, body, moved_target),
    }
    for what, (p, b, headers) in tampered.items():
        answer = await call(http, owner, "POST", p, raw=b, headers=headers)
        assert_confluent_error(answer, 403, 40301)
        assert answer.body["message"] == "Forwarded request refused: bad signature", what
        assert answer.ctype is not None and answer.ctype.startswith("application/json"), what
    assert await topics("r") == [] and await topics("r2") == []

    # Forgeries of every other kind, on the owner and the non-owner alike.
    now = time.time()
    forged = {
        "wrong signature": f"{now:.3f};{'0' * 32};{owner_node};{'0' * 64}",
        "another secret": signed_header(
            "not-the-cluster-secret", target=owner_node, method="POST", path_qs=path,
            content_type=V2_JSON, accept=V2_JSON, body=body,
        ),
        "expired": signed_header(
            secret, target=owner_node, method="POST", path_qs=path, content_type=V2_JSON,
            accept=V2_JSON, body=body, ts=f"{now - 3600:.3f}",
        ),
        "previous protocol's value": f"{now:.3f}." + "0" * 64,
        "malformed": "not-a-signature",
        "empty": "",
    }  # fmt: skip
    for what, header in forged.items():
        for base in cluster.urls:
            headers = {"Content-Type": V2_JSON, "Accept": V2_JSON, HEADER: header}
            answer = await call(http, base, "POST", path, raw=body, headers=headers)
            assert answer.status == 403, (what, base, answer.raw)
            assert_confluent_error(answer, 403, 40301)
    assert await topics("r") == []

    # Genuine hops this node must not take: retriable, never served, never forwarded again.
    # One from a replica of the previous version (a rolling upgrade) is among them.
    legacy = {"Content-Type": V2_JSON, LEGACY_HEADER: f"{now:.3f}." + "0" * 64}
    for base in cluster.urls:
        old_hop = await call(http, base, "POST", path, raw=body, headers=legacy)
        assert_confluent_error(old_hop, 503, 50301)
    misaddressed = await call(
        http, owner, "POST", path, raw=body, headers=hop_headers(target=other_node)
    )
    assert_confluent_error(misaddressed, 503, 50301)
    assert misaddressed.headers["Retry-After"] == "1"
    at_non_owner = await call(http, other, "POST", path, raw=body, headers=hop_headers())
    assert_confluent_error(at_non_owner, 503, 50301)
    assert await topics("r") == []

    # Without the header any replica serves the instance (the non-owner forwards it).
    for base in cluster.urls:
        plain = await call(http, base, "GET", path, accept=V2_JSON)
        assert (plain.status, plain.body) == (200, {"topics": []})
    for base, name in [(other, "r"), (other, "r2"), (owner, "x")]:
        gone = await call(http, base, "DELETE", f"/consumers/{group}/instances/{name}")
        assert gone.status == 204


# --- a stand-in owner: what real replicas send, and what they do when the owner misbehaves ---------


@dataclass
class StandIn:
    """An "owner" for instances whose directory record names ``node``; each instance name
    picks a behaviour (see :meth:`handle`)."""

    secret: str
    node: str = field(default_factory=lambda: f"stand-in:0:{uuid.uuid4().hex[:12]}")
    url: str = ""
    seen: list[dict[str, Any]] = field(default_factory=list)
    hang_ups: list[float] = field(default_factory=list)  # seconds a held request lasted
    records: list[tuple[str, str]] = field(default_factory=list)  # (group, name) it owns
    nonces: NonceCache = field(default_factory=NonceCache)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            verified: object = await verify(
                request, self.secret, node_id=self.node, nonces=self.nonces
            )
        except Exception as exc:  # recorded, so the test says what was wrong
            verified = repr(exc)
        self.seen.append(
            {
                "raw_path": request.raw_path,
                "verified": verified,
                "content_type": request.headers.getall("Content-Type", []),
                "accept": request.headers.getall("Accept", []),
            }
        )
        name = request.match_info["instance"]
        if name == "broken":  # headers promising 4000 bytes, a piece of the body, then gone
            response = web.StreamResponse(
                status=200, headers={"Content-Type": BINARY, "Content-Length": "4000"}
            )
            await response.prepare(request)
            await response.write(b'[{"topic":"t","key":null,"value":"AAAA"')
            await asyncio.sleep(0.3)
            assert request.transport is not None
            request.transport.abort()
            return response
        if name == "hold":  # a long poll: wait until the forwarding replica hangs up
            if (lasted := await hung_up(request, limit_s=30)) is not None:
                self.hang_ups.append(lasted)
            return web.Response(status=200, body=b"[]", content_type=BINARY)
        if name == "slow":  # an owner taking long but within its own worst case
            await asyncio.sleep(float(request.query.get("after", "0")))
            return web.Response(status=204)
        if name == "silent":  # never answers (until the replica gives up on it)
            await hung_up(request, limit_s=30)
        return web.json_response({"topics": ["stand-in"]}, content_type=V2_JSON)


async def hung_up(request: web.Request, limit_s: float) -> float | None:
    """Seconds until the connection ``request`` came on closed, None if it outlived
    ``limit_s`` (aiohttp does not tell a handler; its transport goes)."""
    began = time.monotonic()
    while time.monotonic() - began < limit_s:
        transport = request.transport
        if transport is None or transport.is_closing():
            return time.monotonic() - began
        await asyncio.sleep(0.02)
    return None


@contextlib.asynccontextmanager
async def stand_in_owner(secret: str, directory: RedisDirectory) -> AsyncIterator[StandIn]:
    """A :class:`StandIn` serving on loopback with a live lease in the directory.

    Served by a plain AppRunner (aiohttp's default: handlers are not cancelled when their
    client goes away), as a real replica is.
    """
    stand_in = StandIn(secret)
    app = web.Application()
    app.router.add_route("*", "/consumers/{group}/instances/{instance}{tail:.*}", stand_in.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        stand_in.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        await directory.renew_lease(stand_in.node, stand_in.url, 120_000)
        yield stand_in
    finally:
        for group, name in stand_in.records:
            await directory.delete(group, name, stand_in.node, 1)
        await directory.drop_lease(stand_in.node)
        await runner.cleanup()


async def owned_by(
    directory: RedisDirectory, stand_in: StandIn, group: str, name: str, **spec: Any
) -> None:
    spec = {"group": group, "name": name, "format": "binary", **spec}
    record = InstanceRecord(group, name, stand_in.node, 1, spec)
    assert await directory.create(record, 120_000)
    stand_in.records.append((group, name))


async def test_real_replicas_sign_for_the_owner_and_send_the_path_as_received(
    make_cluster: MakeClusterFn, http: aiohttp.ClientSession, directory: RedisDirectory
) -> None:
    cluster = await make_cluster(n=1)
    (replica,) = cluster.urls
    u = uuid.uuid4().hex[:8]
    wire_group, group = f"team%7Ex%20%C3%BC-{u}", f"team~x ü-{u}"
    async with stand_in_owner(cluster.secret, directory) as stand_in:
        await owned_by(directory, stand_in, group, "echo")
        path = f"/consumers/{wire_group}/instances/echo/subscription?x=%31&y=%7E"
        for base in (replica, cluster.lb_url):
            answer = await call(http, base, "GET", path, accept="application/vnd.kafka.v2+json")
            assert (answer.status, answer.body) == (200, {"topics": ["stand-in"]}), answer.raw
            got = stand_in.seen[-1]
            assert got["raw_path"] == path
            assert got["verified"] is True, got
            assert (got["content_type"], got["accept"]) == ([], [V2_JSON]), got
        # A body-carrying request: the client's Content-Type, no Accept added on the way.
        answer = await call(
            http, replica, "POST", f"/consumers/{wire_group}/instances/echo/subscription",
            {"topics": ["t"]}, skip_auto_headers=("Accept",),
        )  # fmt: skip
        got = stand_in.seen[-1]
        assert got["verified"] is True, got
        assert (got["content_type"], got["accept"]) == ([V2_JSON], []), got


async def test_an_owner_breaking_off_mid_body_is_an_error_not_a_short_200(
    make_cluster: MakeClusterFn, http: aiohttp.ClientSession, directory: RedisDirectory
) -> None:
    cluster = await make_cluster(n=1)
    group = "g-" + uuid.uuid4().hex[:10]
    async with stand_in_owner(cluster.secret, directory) as stand_in:
        await owned_by(directory, stand_in, group, "broken")
        path = f"/consumers/{group}/instances/broken/records"
        for base in (cluster.urls[0], cluster.lb_url):
            outcome: object
            try:
                async with http.get(base + path, headers={"Accept": BINARY}) as resp:
                    body = await asyncio.wait_for(resp.read(), 20)
                    outcome = (resp.status, len(body))
            except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
                outcome = exc
            if base == cluster.lb_url and isinstance(outcome, tuple) and outcome[0] == 502:
                continue  # HAProxy may answer 502 itself if the head had not left it yet
            assert isinstance(outcome, BaseException), f"via {base}: a complete answer {outcome}"
            assert stand_in.seen[-1]["verified"] is True


async def test_a_client_hanging_up_hangs_up_the_hop(
    make_cluster: MakeClusterFn, http: aiohttp.ClientSession, directory: RedisDirectory
) -> None:
    """The owner must see its connection go when the client gives up on a long poll, or it
    writes the records to a replica that reads them for nobody (and counts them delivered).
    The hop's own budget here is 30 s (the instance's wait) plus Kafka's: far away."""
    cluster = await make_cluster(n=1)
    group = "g-" + uuid.uuid4().hex[:10]
    async with stand_in_owner(cluster.secret, directory) as stand_in:
        await owned_by(directory, stand_in, group, "hold", request_timeout_ms=30_000)
        path = f"/consumers/{group}/instances/hold/records"
        for i, base in enumerate((cluster.urls[0], cluster.lb_url)):
            with pytest.raises(TimeoutError):
                await http.get(
                    base + path,
                    headers={"Accept": BINARY},
                    timeout=aiohttp.ClientTimeout(total=1.0),
                )
            for _ in range(100):
                if len(stand_in.hang_ups) > i:
                    break
                await asyncio.sleep(0.05)
            assert len(stand_in.hang_ups) == i + 1, (base, stand_in.hang_ups)
            assert stand_in.hang_ups[i] < 3.0, (base, stand_in.hang_ups)


async def test_the_hop_waits_as_long_as_the_owner_may_and_no_longer(
    make_cluster: MakeClusterFn, http: aiohttp.ClientSession, directory: RedisDirectory
) -> None:
    """With one Kafka call bounded at 1 s, a seek may take the owner 5 s (waiting for an
    assignment) plus two Kafka calls: a hop giving up after the records wait plus one Kafka
    call (7 s with the margin) would answer 503 for a seek the owner is about to complete.
    A question the owner never answers is still a bounded, retriable 503."""
    cluster = await make_cluster(n=1, props={"kafka.timeout.ms": "1000"})
    group = "g-" + uuid.uuid4().hex[:10]
    async with stand_in_owner(cluster.secret, directory) as stand_in:
        await owned_by(directory, stand_in, group, "slow")
        await owned_by(directory, stand_in, group, "silent")
        seek = {"offsets": [{"topic": "t", "partition": 0, "offset": 0}]}

        async def timed(coro: Any) -> tuple[Answer, float]:
            began = time.monotonic()
            answer = await coro
            return answer, time.monotonic() - began

        (seeked, seek_s), (silent, silent_s) = await asyncio.gather(
            timed(
                call(
                    http, cluster.urls[0], "POST",
                    f"/consumers/{group}/instances/slow/positions?after=9", seek,
                )
            ),
            timed(call(http, cluster.urls[0], "GET", f"/consumers/{group}/instances/silent/subscription")),
        )  # fmt: skip
        assert seeked.status == 204, (seeked.raw, seek_s)
        assert 9 <= seek_s < 12, seek_s
        assert_confluent_error(silent, 503, 50302)
        assert silent.headers["Retry-After"] == "1"
        assert 5.5 <= silent_s < 9, silent_s  # one Kafka call and the margin: 6 s
