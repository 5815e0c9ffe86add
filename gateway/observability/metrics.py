"""``GET /metrics``: Prometheus text format, from one registry per application.

A registry per application (not prometheus-client's global default) so that several apps in
one process (the in-process tests) never collide or read each other's numbers.

Two kinds of numbers: what this module observes itself (requests, their latency, backend
error answers, forwarding hops, event-loop lag) lives in prometheus-client objects; what other
layers count as plain integers (traffic, the router's lifecycle events, instance counts) is
read at scrape time by :class:`_Collector`, so ``sessions/`` and the handlers stay free of the
metrics library. Labels are low-cardinality by construction: route *templates*, a fixed set of
methods, status codes, error codes and event kinds; never a topic, group or instance name.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from sessions.router import InstanceRouter

from ..forwarding import FORWARDER
from ..workers.metrics_merge import LOCAL_SCRAPE, merge, scrape_siblings, workers_answering
from .traffic import Traffic

log = logging.getLogger(__name__)

PREFIX = "event_gateway"
# Error codes that mean "a backend is down", not "the client erred": Kafka, the session store.
BACKEND_ERROR_CODES = frozenset({50003, 50301})
# Anything else a client sends as a method becomes "other": one label value per verb sent
# would let any client grow the series without bound.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
UNMATCHED = "unmatched"
# The router's event kinds, listed so each series exists (at 0) before its first event.
SESSION_EVENTS = ("drain", "released", "adopted", "fenced", "lapsed", "lost")
# Reading the cluster-wide census must never hold a scrape for long: Prometheus times out
# at 10 s by default, and a Redis outage is what an operator is scraping to see.
CENSUS_TIMEOUT_S = 0.5
# Event-loop lag is sampled this often; a blocked loop shows as the sleep's overshoot.
LOOP_LAG_INTERVAL_S = 0.25

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

CensusFn = Callable[[], Awaitable[int | None]]


def route_label(request: web.Request) -> str:
    """The route template (``/topics/{topic}``), never the path a client chose."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


def method_label(request: web.Request) -> str:
    method = request.method.upper()
    return method if method in METHODS else "other"


class Metrics:
    """Everything /metrics reports for one application."""

    def __init__(self, sessions: InstanceRouter, traffic: Traffic) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            f"{PREFIX}_http_requests",
            "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            f"{PREFIX}_http_request_duration_seconds",
            "Time from a request's arrival to its answer being complete",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.backend_errors = Counter(
            f"{PREFIX}_backend_errors",
            "Answers carrying a backend error: 50003 Kafka unavailable, 50301 session store "
            "unavailable (per-record produce errors are in produce_record_errors)",
            ["code"],
            registry=r,
        )
        self.forwards = Histogram(
            f"{PREFIX}_forward_duration_seconds",
            "Hops to the replica owning a consumer instance (count and latency); outcome "
            "'error' means the hop itself failed",
            ["outcome"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.loop_lag = Histogram(
            f"{PREFIX}_event_loop_lag_seconds",
            f"How late a {LOOP_LAG_INTERVAL_S} s sleep on the event loop wakes up",
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        self.loop_lag_last = Gauge(
            f"{PREFIX}_event_loop_lag_last_seconds",
            "The latest event-loop lag sample",
            registry=r,
        )
        self.census: CensusFn | None = None
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._cluster_instances: int | None = None
        r.register(_Collector(sessions, traffic, lambda: self._cluster_instances))

    def observe_request(self, request: web.Request, status: int, duration_s: float) -> None:
        key = (route_label(request), method_label(request), status)
        children = self._children.get(key)
        if children is None:
            # prometheus_client's labels() validates and joins the values under a lock on
            # every call: a few µs per request, looked up once per label set instead. The
            # labels are route templates, methods and statuses: a bounded set.
            route, method, _ = key
            children = (
                self.requests.labels(route, method, str(status)),
                self.latency.labels(route, method),
            )
            self._children[key] = children
        counter, histogram = children
        counter.inc()
        histogram.observe(duration_s)

    def observe_error_code(self, code: int) -> None:
        if code in BACKEND_ERROR_CODES:
            self.backend_errors.labels(str(code)).inc()

    def observe_hop(self, duration_s: float, outcome: str) -> None:
        self.forwards.labels(outcome).observe(duration_s)

    def observe_loop_lag(self, lag_s: float) -> None:
        self.loop_lag.observe(lag_s)
        self.loop_lag_last.set(lag_s)

    async def refresh_census(self) -> None:
        """Count the cluster's instances now, or report none (no Redis, or it did not answer
        in time): a missing series is honest, a stale number is not."""
        self._cluster_instances = None
        if self.census is None:
            return
        with contextlib.suppress(Exception):
            self._cluster_instances = await asyncio.wait_for(self.census(), CENSUS_TIMEOUT_S)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _Collector(Collector):
    """Numbers other layers keep as plain counts, read at scrape time."""

    def __init__(
        self, sessions: InstanceRouter, traffic: Traffic, cluster: Callable[[], int | None]
    ) -> None:
        self._sessions = sessions
        self._traffic = traffic
        self._cluster = cluster

    def collect(self) -> Iterator[Metric]:
        t = self._traffic
        for name, value, doc in (
            ("records_produced", t.records_produced, "Records Kafka acknowledged"),
            ("produced_bytes", t.bytes_produced, "Key and value bytes of acknowledged records"),
            ("records_consumed", t.records_consumed, "Records in fully written records answers"),
            ("consumed_bytes", t.bytes_consumed, "Bytes of fully written records answers"),
        ):
            yield CounterMetricFamily(f"{PREFIX}_{name}", doc, value=value)
        errors = CounterMetricFamily(
            f"{PREFIX}_produce_record_errors",
            "Records a produce request could not write, by Confluent error code",
            labels=["code"],
        )
        for code, count in sorted(t.record_errors.items()):
            errors.add_metric([str(code)], count)
        yield errors
        events = CounterMetricFamily(
            f"{PREFIX}_session_events",
            "Consumer-instance lifecycle events on this replica: drain (a drain started), "
            "released (handed back on drain), adopted, fenced (lease not renewed in time), "
            "lapsed (lease found expired), lost (taken over by another replica)",
            labels=["event"],
        )
        counted = self._sessions.events
        for kind in sorted({*SESSION_EVENTS, *counted}):
            events.add_metric([kind], counted.get(kind, 0))
        yield events
        yield GaugeMetricFamily(
            f"{PREFIX}_consumer_instances_local",
            "Consumer instances this replica holds",
            value=len(self._sessions.local),
        )
        cluster = self._cluster()
        if cluster is not None:
            yield GaugeMetricFamily(
                f"{PREFIX}_consumer_instances_cluster",
                "Consumer instances the whole cluster holds (Redis census, read on scrape)",
                value=cluster,
            )


class LoopLagMonitor:
    """Samples event-loop lag in the background (a lifecycle component).

    A handler that blocks the loop delays every other request on the replica; this makes it
    visible as a number instead of as unexplained latency everywhere.
    """

    def __init__(
        self, observe: Callable[[float], None], interval_s: float = LOOP_LAG_INTERVAL_S
    ) -> None:
        self._observe = observe
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event-loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self._interval_s)
            self._observe(max(time.monotonic() - before - self._interval_s, 0.0))


def error_code_of(response: web.StreamResponse) -> int | None:
    """The Confluent error code of an error answer built here (a streamed answer, such as a
    forwarded one, is counted by the replica that built it)."""
    body = response.body if isinstance(response, web.Response) else None
    if not isinstance(body, bytes) or len(body) > 4096:
        return None
    try:
        code = orjson.loads(body).get("error_code")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return code if isinstance(code, int) else None


METRICS_KEY = web.AppKey("metrics", Metrics)


async def metrics_handler(request: web.Request) -> web.Response:
    metrics = request.app[METRICS_KEY]
    await metrics.refresh_census()
    body = metrics.exposition()
    worker = request.app[FORWARDER].worker
    if worker is not None and LOCAL_SCRAPE not in request.headers:
        # One replica, one scrape: the siblings' samples too, each labelled by worker.
        texts = await scrape_siblings(worker)
        texts[worker.index] = body.decode()
        body = (merge(texts) + workers_answering(len(texts), worker.count)).encode()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
