"""One hop to the replica that owns a consumer instance, signed with the cluster secret.

Everything about the hop is here: the :func:`forwarding` wrapper every consumer-instance route
is registered with, the time budget of a hop, signing, and the verification the owner does.

Only the owner of an instance can serve it (it holds the live Kafka consumer), so a replica
that receives a request for someone else's instance forwards it verbatim over a pooled
keep-alive client and streams the answer back byte for byte. The handler validates the
request first (client mistakes never cost a hop), asks the router, and raises
:class:`ForwardTo` when the answer is :class:`~sessions.router.Forward`; the wrapper catches
it and forwards. The owner accepts a forwarded request only with a valid HMAC over method,
path, timestamp and body, so replicas are not an open proxy into each other, and a forwarded
request is never forwarded again.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import time
from collections.abc import Awaitable, Callable
from functools import wraps

import aiohttp
from aiohttp import web
from yarl import URL

from sessions.router import Forward

from .errors import GatewayError

log = logging.getLogger(__name__)

HEADER = "X-Event-Gateway-Forwarded"
MAX_SKEW_S = 60
# Headers that carry meaning for a v2 response and must survive the hop.
_KEEP_RESPONSE = ("Content-Type", "Retry-After")
_KEEP_REQUEST = ("Content-Type", "Accept", "Host", "X-Forwarded-Proto")

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


def signature(secret: str, ts: str, method: str, path_qs: str, body: bytes) -> str:
    msg = "\n".join([ts, method.upper(), path_qs, hashlib.sha256(body).hexdigest()])
    return hmac.new(secret.encode(), msg.encode(), hashlib.sha256).hexdigest()


def refused(reason: str) -> GatewayError:
    return GatewayError(403, 40301, f"Forwarded request refused: {reason}")


async def verify(request: web.Request, secret: str) -> bool:
    """True for a correctly signed forwarded request, False for a client request; 403 else."""
    value = request.headers.get(HEADER)
    if value is None:
        return False
    if not secret:
        raise refused("this replica has no cluster.secret")
    # The header is "<ts>.<hex sig>" and ts itself has a decimal point ("1700000000.123"):
    # split at the last dot, or every genuine forwarded request fails to verify.
    ts, _, sig = value.rpartition(".")
    try:
        skew = abs(time.time() - float(ts))
    except ValueError:
        raise refused("malformed signature header") from None
    if not math.isfinite(skew) or skew > MAX_SKEW_S:
        raise refused("signature expired")
    body = await request.read()
    expected = signature(secret, ts, request.method, request.path_qs, body)
    # Bytes, not str: a client can send any header bytes, and compare_digest refuses
    # non-ASCII text with a TypeError (a 500) where a bad signature is a 403.
    if not hmac.compare_digest(expected.encode(), sig.encode("utf-8", "surrogateescape")):
        raise refused("bad signature")
    return True


class Forwarder:
    """The pooled inter-replica client. Explicit ``start()`` / ``stop()``.

    ``default_wait_ms`` is ``consumer.request.timeout.ms`` and ``kafka_timeout_ms`` the bound
    on one Kafka call: together they bound how long the owner may take (see :meth:`budget_s`).
    """

    def __init__(
        self,
        secret: str,
        *,
        default_wait_ms: int,
        kafka_timeout_ms: int,
        connect_timeout_s: float = 2.0,
    ) -> None:
        self._secret = secret
        self._default_wait_ms = default_wait_ms
        self._kafka_timeout_ms = kafka_timeout_ms
        self._connect_timeout = connect_timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=30),
            auto_decompress=False,
        )

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def budget_s(self, route: Forward) -> float:
        """How long the owner may take: the instance's longest read wait, one Kafka call,
        and a margin, so the hop never gives up before the owner would."""
        spec_wait = route.record.spec.get("request_timeout_ms") or 0
        wait_ms = max(spec_wait, self._default_wait_ms)
        return (wait_ms + self._kafka_timeout_ms) / 1000 + 5

    async def forward(self, request: web.Request, route: Forward) -> web.StreamResponse:
        """Replay ``request`` on the owner and stream its answer back unchanged."""
        if self._session is None:
            raise GatewayError(
                503, 50302, "This replica is shutting down; retry the request", retry_after=1
            )
        owner_url, wait_s = route.url, self.budget_s(route)
        body = await request.read()
        ts = f"{time.time():.3f}"
        headers = {k: request.headers[k] for k in _KEEP_REQUEST if k in request.headers}
        headers[HEADER] = (
            f"{ts}.{signature(self._secret, ts, request.method, request.path_qs, body)}"
        )
        headers.setdefault("X-Forwarded-Proto", request.scheme)
        timeout = aiohttp.ClientTimeout(total=None, connect=self._connect_timeout, sock_read=wait_s)
        try:
            async with self._session.request(
                request.method,
                # encoded=True: the path goes out byte for byte as received and signed
                # (yarl would otherwise normalise it, e.g. %7E -> ~, and break the signature).
                URL(owner_url.rstrip("/") + request.path_qs, encoded=True),
                data=body if body else None,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
            ) as upstream:
                response = web.StreamResponse(status=upstream.status)
                for name in _KEEP_RESPONSE:
                    if name in upstream.headers:
                        response.headers[name] = upstream.headers[name]
                if upstream.content_length is not None:
                    response.content_length = upstream.content_length
                await response.prepare(request)
                async for chunk in upstream.content.iter_chunked(64 * 1024):
                    await response.write(chunk)
                await response.write_eof()
                return response
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            log.warning("forward to %s failed: %s", owner_url, exc)
            raise GatewayError(
                503,
                50302,
                "The replica that owns this consumer instance is not answering; retry the "
                "request (it is taken over once its lease expires).",
                retry_after=1,
            ) from exc


FORWARDER: web.AppKey[Forwarder] = web.AppKey("forwarder", Forwarder)
