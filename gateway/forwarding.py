"""One hop to the replica that owns a consumer instance, signed with the cluster secret.

Only the owner of an instance can serve it (it holds the live Kafka consumer), so a replica
that receives a request for someone else's instance forwards it verbatim over a pooled
keep-alive client and streams the answer back byte for byte. The owner accepts a forwarded
request only with a valid HMAC over method, path, timestamp and body, so replicas are not an
open proxy into each other, and a forwarded request is never forwarded again.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import time

import aiohttp
from aiohttp import web

from .errors import GatewayError

log = logging.getLogger(__name__)

HEADER = "X-Event-Gateway-Forwarded"
MAX_SKEW_S = 60
# Headers that carry meaning for a v2 response and must survive the hop.
_KEEP_RESPONSE = ("Content-Type", "Retry-After")
_KEEP_REQUEST = ("Content-Type", "Accept", "Host", "X-Forwarded-Proto")

FORWARDED: web.RequestKey[bool] = web.RequestKey("forwarded", bool)


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
    if not hmac.compare_digest(expected, sig):
        raise refused("bad signature")
    return True


class Forwarder:
    """The pooled inter-replica client. Explicit ``start()`` / ``stop()``."""

    def __init__(self, secret: str, *, connect_timeout_s: float = 2.0) -> None:
        self._secret = secret
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

    async def forward(
        self, request: web.Request, owner_url: str, *, wait_s: float
    ) -> web.StreamResponse:
        """Replay ``request`` on the owner and stream its answer back unchanged."""
        assert self._session is not None, "Forwarder.start() was not awaited"
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
                owner_url.rstrip("/") + request.path_qs,
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
