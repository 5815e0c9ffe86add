"""The v3 produce rate limiter (reference 10): records and their bytes per second, off by default.

Confluent's produce limiter, with its keys and defaults: every record of ``records`` and
``records:batch`` counts once against a per-cluster and a per-replica (global) budget of
records and of bytes, the bytes being the record's JSON text. A record over budget is not a
failed request: it gets its own 429 entry (in-stream, or a batch failure) and the records
around it go on. Budgets are token buckets holding one second's worth, so a burst up to the
per-second limit passes and a steady rate above it is cut to the limit.
"""

from __future__ import annotations

from aiohttp import web

from ..config import Config
from ..security.quotas import TokenBuckets
from .records_request import RecordError

LIMITED = "Request rate limit exceeded: The rate limit of requests per second has been exceeded."
_GLOBAL = "*global*"  # bucket key of the per-replica budget (cluster ids never contain '*')


class ProduceLimiter:
    def __init__(self, config: Config) -> None:
        self.enabled = config.api_v3_produce_rate_limit_enabled
        self._records = TokenBuckets(config.api_v3_produce_rate_limit_max_requests_per_sec)
        self._bytes = TokenBuckets(config.api_v3_produce_rate_limit_max_bytes_per_sec)
        self._records_global = TokenBuckets(
            config.api_v3_produce_rate_limit_max_requests_global_per_sec
        )
        self._bytes_global = TokenBuckets(config.api_v3_produce_rate_limit_max_bytes_global_per_sec)

    def admit(self, cluster_id: str, size: int) -> None:
        """Charge one record of ``size`` JSON bytes, or raise its 429 (nothing charged then)."""
        if not self.enabled:
            return
        budgets = (
            (self._records, cluster_id, 1),
            (self._records_global, _GLOBAL, 1),
            (self._bytes, cluster_id, size),
            (self._bytes_global, _GLOBAL, size),
        )
        if any(buckets.wait_s(key, cost) > 0 for buckets, key, cost in budgets):
            raise RecordError(429, LIMITED)
        for buckets, key, cost in budgets:
            buckets.take(key, cost)


LIMITER: web.AppKey[ProduceLimiter] = web.AppKey("v3_produce_limiter", ProduceLimiter)


def install(app: web.Application, config: Config) -> None:
    app[LIMITER] = ProduceLimiter(config)
