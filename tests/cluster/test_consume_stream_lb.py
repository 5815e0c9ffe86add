"""Instance streams across real replicas: through the hop, across a drain, to a slow reader.

Real gateway processes, real Redis, real Kafka. The stream is opened at a replica that does
not own the instance (its own address, not the balancer, so the hop is certain): events must
come through live, one by one, heartbeats included, and the owner's drain must end the stream
cleanly with every record the client read counted, so a reconnect through any replica resumes
with no gap and no duplicate. The slow reader runs against a real process too, since only a
process's resident memory shows whether the gateway buffered what the reader did not take.
"""

from __future__ import annotations

import asyncio
import base64
import re
import socket
import time
from typing import Any

import aiohttp
import pytest

from tests.cluster.test_failover import FAST, create_subscribed, uid
from tests.harness.api import MakeClusterFn, NewTopicFn
from tests.integration.test_consume_stream import NDJSON, SSE, Event, Stream, parse_ndjson_line

pytestmark = pytest.mark.asyncio


async def open_with_retry(
    http: aiohttp.ClientSession,
    url: str,
    kind: str,
    timeout: float = 30.0,  # noqa: ASYNC109
) -> aiohttp.ClientResponse:
    """Open a stream, retrying the retriable answers of an instance on the move: a 503, or
    for SSE the short stream that tells an EventSource to retry (see gateway/streaming/retry.py)."""
    deadline = time.monotonic() + timeout
    while True:
        resp = await http.get(url, headers={"Accept": kind})
        if resp.status == 200 and "Retry-After" not in resp.headers:
            return resp
        body = await resp.read()
        if resp.status == 200:
            assert b"event: error" in body, body
            assert time.monotonic() < deadline, f"still told to retry after {timeout} s: {body!r}"
            await asyncio.sleep(0.2)
            continue
        resp.close()
        assert resp.status == 503, (resp.status, body)
        assert time.monotonic() < deadline, f"still {resp.status} after {timeout} s: {body!r}"
        await asyncio.sleep(0.2)


@pytest.mark.both_worker_modes
async def test_stream_through_a_non_owner_is_live_and_survives_the_owner_draining(
    make_cluster: MakeClusterFn, new_topic: NewTopicFn, producer: Any
) -> None:
    cluster = await make_cluster(2, props={**FAST, "stream.heartbeat.ms": "300"})
    owner, other = cluster.urls
    topic = await new_topic(partitions=1)
    group = uid("stream")
    inst = f"/consumers/{group}/instances/c"
    for i in range(5):
        await producer.send_and_wait(topic, b"%d" % i, partition=0)

    timeout = aiohttp.ClientTimeout(total=None, sock_read=30)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        await create_subscribed(http, owner, group, "c", topic)
        resp = await open_with_retry(http, other + inst + "/records", SSE)
        assert resp.headers["Content-Type"].startswith(SSE)
        assert resp.headers["Cache-Control"] == "no-cache"  # passed on by the hop
        stream = Stream(resp)
        got = await stream.records(5)

        # Live: each record produced now arrives on its own, long before any read timeout.
        for i in range(5, 8):
            sent = time.monotonic()
            await producer.send_and_wait(topic, b"%d" % i, partition=0)
            got += await stream.records(1, timeout=5)
            assert time.monotonic() - sent < 3
        # Idle: heartbeats (every 300 ms on the owner) come through the hop as they are sent.
        beats, until = 0, time.monotonic() + 1.5
        while time.monotonic() < until:
            event = await stream.next(timeout=2)
            assert event == Event("heartbeat"), event
            beats += 1
        assert beats >= 3, beats

        # The owner drains: the stream ends cleanly (no error, no "end": an EventSource
        # reconnects), every record sent so far counted as delivered.
        drain = asyncio.create_task(cluster.terminate(0))
        rest = await stream.until_end(timeout=20)
        assert rest == [], rest
        resp.close()
        assert await drain == 0

        for i in range(8, 12):
            await producer.send_and_wait(topic, b"%d" % i, partition=0)
        resp = await open_with_retry(http, cluster.lb_url + inst + "/records", SSE)
        got += await Stream(resp).records(4)
        resp.close()
    values = [int(base64.b64decode(r["value"])) for r in got]
    assert values == list(range(12)), values  # no gap, no duplicate across the drain
    assert [r["offset"] for r in got] == list(range(12))


@pytest.mark.both_worker_modes
@pytest.mark.parametrize("kind", [SSE, NDJSON], ids=["sse", "ndjson"])
async def test_a_relaying_replica_that_drains_ends_its_streams_losing_nothing(
    make_cluster: MakeClusterFn, new_topic: NewTopicFn, producer: Any, kind: str
) -> None:
    """The replica relaying a stream (not the owner) drains while records keep coming: the
    owner is asked to end the stream, so it ends cleanly and at once, not when the relay's
    shutdown timeout cuts it (with whatever was in the hop lost), and a reconnect to the
    owner resumes with no gap and no duplicate."""
    shutdown_s = 25
    cluster = await make_cluster(
        2,
        props={**FAST, "stream.heartbeat.ms": "300", "shutdown.timeout.ms": str(shutdown_s * 1000)},
    )
    owner, relay = cluster.urls
    topic = await new_topic(partitions=1)
    group = uid("relaydrain")
    inst = f"/consumers/{group}/instances/c"
    total = 60
    for i in range(5):
        await producer.send_and_wait(topic, b"%d" % i, partition=0)

    async def keep_producing() -> None:
        for i in range(5, total):
            await producer.send_and_wait(topic, b"%d" % i, partition=0)
            await asyncio.sleep(0.03)

    timeout = aiohttp.ClientTimeout(total=None, sock_read=30)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        await create_subscribed(http, owner, group, "c", topic)
        resp = await open_with_retry(http, relay + inst + "/records", kind)
        stream = Stream(resp)
        got = await stream.records(5)

        producing = asyncio.create_task(keep_producing())
        await asyncio.sleep(0.3)  # records are flowing through the hop
        started = time.monotonic()
        drain = asyncio.create_task(cluster.terminate(1, timeout=shutdown_s + 10))
        events = await stream.until_end(timeout=shutdown_s - 5)
        ended_after = time.monotonic() - started
        resp.close()
        assert all(e.kind == "record" for e in events), events  # a clean end: no error
        got += [e.data for e in events]
        assert await drain == 0
        drained_after = time.monotonic() - started
        await producing

        resp = await open_with_retry(http, owner + inst + "/records", kind)
        got += await Stream(resp).records(total - len(got))
        resp.close()
    values = [int(base64.b64decode(r["value"])) for r in got]
    assert values == list(range(total)), values  # no gap, no duplicate across the drain
    # Ended by the owner within a turn of its loop (plus the readiness delay before the
    # drain starts), not by the relay's shutdown timeout.
    assert ended_after < 6, ended_after
    assert drained_after < shutdown_s / 2, drained_after


# --- a slow reader ----------------------------------------------------------------------------

RECORD_BYTES = 100_000
RECORDS = 500  # 50 MB of values, about 67 MB of NDJSON


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def consumed_bytes(http: aiohttp.ClientSession, base: str) -> float:
    async with http.get(base + "/metrics") as resp:
        text = await resp.text()
    found = re.search(r"^event_gateway_consumed_bytes(?:_total)? (\S+)$", text, re.M)
    assert found, text[:2000]
    return float(found[1])


class RawStream:
    """A stream read over a plain socket with a tiny receive buffer, so that not reading
    really stops the flow (the kernel cannot take megabytes on the reader's behalf)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, base: str, path: str, accept: str) -> RawStream:
        host, port = base.removeprefix("http://").split(":")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: {accept}\r\n\r\n".encode())
        await writer.drain()
        stream = cls(reader, writer)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200"), head
        assert b"transfer-encoding: chunked" in head.lower(), head
        return stream

    async def lines(self) -> Any:
        """The body's lines, de-chunked."""
        pending = b""
        while True:
            size = int((await self.reader.readuntil(b"\r\n"))[:-2], 16)
            if size == 0:
                return
            pending += (await self.reader.readexactly(size + 2))[:-2]
            *complete, pending = pending.split(b"\n")
            for line in complete:
                yield line

    def close(self) -> None:
        self.writer.close()


async def test_slow_reader_pauses_the_stream_instead_of_growing_the_gateway(
    make_cluster: MakeClusterFn, new_topic: NewTopicFn, producer: Any
) -> None:
    """Tens of megabytes are available while the client reads nothing: the gateway writes
    until the socket is full and then waits (bytes handed out stay small, resident memory
    does not grow by what is waiting in Kafka); when the client reads again it gets every
    record, in order."""
    cluster = await make_cluster(1)
    base = cluster.urls[0]
    proc = cluster.replicas[0].process
    assert proc is not None
    topic = await new_topic(partitions=1)
    pending = [
        await producer.send(topic, b"%08d" % i + b"x" * (RECORD_BYTES - 8), partition=0)
        for i in range(RECORDS)
    ]
    await asyncio.gather(*pending)

    group = uid("slow")
    inst = f"/consumers/{group}/instances/c"
    async with aiohttp.ClientSession() as http:
        await create_subscribed(http, base, group, "c", topic)
        before_bytes = await consumed_bytes(http, base)
        baseline = rss_bytes(proc.pid)
        stream = await RawStream.open(base, inst + "/records", NDJSON)
        peak = baseline
        until = time.monotonic() + 6.0  # well inside the 30 s write timeout
        while time.monotonic() < until:
            peak = max(peak, rss_bytes(proc.pid))
            await asyncio.sleep(0.1)
        handed_out = await consumed_bytes(http, base) - before_bytes

        got: list[bytes] = []
        async with asyncio.timeout(60):
            async for line in stream.lines():
                event = parse_ndjson_line(line)
                if event.kind == "heartbeat":
                    continue
                assert event.kind == "record", event
                value = base64.b64decode(event.data["value"])
                assert len(value) == RECORD_BYTES
                got.append(value[:8])
                if len(got) == RECORDS:
                    break
        stream.close()

    available = RECORDS * RECORD_BYTES
    # What the gateway wrote while nobody read: a few batches (kernel buffers and one batch
    # in flight), not what Kafka held.
    assert handed_out < available / 5, (handed_out, available)
    assert peak - baseline < 20 * 1024 * 1024, (peak - baseline, baseline)
    assert got == [b"%08d" % i for i in range(RECORDS)]
