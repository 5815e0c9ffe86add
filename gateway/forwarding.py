"""One hop to the replica that owns a consumer instance, signed with the cluster secret.

Everything about the hop is here: the :func:`forwarding` wrapper every consumer-instance route
is registered with, the time budget of a hop, signing, and the verification the owner does.

Only the owner of an instance can serve it (it holds the live Kafka consumer), so a replica
that receives a request for someone else's instance forwards it verbatim over a pooled
keep-alive client and streams the answer back byte for byte. The handler validates the
request first (client mistakes never cost a hop), asks the router, and raises
:class:`ForwardTo` when the answer is :class:`~sessions.router.Forward`; the wrapper catches
it and forwards. A forwarded request is never forwarded again.

Replicas must not be an open proxy into each other, so the owner accepts a forwarded request
only with a valid HMAC (cluster secret) over everything that decides what the owner does and
how it answers: method, the raw path and query as sent, Content-Type, Accept, the body, the
node the hop is addressed to, a timestamp and a random nonce. The node id and the nonce make
a captured request useless: each node remembers the nonces it accepted for as long as their
timestamp is inside the window (so a second copy is refused), and a copy sent to any other
node (which keeps its own nonces) is refused because it was addressed elsewhere.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import heapq
import hmac
import logging
import math
import re
import secrets
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import wraps

import aiohttp
import orjson
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from sessions.errors import Moving
from sessions.instance import ASSIGNMENT_WAIT_S
from sessions.router import Forward

from . import media
from .errors import GatewayError
from .registry.client import TOTAL_TIMEOUT_S as REGISTRY_TIMEOUT_S
from .security.principal import ANONYMOUS, Principal, principal_of
from .workers.identity import WorkerIdentity

log = logging.getLogger(__name__)

HEADER = "X-Event-Gateway-Hop"
# A relayed record stream's name, chosen by the replica relaying it: when that replica drains
# it asks the owner (a signed POST to STREAM_END_PATH) to end the stream cleanly, and relays
# everything up to that end, so the client reconnects having lost nothing.
STREAM_HEADER = "X-Event-Gateway-Stream"
STREAM_END_PATH = "/_gateway/streams/{token}/end"
# Who the client is, as authenticated by the replica it reached (signed with the hop).
PRINCIPAL_HEADER = "X-Event-Gateway-Principal"
# The previous protocol's header ("<ts>.<sig>" over method, path and body only). A new name,
# so that during a rolling upgrade neither version misreads the other's hop: an old replica
# takes a new hop for a client's request and serves it as one, and a new replica answers an
# old hop with a retriable 503 (never served, never forwarded again: no loop).
LEGACY_HEADER = "X-Event-Gateway-Forwarded"
# How far a forwarded request's timestamp may be from the owner's clock; also how long its
# nonce is remembered (an older copy is refused by the clock, so it need not be).
MAX_SKEW_S = 60
# Accepted nonces remembered at most; past it the oldest are dropped and the window narrows
# to what is remembered (see NonceCache), so memory stays bounded under any flood.
MAX_NONCES = 65_536
# Added to the owner's worst case: routing on the owner (Redis round trips), scheduling, and
# the response on the wire.
MARGIN_S = 5.0
# Request headers that change what the owner does or how it answers; the two it negotiates
# on are signed, the others only describe the client (base_uri, scheme).
SIGNED_HEADERS = ("Content-Type", "Accept")
_KEEP_REQUEST = (*SIGNED_HEADERS, "Host", "X-Forwarded-Proto")
# Headers that carry meaning for a v2 response and must survive the hop (Content-Length is
# passed on separately: it is what lets a client notice a body cut short). The last two are a
# record stream's: proxies in front of this replica must neither cache nor buffer it either.
_KEEP_RESPONSE = ("Content-Type", "Retry-After", "Cache-Control", "X-Accel-Buffering")
# aiohttp's client adds these when absent; the owner must see exactly what the client sent.
_NO_AUTO_HEADERS = ("Content-Type", "Accept", "Accept-Encoding")
_CHUNK = 64 * 1024
# How often in-flight hops are checked for a client that went away (one timer for all).
DISCONNECT_CHECK_S = 0.1
_SIGNING_DOMAIN = b"event-gateway forwarded request v2"
_NONCE = re.compile(r"[0-9a-f]{32}")
_HEX_SIG = re.compile(r"[0-9a-f]{64}")

FORWARDED: web.RequestKey[bool] = web.RequestKey("forwarded", bool)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ForwardTo(Exception):
    """Raised by a consumer handler whose instance lives on another replica."""

    def __init__(self, route: Forward) -> None:
        super().__init__(route.url)
        self.route = route


def forwarding(handler: Handler) -> Handler:
    """``handler``, except that a :class:`ForwardTo` it raises becomes the hop to the owner."""

    @wraps(handler)
    async def routed(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ForwardTo as fwd:
            return await request.app[FORWARDER].forward(request, fwd.route)

    return routed


# --- signing ------------------------------------------------------------------------------------


def signature(
    secret: str,
    *,
    ts: str,
    nonce: str,
    target: str,
    method: str,
    path_qs: str,
    content_type: str,
    accept: str,
    body: bytes,
    principal: str = "",
) -> str:
    """HMAC-SHA256 (hex) over every field, each length-prefixed so no two requests share a
    message (no field can contain a separator that shifts the others). ``principal`` is the
    :data:`PRINCIPAL_HEADER` value: who the client authenticated as on the first replica."""
    fields = (ts, nonce, target, method.upper(), path_qs, content_type, accept, principal)
    msg = [_SIGNING_DOMAIN]
    for text in fields:
        raw = text.encode("utf-8", "surrogateescape")
        msg += [len(raw).to_bytes(4, "big"), raw]
    msg.append(hashlib.sha256(body).digest())
    return hmac.new(secret.encode(), b"".join(msg), hashlib.sha256).hexdigest()


def signed_header(
    secret: str,
    *,
    target: str,
    method: str,
    path_qs: str,
    content_type: str = "",
    accept: str = "",
    body: bytes = b"",
    ts: str | None = None,
    nonce: str | None = None,
    principal: str = "",
) -> str:
    """The value of :data:`HEADER`: ``<ts>;<nonce>;<target node id>;<hex signature>``.

    The node id comes last but one and is split off from both ends, so whatever characters a
    node id has, parsing is unambiguous.
    """
    ts = f"{time.time():.3f}" if ts is None else ts
    nonce = secrets.token_hex(16) if nonce is None else nonce
    sig = signature(
        secret,
        ts=ts,
        nonce=nonce,
        target=target,
        method=method,
        path_qs=path_qs,
        content_type=content_type,
        accept=accept,
        body=body,
        principal=principal,
    )
    return f"{ts};{nonce};{target};{sig}"


def encode_principal(principal: Principal) -> str:
    """The caller as the hop carries it (inside the signature): the owner cannot see the
    client's credentials (a client certificate never reaches it), so it trusts the signed
    statement of the replica that authenticated the client. Secrets never travel."""
    if principal.anonymous:
        return ""
    doc = {"name": principal.name, "groups": sorted(principal.groups), "method": principal.method}
    return base64.urlsafe_b64encode(orjson.dumps(doc)).decode()


def decode_principal(value: str) -> Principal:
    """The principal of a verified hop (only ever called after the signature checked out)."""
    if not value:
        return ANONYMOUS
    doc = orjson.loads(base64.urlsafe_b64decode(value))
    return Principal(doc["name"], frozenset(doc.get("groups", ())), doc.get("method", "hop"))


def header_value(headers: CIMultiDict[str] | web.Request, name: str) -> str:
    """Every occurrence of a header, as the signature covers it (duplicates all travel)."""
    source = headers.headers if isinstance(headers, web.Request) else headers
    return ", ".join(source.getall(name, ()))


def refused(reason: str) -> GatewayError:
    return GatewayError(403, 40301, f"Forwarded request refused: {reason}")


class NonceCache:
    """Nonces of accepted forwarded requests, each kept until its timestamp leaves the window.

    Bounded: when full, the nonce with the oldest timestamp is dropped and no request that old
    is accepted any more (``floor``), so a dropped nonce can never be replayed; under a flood
    the window only narrows to the newest :data:`MAX_NONCES` requests, which genuine hops
    (milliseconds old) always fall inside.
    """

    def __init__(self, capacity: int = MAX_NONCES, window_s: float = MAX_SKEW_S) -> None:
        self.capacity = capacity
        self.window_s = window_s
        self.floor = -math.inf
        self._seen: set[str] = set()
        self._by_ts: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._seen)

    def admit(self, nonce: str, ts: float, now: float) -> str | None:
        """None if ``nonce`` is new (and now remembered), else why it is refused."""
        while self._by_ts and self._by_ts[0][0] < now - self.window_s:
            self._seen.discard(heapq.heappop(self._by_ts)[1])
        if nonce in self._seen:
            return "replayed"
        if ts <= self.floor:
            return "too old for the replay window"
        while len(self._seen) >= self.capacity:
            oldest, dropped = heapq.heappop(self._by_ts)
            self._seen.discard(dropped)
            self.floor = max(self.floor, oldest)
        if ts <= self.floor:
            return "too old for the replay window"
        self._seen.add(nonce)
        heapq.heappush(self._by_ts, (ts, nonce))
        return None


def hop_target(value: str) -> str:
    """The node a hop header (``ts;nonce;target;sig``) is addressed to; "" if malformed."""
    _, _, rest = value.partition(";")
    _, _, rest = rest.partition(";")
    target, _, _ = rest.rpartition(";")
    return target


async def verify(request: web.Request, secret: str, *, node_id: str, nonces: NonceCache) -> bool:
    """True for a correctly signed forwarded request, False for a client request; else refuse.

    403 for anything not signed by a replica with this cluster's secret, or already seen;
    a retriable error (not 403) for a genuine hop this node cannot take: one addressed to
    another node (a stale view of who owns what, e.g. this node restarted on the same URL),
    or one past the narrowed replay window under a flood.
    """
    value = request.headers.get(HEADER)
    if value is None:
        if LEGACY_HEADER in request.headers:
            raise Moving(
                "Forwarded by a replica running an older version of the gateway (a rolling "
                "upgrade is under way); retry the request"
            )
        return False
    if not secret:
        raise refused("this replica has no cluster.secret")
    ts, _, rest = value.partition(";")
    nonce, _, rest = rest.partition(";")
    target, _, sig = rest.rpartition(";")
    if not (ts.isascii() and _NONCE.fullmatch(nonce) and target and _HEX_SIG.fullmatch(sig)):
        raise refused("malformed signature header")
    try:
        sent_at = float(ts)
    except ValueError:
        raise refused("malformed signature header") from None
    now = time.time()
    if not math.isfinite(sent_at) or abs(now - sent_at) > MAX_SKEW_S:
        raise refused("signature expired")
    body = await request.read()
    expected = signature(
        secret,
        ts=ts,
        nonce=nonce,
        target=target,
        method=request.method,
        path_qs=request.raw_path,
        content_type=header_value(request, "Content-Type"),
        accept=header_value(request, "Accept"),
        body=body,
        principal=request.headers.get(PRINCIPAL_HEADER, ""),
    )
    # Bytes, not str: compare_digest refuses non-ASCII text with a TypeError (a 500), and
    # any client can send any header bytes; only hex gets this far, but the rule stays.
    if not hmac.compare_digest(expected.encode(), sig.encode("utf-8", "surrogateescape")):
        raise refused("bad signature")
    if target != node_id:
        raise Moving(
            "Consumer instance is moving between replicas (the request reached a replica "
            "other than its owner); retry the request"
        )
    why = nonces.admit(nonce, sent_at, now)
    if why == "replayed":
        raise refused("replayed")
    if why is not None:
        raise GatewayError(
            503, 50302, "Too many forwarded requests on this replica; retry", retry_after=1
        )
    return True


# --- the hop ------------------------------------------------------------------------------------


def wire_target(owner_url: str, raw_path: str) -> URL:
    """The owner's URL for ``raw_path``, byte for byte where HTTP allows.

    ``encoded=True``: yarl would otherwise normalise the path (%7E -> ~, %35 -> 5) and the
    owner would see, and verify, another path than the client sent. A proxy's absolute-form
    target keeps only its path and query; bytes HTTP does not allow in a request line (never
    seen on a valid one) are percent-encoded rather than breaking the owner's parser.
    """
    if not raw_path.startswith("/"):
        raw_path = URL(raw_path, encoded=True).raw_path_qs or "/"
    raw = raw_path.encode("utf-8", "surrogateescape")
    if not all(0x21 <= b <= 0x7E for b in raw):
        raw_path = "".join(chr(b) if 0x21 <= b <= 0x7E else f"%{b:02X}" for b in raw)
    return URL(owner_url.rstrip("/") + raw_path, encoded=True)


def _sendable(value: str) -> str:
    """``value`` as it can travel: aiohttp's parser hands over bytes that are not UTF-8 as
    surrogate escapes, and its client silently drops those when it writes the header, so the
    owner would see (and verify) other text than was signed. U+FFFD instead: still garbage
    to the owner's negotiation, but the same garbage on both ends."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return value


_SEEKS = ("/positions", "/positions/beginning", "/positions/end")


def _route_shape(request: web.Request) -> str:
    """The matched route's pattern ("/consumers/{group}/instances/{instance}/records"): what
    the request does, whatever its group and instance are called (an instance may well be
    named "records")."""
    canonical = getattr(request.match_info.route.resource, "canonical", None)
    return canonical if isinstance(canonical, str) else request.path


def _is_stream(request: web.Request) -> bool:
    """Whether the request is a records read asking for a stream (SSE / NDJSON) rather than
    one answer."""
    if request.method.upper() != "GET" or not _route_shape(request).endswith("/records"):
        return False
    try:
        return media.records_type(request) in media.STREAM_TYPES
    except GatewayError:  # not acceptable: the owner answers 406 at once
        return False


def _owner_not_answering() -> GatewayError:
    return GatewayError(
        503,
        50302,
        "The replica that owns this consumer instance is not answering; retry the "
        "request (it is taken over once its lease expires).",
        retry_after=1,
    )


class Forwarder:
    """The pooled inter-replica client and the owner-side nonce memory.

    Explicit ``start()`` / ``stop()``. ``default_wait_ms`` is ``consumer.request.timeout.ms``
    and ``kafka_timeout_ms`` the bound on one Kafka call: with the request itself they bound
    how long the owner may take (see :meth:`budget_s`).
    """

    def __init__(
        self,
        secret: str,
        *,
        default_wait_ms: int,
        kafka_timeout_ms: int,
        connect_timeout_s: float = 2.0,
        ssl_context: ssl.SSLContext | None = None,
        max_wait_ms: int | None = None,
        worker: WorkerIdentity | None = None,
        stream_heartbeat_ms: int = 15_000,
    ) -> None:
        self._secret = secret
        self._default_wait_ms = default_wait_ms
        self._max_wait_ms = max(max_wait_ms or 0, default_wait_ms)
        self._kafka_timeout_ms = kafka_timeout_ms
        # A record stream is silent for at most this long (then it sends a heartbeat).
        self._stream_heartbeat_s = stream_heartbeat_ms / 1000
        # With workers: siblings are reached over their Unix sockets, one pool per sibling.
        self.worker = worker
        self._siblings: dict[str, aiohttp.ClientSession] = {}
        self._connect_timeout = connect_timeout_s
        # For https node URLs: trusts the replicas' CA (None: aiohttp's default, the system
        # store), see gateway/security/tls.py.
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._session: aiohttp.ClientSession | None = None
        self.nonces = NonceCache()
        # Record streams this replica relays: token -> (session, owner base URL, owner node id).
        self._relayed: dict[str, tuple[aiohttp.ClientSession, str, str]] = {}
        self._draining = False
        # Hops in flight: the handler task -> its client's request (see _watch_clients).
        self._inflight: dict[asyncio.Task[object], web.Request] = {}
        self._busy = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None
        # Called once per hop with its duration (s) and "ok" / "error" (the hop itself failed,
        # not the owner's answer); set by the metrics, kept as a hook so this module stays
        # free of them.
        self.on_hop: Callable[[float, str], None] | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=30, ssl=self._ssl),
            auto_decompress=False,
        )
        self._watcher = asyncio.create_task(self._watch_clients())

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        siblings, self._siblings = self._siblings, {}
        for session in siblings.values():
            await session.close()

    def _sibling_session(self, path: str) -> aiohttp.ClientSession:
        session = self._siblings.get(path)
        if session is None or session.closed:
            session = self._siblings[path] = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path, limit=256, keepalive_timeout=30),
                auto_decompress=False,
            )
        return session

    def sibling_for_hop(self, request: web.Request) -> str | None:
        """The socket of the sibling worker a hop is addressed to, if it is a sibling's."""
        value = request.headers.get(HEADER)
        if self.worker is None or value is None:
            return None
        return self.worker.sibling_socket(hop_target(value))

    async def relay(self, request: web.Request, path: str) -> web.StreamResponse:
        """Pass a hop addressed to a sibling worker on, unchanged, over its socket.

        Another replica addresses the owning worker by node id but reaches the replica's
        shared listener, where any worker may accept the connection. The hop is not
        verified here but by the sibling (its nonce memory is the one that counts), and it
        is not signed again: the bytes the owner verifies are the ones the sender signed.
        """
        headers: CIMultiDict[str] = CIMultiDict()
        for name in (*_KEEP_REQUEST, HEADER, PRINCIPAL_HEADER, STREAM_HEADER):
            for value in request.headers.getall(name, ()):
                headers.add(name, _sendable(value))
        kafka_s = self._kafka_timeout_ms / 1000
        # The sibling's worst case for any operation (see budget_s), whatever it is.
        budget = self._max_wait_ms / 1000 + 3 * kafka_s + REGISTRY_TIMEOUT_S + ASSIGNMENT_WAIT_S
        if _is_stream(request):
            budget = max(budget, self._stream_gap_s(None))
        return await self._watched(
            request,
            self._exchange(
                request,
                self._sibling_session(path),
                wire_target("http://localhost", request.raw_path),
                headers,
                await request.read(),
                budget + MARGIN_S,
                path,
            ),
        )

    async def verify(self, request: web.Request, node_id: str) -> bool:
        """:func:`verify` with this replica's secret and nonce memory."""
        return await verify(request, self._secret, node_id=node_id, nonces=self.nonces)

    def budget_s(self, route: Forward, request: web.Request) -> float:
        """The owner's worst case for this request, plus a margin: the hop never gives up
        before the owner would (it would answer a 503 while the owner still served it)."""
        kafka_s = self._kafka_timeout_ms / 1000
        method, shape = request.method.upper(), _route_shape(request)
        if _is_stream(request):
            # The hop's read timeout applies between chunks, and a stream is never silent for
            # longer than this (the owner's heartbeats), however long it stays open.
            return self._stream_gap_s(route.record.spec.get("format", "binary")) + MARGIN_S
        if method == "GET" and shape.endswith("/records"):
            spec_wait = route.record.spec.get("request_timeout_ms")
            wait_ms = spec_wait if isinstance(spec_wait, int) else self._default_wait_ms
            with contextlib.suppress(ValueError):
                if (query := int(request.query.get("timeout", ""))) > 0:
                    wait_ms = min(wait_ms, query)
            # The read waits, then one fetch may take a Kafka call past its deadline; schema
            # formats may ask the registry about records fetched at the last moment.
            worst = max(wait_ms, 0) / 1000 + kafka_s
            if route.record.spec.get("format", "binary") not in ("binary", "json"):
                worst += REGISTRY_TIMEOUT_S
        elif method == "POST" and shape.endswith(_SEEKS):
            # Waits for the group to assign partitions, then offsets_for_times and
            # end_offsets (a timestamp seek past the last record).
            worst = ASSIGNMENT_WAIT_S + 2 * kafka_s
        elif method == "DELETE" and shape.endswith("}"):  # the instance itself
            worst = 2 * kafka_s  # the auto-commit, then closing the consumer (LeaveGroup)
        else:
            worst = kafka_s  # one commit / committed-offsets / subscription change
        return worst + MARGIN_S

    def _stream_gap_s(self, fmt: object) -> float:
        """The longest silence of a record stream on its owner: a heartbeat interval, then the
        read in progress may overrun its wait by one Kafka call (and, for schema formats, a
        registry look-up); ``fmt`` None: any format."""
        gap = self._stream_heartbeat_s + self._kafka_timeout_ms / 1000
        if fmt not in ("binary", "json"):
            gap += REGISTRY_TIMEOUT_S
        return gap

    async def forward(self, request: web.Request, route: Forward) -> web.StreamResponse:
        """Replay ``request`` on the owner and stream its answer back unchanged.

        A client that goes away mid-hop takes the hop with it (see :meth:`_watch_clients`),
        so the owner's own response write fails as it would for a direct client.
        """
        return await self._watched(request, self._forward(request, route))

    async def _watched(
        self, request: web.Request, hop: Awaitable[web.StreamResponse]
    ) -> web.StreamResponse:
        """``hop``, cancelled if the client goes away (see :meth:`_watch_clients`)."""
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - aiohttp always runs handlers in a task
            return await hop
        self._inflight[task] = request
        self._busy.set()
        started, outcome = time.monotonic(), "error"
        try:
            response = await hop
            outcome = "ok"
            return response
        finally:
            self._inflight.pop(task, None)
            if self.on_hop is not None:
                self.on_hop(time.monotonic() - started, outcome)

    async def _forward(self, request: web.Request, route: Forward) -> web.StreamResponse:
        if self._session is None:
            raise GatewayError(
                503, 50302, "This replica is shutting down; retry the request", retry_after=1
            )
        session, base = self._session, route.url
        sibling = self.worker.sibling_socket(route.record.owner) if self.worker else None
        if sibling is not None:
            # A sibling worker of this replica: its socket, not a round trip through the
            # shared listener (which could land on any worker, this one included).
            session, base = self._sibling_session(sibling), "http://localhost"
        url = wire_target(base, request.raw_path)
        body = await request.read()
        headers: CIMultiDict[str] = CIMultiDict()
        for name in _KEEP_REQUEST:
            for value in request.headers.getall(name, ()):
                headers.add(name, _sendable(value))
        headers.setdefault("X-Forwarded-Proto", request.scheme)
        principal = encode_principal(principal_of(request))
        if principal:
            headers[PRINCIPAL_HEADER] = principal
        headers[HEADER] = signed_header(
            self._secret,
            target=route.record.owner,
            method=request.method,
            path_qs=url.raw_path_qs,  # what the owner will see as its raw_path
            content_type=header_value(headers, "Content-Type"),
            accept=header_value(headers, "Accept"),
            body=body,
            principal=principal,
        )
        budget = self.budget_s(route, request)
        if not _is_stream(request):
            return await self._exchange(request, session, url, headers, body, budget, route.url)
        if self._draining:
            raise GatewayError(
                503, 50302, "This replica is shutting down; retry the request", retry_after=1
            )
        # Named, so that this replica can ask the owner to end it when it drains.
        token = secrets.token_urlsafe(16)
        headers[STREAM_HEADER] = token
        self._relayed[token] = (session, base, route.record.owner)
        try:
            return await self._exchange(request, session, url, headers, body, budget, route.url)
        finally:
            self._relayed.pop(token, None)

    async def end_relayed_streams(self, timeout_s: float) -> None:
        """On drain: ask each owner to end the streams this replica relays, and relay no new
        one. Each stream then ends cleanly within a turn of its owner's loop, after everything
        the owner wrote has passed through; a request that fails (the owner is gone) leaves
        that stream to end as it would have, with the owner or at the shutdown timeout."""
        self._draining = True
        if self._relayed and self._session is not None:
            await asyncio.gather(
                *(self._end_stream(token, *how, timeout_s) for token, how in self._relayed.items())
            )

    async def _end_stream(
        self,
        token: str,
        session: aiohttp.ClientSession,
        base: str,
        owner: str,
        timeout_s: float,
    ) -> None:
        url = wire_target(base, STREAM_END_PATH.format(token=token))
        headers = {
            HEADER: signed_header(
                self._secret, target=owner, method="POST", path_qs=url.raw_path_qs
            )
        }
        try:
            async with session.post(
                url,
                headers=headers,
                skip_auto_headers=_NO_AUTO_HEADERS,
                timeout=aiohttp.ClientTimeout(total=timeout_s),
                allow_redirects=False,
            ) as resp:
                if resp.status != 204:
                    log.warning("owner %s did not end relayed stream: %s", owner, resp.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("could not ask %s to end a relayed stream: %s", owner, exc)

    async def _exchange(
        self,
        request: web.Request,
        session: aiohttp.ClientSession,
        url: URL,
        headers: CIMultiDict[str],
        body: bytes,
        budget: float,
        where: str,
    ) -> web.StreamResponse:
        """Send the hop and stream the answer back; a hop that fails before the answer
        starts is a retriable 503."""
        timeout = aiohttp.ClientTimeout(total=None, connect=self._connect_timeout, sock_read=budget)
        try:
            async with session.request(
                request.method,
                url,
                data=body if body else None,
                headers=headers,
                skip_auto_headers=_NO_AUTO_HEADERS,
                timeout=timeout,
                allow_redirects=False,
            ) as upstream:
                chunks = aiter(upstream.content.iter_chunked(_CHUNK))
                # Nothing goes to the client until the owner's body has started: a hop that
                # fails before that is still a clean, retriable error.
                first = await anext(chunks, b"")
                return await self._relay(request, upstream, first, chunks)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("forward to %s failed: %s", where, exc)
            raise _owner_not_answering() from exc

    async def _relay(
        self,
        request: web.Request,
        upstream: aiohttp.ClientResponse,
        first: bytes,
        rest: AsyncIterator[bytes],
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=upstream.status)
        for name in _KEEP_RESPONSE:
            if name in upstream.headers:
                response.headers[name] = upstream.headers[name]
        if upstream.content_length is not None:
            response.content_length = upstream.content_length
        try:
            await response.prepare(request)
            if first:
                await response.write(first)
            async for chunk in rest:
                await response.write(chunk)
            await response.write_eof()
        except (aiohttp.ClientError, OSError) as exc:
            # Either side broke off mid-body. The status line may be out, so the only honest
            # answer left is an incomplete one: the client's parser (Content-Length, or the
            # missing last chunk) reports an error instead of a short "valid" 200. The owner's
            # side is closed too, so its own write fails rather than counting as delivered.
            log.warning("forwarded response from %s broke off: %s", upstream.url.origin(), exc)
            upstream.close()
            transport = request.transport
            if transport is not None:
                transport.abort()
        return response

    async def _watch_clients(self) -> None:
        """Cancel the hop of every client that went away.

        aiohttp does not cancel a handler when its client disconnects, so without this a
        forwarded long poll would wait on the owner, and the owner would write the records
        into a live connection (counted as delivered) that nobody reads. Cancelling the
        handler closes the upstream connection, and the owner sees its write fail. One timer
        checks every hop, and sleeps while there is none.
        """
        while True:
            if not self._inflight:
                self._busy.clear()
                await self._busy.wait()
            await asyncio.sleep(DISCONNECT_CHECK_S)
            for task, request in list(self._inflight.items()):
                transport = request.transport
                if transport is None or transport.is_closing():
                    del self._inflight[task]
                    task.cancel()


FORWARDER: web.AppKey[Forwarder] = web.AppKey("forwarder", Forwarder)
