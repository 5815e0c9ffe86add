"""Per-principal quotas: requests per second and produced bytes per second (off by default).

Token buckets, **in memory, per replica**: behind a round-robin balancer of N replicas a
principal gets up to N times the configured rate in total. Sharing buckets through Redis
would cost a round trip on every request and make the whole API depend on Redis, which
produce and metadata deliberately do not; set the per-replica rate to the cluster-wide
budget divided by N.

Buckets are keyed by the principal's name. Unauthenticated callers (authentication off, or
the anonymous principal) share **one** bucket rather than one per peer address: behind a
load balancer every peer address is the balancer's, and a client-supplied X-Forwarded-For
would let any caller pick a fresh bucket per request. With authentication off the quota is
therefore a replica-wide rate limit, which is what it can honestly be.

A request forwarded by another replica is not charged again (the replica that received it
from the client charged it), nor are the probe and scrape paths. Over quota: 429 with
``Retry-After`` and a Confluent-style body, 42903 (request rate) or 42904 (produce bytes);
42901 and 42902 are the instance caps' codes. A produce body larger than a whole second's
allowance still passes once the bucket is full, and the bucket goes into debt (the next
requests wait it out): a byte quota must slow a principal down, not forbid large requests.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler

from ..errors import GatewayError
from ..forwarding import FORWARDED
from ..observability import UNAUTHENTICATED_PATHS
from .principal import principal_of

REQUEST_RATE_CODE = 42903
PRODUCE_BYTES_CODE = 42904
# Principals remembered at most per replica; idle (full) buckets go first, so a flood of
# distinct names costs bounded memory and forgets nobody who is being limited.
MAX_PRINCIPALS = 10_000
_PRODUCE_ROUTES = frozenset({"/topics/{topic}", "/topics/{topic}/partitions/{partition}"})


@dataclass
class Bucket:
    rate: float  # tokens per second; also the burst (one second's worth)
    tokens: float
    at: float

    def refill(self, now: float) -> None:
        self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
        self.at = now

    @property
    def full(self) -> bool:
        return self.tokens >= self.rate


class TokenBuckets:
    """One bucket per key with the same rate; ``min_level`` is what a take needs in the
    bucket (1 for a request; a sliver for bytes, which may then go into debt)."""

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        capacity: int = MAX_PRINCIPALS,
    ) -> None:
        self.rate = rate
        self._clock = clock
        self._capacity = capacity
        self._buckets: OrderedDict[str, Bucket] = OrderedDict()

    def wait_s(self, key: str, need: float) -> float:
        """0 if ``need`` tokens are there now, else how long until they are."""
        bucket = self._bucket(key)
        return 0.0 if bucket.tokens >= need else (need - bucket.tokens) / self.rate

    def take(self, key: str, cost: float) -> None:
        self._bucket(key).tokens -= cost

    def _bucket(self, key: str) -> Bucket:
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = Bucket(self.rate, self.rate, now)
            self._buckets[key] = bucket
            self._evict()
        else:
            bucket.refill(now)
            self._buckets.move_to_end(key)
        return bucket

    def _evict(self) -> None:
        if len(self._buckets) <= self._capacity:
            return
        now = self._clock()
        for key in list(self._buckets):
            b = self._buckets[key]
            b.refill(now)
            if b.full:
                del self._buckets[key]
        while len(self._buckets) > self._capacity:
            self._buckets.popitem(last=False)  # least recently used


class Quotas:
    def __init__(
        self,
        *,
        requests_per_s: float,
        produce_bytes_per_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.requests = TokenBuckets(requests_per_s, clock=clock) if requests_per_s > 0 else None
        self.produce_bytes = (
            TokenBuckets(produce_bytes_per_s, clock=clock) if produce_bytes_per_s > 0 else None
        )

    @property
    def enabled(self) -> bool:
        return self.requests is not None or self.produce_bytes is not None

    def admit(self, key: str, produce_bytes: int | None) -> None:
        """Charge one request (and its produce bytes) or raise the 429; nothing is charged
        for a refused request, so a client retrying on Retry-After is not punished twice."""
        if self.requests is not None and (wait := self.requests.wait_s(key, 1.0)) > 0:
            raise over_quota(
                REQUEST_RATE_CODE,
                f"Request rate quota exceeded: at most {self.requests.rate:g} requests per "
                "second for this principal on this replica.",
                wait,
            )
        if (
            produce_bytes is not None
            and self.produce_bytes is not None
            and (wait := self.produce_bytes.wait_s(key, 1e-9)) > 0
        ):
            raise over_quota(
                PRODUCE_BYTES_CODE,
                f"Produce byte-rate quota exceeded: at most {self.produce_bytes.rate:g} bytes "
                "per second for this principal on this replica.",
                wait,
            )
        if self.requests is not None:
            self.requests.take(key, 1.0)
        if produce_bytes is not None and self.produce_bytes is not None:
            self.produce_bytes.take(key, produce_bytes)


def over_quota(code: int, message: str, wait_s: float) -> GatewayError:
    return GatewayError(429, code, message, retry_after=max(1, math.ceil(wait_s)))


QUOTAS = web.AppKey("quotas", Quotas)


@web.middleware
async def quota_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """After authentication (it keys on the principal): the last middleware in build_app."""
    quotas = request.app.get(QUOTAS)
    if (
        quotas is None
        or not quotas.enabled
        or request.path in UNAUTHENTICATED_PATHS
        or request.get(FORWARDED, False)
    ):
        return await handler(request)
    produce_bytes: int | None = None
    if quotas.produce_bytes is not None and _is_produce(request):
        # The body is read once here and cached by aiohttp for the handler; a body over the
        # app's limit raises the usual 413 here instead of in the handler.
        produce_bytes = (
            request.content_length
            if request.content_length is not None
            else len(await request.read())
        )
    quotas.admit(principal_of(request).name, produce_bytes)
    return await handler(request)


def _is_produce(request: web.Request) -> bool:
    if request.method != "POST":
        return False
    resource = request.match_info.route.resource
    return resource is not None and resource.canonical in _PRODUCE_ROUTES
