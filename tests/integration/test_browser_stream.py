"""A real browser (headless Chromium) on the live topic page, ``/ui/stream``.

The page is the example the issue asks for, and the test is what a user does: open it on a
gateway started as ``event-gateway serve`` would be, watch records produced by someone else
(an independent aiokafka producer) appear, and see the page carry on by itself across a
gateway restart: same page load, no navigation, every record exactly once. It also measures
how long a record takes from the producer to the page's script, which BENCHMARKS.md records.

A page served from another origin shows what ``access.control.allow.origin`` changes for a
browser: its EventSource gets the stream with the origin listed, and is blocked without.

The page's state is read through ``window.streamState`` (documented in gateway/ui/stream.html).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer

from tests.harness.api import MakeGatewayFn, NewTopicFn
from tests.harness.browser import Browser, Page
from tests.harness.ports import free_port
from tests.harness.process import spawn, stop, tail

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 3


class GatewayProcess:
    """``python -m gateway.cli serve`` on a fixed port, stopped and started again at will."""

    def __init__(self, port: int, props: Mapping[str, str], log: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self._args = [sys.executable, "-m", "gateway.cli", "serve"]
        for key, value in {**props, "listeners": self.url}.items():
            self._args += ["--set", f"{key}={value}"]
        self._env = {k: v for k, v in os.environ.items() if not k.startswith("EVENT_GATEWAY_")}
        self.proc: Any = None

    async def start(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109 (a whole poll)
        self.proc = spawn(self._args, self.log, cwd=ROOT, env=self._env)
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while True:
                try:
                    async with http.get(f"{self.url}/readyz") as resp:
                        if resp.status == 200:
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                assert self.proc.poll() is None, f"gateway exited:\n{tail(self.log)}"
                assert time.monotonic() < deadline, f"gateway not ready:\n{tail(self.log)}"
                await asyncio.sleep(0.1)

    async def terminate(self) -> int:
        """SIGTERM, as an orchestrator stops it; the exit code (it drains first)."""
        self.proc.terminate()
        code: int = await asyncio.to_thread(self.proc.wait, 40)
        return code

    def kill(self) -> None:
        stop(self.proc, grace=10)


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Browser]:
    async with Browser.launch(tmp_path) as b:
        yield b


async def produce(
    producer: AIOKafkaProducer, topic: str, first: int, n: int, *, pace_s: float = 0.0
) -> dict[tuple[int, int], Any]:
    """``n`` JSON records (the last is a tombstone when ``first`` is 0), spread over the
    partitions; what each position should show on the page."""
    sent: dict[tuple[int, int], Any] = {}
    for i in range(first, first + n):
        value = None if i == 0 else orjson.dumps({"n": i, "pad": "x" * 40})
        meta = await producer.send_and_wait(
            topic, value, key=f"k{i}".encode(), partition=i % PARTITIONS
        )
        sent[(meta.partition, meta.offset)] = (
            f"k{i}",
            None if value is None else orjson.loads(value),
        )
        if pace_s:
            await asyncio.sleep(pace_s)
    return sent


async def received(page: Page) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = await page.evaluate("streamState.received")
    return got


async def wait_count(page: Page, n: int, timeout: float = 30.0) -> None:  # noqa: ASYNC109
    await page.wait_for(f"streamState.count >= {n}", timeout=timeout)


def assert_exactly(got: list[dict[str, Any]], sent: dict[tuple[int, int], Any]) -> None:
    positions = [(r["partition"], r["offset"]) for r in got]
    assert len(positions) == len(set(positions)), "a record was shown twice"
    assert set(positions) == set(sent), (
        f"missing {sorted(set(sent) - set(positions))}, extra {sorted(set(positions) - set(sent))}"
    )
    for r in got:
        key, value = sent[(r["partition"], r["offset"])]
        assert (r["key"], r["value"], r["tombstone"]) == (key, value, value is None), r
    for p in range(PARTITIONS):  # in order within each partition
        offsets = [o for part, o in positions if part == p]
        assert offsets == sorted(offsets)


async def test_page_shows_records_live_and_resumes_after_a_restart(
    kafka_bootstrap: str,
    redis_url: str,
    new_topic: NewTopicFn,
    producer: AIOKafkaProducer,
    browser: Browser,
    tmp_path: Path,
) -> None:
    topic = await new_topic(partitions=PARTITIONS)
    # Records from before the page opened must not show (it opens at the end).
    await produce(producer, topic, 1000, 3)
    gateway = GatewayProcess(
        free_port(),
        {
            "bootstrap.servers": kafka_bootstrap,
            "session.store.url": redis_url,
            "cluster.secret": "browser-test",
            "ui.enabled": "true",
            "stream.heartbeat.ms": "1000",
        },
        tmp_path / "gateway.log",
    )
    await gateway.start()
    try:
        page = await browser.new_page(f"{gateway.url}/ui/stream?topic={topic}&from=end")
        await page.evaluate("window.sameLoad = 'yes'")  # gone if the page navigated
        await page.wait_for("streamState.state === 'open'", timeout=20)

        sent = await produce(producer, topic, 0, 12)  # offset 0..3 per partition, a tombstone
        await wait_count(page, len(sent))
        assert_exactly(await received(page), sent)
        assert await page.evaluate("streamState.tombstones") == 1
        assert await page.evaluate("document.querySelectorAll('#rows tr.tombstone').length") == 1
        assert await page.evaluate("document.querySelectorAll('#rows tr').length") == len(sent)

        # Restart: the stream ends on SIGTERM, the gateway is gone for a while (records
        # produced meanwhile must arrive too), then it is back on the same port.
        assert await gateway.terminate() == 0, tail(gateway.log)
        sent |= await produce(producer, topic, 12, 9)
        await page.wait_for("streamState.state !== 'open'", timeout=10)
        await gateway.start()
        sent |= await produce(producer, topic, 21, 9)
        await wait_count(page, len(sent), timeout=60)
        assert await page.evaluate("streamState.opens") >= 2
        assert await page.evaluate("streamState.state") == "open"
        assert await page.evaluate("window.sameLoad") == "yes"
        assert_exactly(await received(page), sent)

        # Latency, producer to the page's script: paced, so it is each record's own time.
        before = len(sent)
        timed = await produce(producer, topic, 100, 200, pace_s=0.005)
        sent |= timed
        await wait_count(page, len(sent), timeout=60)
        got = await received(page)
        assert_exactly(got, sent)
        latencies = sorted(r["receivedAt"] - r["timestamp"] for r in got[before:])
        p50 = statistics.median(latencies)
        p99 = latencies[int(len(latencies) * 0.99) - 1]
        print(
            f"\nproduce -> browser latency over {len(latencies)} records:"
            f" p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {latencies[-1]:.1f} ms"
        )
        assert await page.evaluate("streamState.errors") >= 1  # the restart was seen
        # Reconnects that reached the gateway while it drained were told to retry (a 200 stream
        # with one error event, see gateway/streaming/retry.py), which the browser did.
        server_errors = await page.evaluate("streamState.serverErrors")
        assert all("shutting down" in m for m in server_errors), server_errors
    finally:
        gateway.kill()


# --- CORS, seen by a browser ------------------------------------------------------------------

CROSS_ORIGIN_PAGE = b"""<!doctype html><meta charset="utf-8"><title>elsewhere</title>
<script>
window.got = []; window.opens = 0; window.errors = 0;
const source = new EventSource(new URLSearchParams(location.search).get("stream"));
source.addEventListener("open", () => window.opens++);
source.addEventListener("record", (e) => window.got.push(JSON.parse(e.data).value));
source.addEventListener("error", () => window.errors++);
</script>"""


@pytest.fixture
async def other_origin() -> AsyncIterator[str]:
    """A tiny site on another port: another origin than any gateway."""

    async def page(_: web.Request) -> web.Response:
        return web.Response(body=CROSS_ORIGIN_PAGE, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("allowed", [True, False], ids=["allowed", "not-allowed"])
async def test_a_page_on_another_origin(
    make_gateway: MakeGatewayFn,
    new_topic: NewTopicFn,
    producer: AIOKafkaProducer,
    browser: Browser,
    other_origin: str,
    allowed: bool,
) -> None:
    topic = await new_topic(partitions=1)
    for i in range(3):
        await producer.send_and_wait(topic, orjson.dumps(i), partition=0)
    props = {"access.control.allow.origin": other_origin} if allowed else {}
    gateway = await make_gateway(props)
    stream = str(gateway.make_url(f"/topics/{topic}/events").with_query({"from": "beginning"}))
    page = await browser.new_page(f"{other_origin}/?{urlencode({'stream': stream})}")
    if allowed:
        await page.wait_for("window.got.length >= 3", timeout=20)
        assert await page.evaluate("window.got") == [0, 1, 2]
    else:
        # Chromium's EventSource gives up on a CORS failure (closed, no retry).
        await page.wait_for("window.errors >= 1 && source.readyState === EventSource.CLOSED")
        assert await page.evaluate("[window.got.length, window.opens]") == [0, 0]
        assert "blocked by CORS policy" in page.console()


async def test_page_explains_a_stream_it_cannot_open(
    make_gateway: MakeGatewayFn, browser: Browser
) -> None:
    """EventSource hides the answer of a refused stream; the page asks again with fetch and
    shows the gateway's message instead of retrying forever."""
    gateway = await make_gateway({"ui.enabled": "true"})
    page = await browser.new_page(str(gateway.make_url("/ui/stream")))
    assert await page.evaluate("streamState.state") == "idle"  # no topic: the form only
    await page.navigate(str(gateway.make_url("/ui/stream?topic=no-such-topic&from=beginning")))
    await page.wait_for("streamState.state === 'closed'")
    message = await page.evaluate("document.getElementById('message').textContent")
    assert message.startswith("404 ") and "no-such-topic" in message, message
    assert await page.evaluate("document.querySelector('input[name=from]').value") == "beginning"
    assert await page.evaluate("streamState.opens") == 0
