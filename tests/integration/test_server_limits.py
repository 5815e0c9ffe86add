"""Limits that keep one client from holding a replica's resources for good: the HTTP header
read timeout (slowloris), a bounded keep-alive, and the shared producer's metadata, which
made-up topic names must not grow.

Connections here are raw sockets, so the test controls every byte and every pause; the
server is the one ``event-gateway serve`` runs (``gateway.server.make_runner``) on real Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

import orjson
from aiohttp import web

from gateway.app import build_app
from gateway.config import from_properties
from gateway.context import PRODUCER
from gateway.server import make_runner
from sessions import kafka_internals
from tests.harness.api import MakeGatewayFn, NewTopicFn
from tests.support.v2 import BINARY, V2

HEADER_TIMEOUT_S = 1.0
# Generous bound on how late the cut may come (a loaded CI machine), yet far below the
# keep-alive these tests configure, so only the header timeout can explain a cut in time.
SLACK_S = 1.5
LONG_IDLE_MS = "60000"


@contextlib.asynccontextmanager
async def served(kafka_bootstrap: str) -> AsyncIterator[tuple[str, int]]:
    """A gateway on a loopback port, run exactly as ``serve()`` runs it."""
    cfg = from_properties(
        {
            "bootstrap.servers": kafka_bootstrap,
            "kafka.timeout.ms": "5000",
            "http.header.read.timeout.ms": str(int(HEADER_TIMEOUT_S * 1000)),
            "idle.timeout.ms": LONG_IDLE_MS,
        }
    )
    runner = make_runner(build_app(cfg), cfg)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield host, port
    finally:
        await runner.cleanup()


async def read_until_closed(reader: asyncio.StreamReader, limit_s: float) -> bytes:
    """Everything the server sends until it closes the connection (fails after ``limit_s``)."""
    chunks = []
    async with asyncio.timeout(limit_s):
        while chunk := await reader.read(65536):
            chunks.append(chunk)
    return b"".join(chunks)


async def trickle(writer: asyncio.StreamWriter, data: bytes, every_s: float) -> None:
    """Send ``data`` one byte at a time; stop quietly once the server hangs up."""
    with contextlib.suppress(ConnectionError, OSError):
        for i in range(len(data)):
            writer.write(data[i : i + 1])
            await writer.drain()
            await asyncio.sleep(every_s)


def split_response(raw: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines)}
    return status_line, headers, body


async def one_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[str, bytes]:
    """Send a request and read exactly its response (the connection stays open)."""
    writer.write(request)
    await writer.drain()
    async with asyncio.timeout(10):
        head = await reader.readuntil(b"\r\n\r\n")
        status, headers, _ = split_response(head)
        body = await reader.readexactly(int(headers["content-length"]))
    return status, body


GET_ROOT = b"GET / HTTP/1.1\r\nHost: gw\r\n\r\n"


# --- header read timeout ----------------------------------------------------------------------


async def test_headers_trickled_byte_by_byte_are_cut_off_with_a_408(kafka_bootstrap):
    async with served(kafka_bootstrap) as (host, port):
        reader, writer = await asyncio.open_connection(host, port)
        started = time.monotonic()
        # Far more header bytes than the timeout lets through: it would take 40 s to send.
        slow = asyncio.create_task(
            trickle(writer, b"GET / HTTP/1.1\r\nHost: gw\r\n" + b"X-Slow: a\r\n" * 40, 0.1)
        )
        try:
            raw = await read_until_closed(reader, HEADER_TIMEOUT_S + SLACK_S + 5)
        finally:
            slow.cancel()
            writer.close()
        elapsed = time.monotonic() - started
    assert HEADER_TIMEOUT_S - 0.1 <= elapsed <= HEADER_TIMEOUT_S + SLACK_S, elapsed
    status, headers, body = split_response(raw)
    assert status == "HTTP/1.1 408 Request Timeout"
    assert headers["content-type"] == "application/json"
    error = orjson.loads(body)
    assert error["error_code"] == 408 and "headers" in error["message"], error


async def test_a_connection_that_sends_nothing_is_closed_without_an_answer(kafka_bootstrap):
    async with served(kafka_bootstrap) as (host, port):
        reader, writer = await asyncio.open_connection(host, port)
        started = time.monotonic()
        try:
            raw = await read_until_closed(reader, HEADER_TIMEOUT_S + SLACK_S + 5)
        finally:
            writer.close()
        elapsed = time.monotonic() - started
    assert raw == b""  # nothing a pooled client could mistake for the answer to its next request
    assert elapsed <= HEADER_TIMEOUT_S + SLACK_S, elapsed


async def test_the_clock_restarts_with_each_request_not_with_idle_time(kafka_bootstrap):
    async with served(kafka_bootstrap) as (host, port):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            assert (await one_request(reader, writer, GET_ROOT)) == ("HTTP/1.1 200 OK", b"{}")
            # Idle for longer than the header timeout: keep-alive's business, not a cut.
            await asyncio.sleep(HEADER_TIMEOUT_S * 2)
            assert (await one_request(reader, writer, GET_ROOT)) == ("HTTP/1.1 200 OK", b"{}")
            # A later request trickled on the same connection is timed from its first byte.
            started = time.monotonic()
            writer.write(b"GET / HTTP/1.1\r\n")
            slow = asyncio.create_task(trickle(writer, b"X-Slow: a\r\n" * 40, 0.1))
            try:
                raw = await read_until_closed(reader, HEADER_TIMEOUT_S + SLACK_S + 5)
            finally:
                slow.cancel()
            elapsed = time.monotonic() - started
        finally:
            writer.close()
    assert HEADER_TIMEOUT_S - 0.1 <= elapsed <= HEADER_TIMEOUT_S + SLACK_S, elapsed
    assert raw.startswith(b"HTTP/1.1 408 Request Timeout"), raw[:300]


async def test_a_slow_body_is_not_a_slow_header(kafka_bootstrap):
    """The limit is on headers only: a body that takes longer than it still gets its answer."""
    body = b"{" + b" " * 28 + b"}"
    head = (
        b"POST / HTTP/1.1\r\nHost: gw\r\nContent-Type: application/vnd.kafka.v2+json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    async with served(kafka_bootstrap) as (host, port):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(head)
            await trickle(writer, body, HEADER_TIMEOUT_S * 2 / len(body))  # 2 s in all
            async with asyncio.timeout(10):
                response = await reader.readuntil(b"{}")
        finally:
            writer.close()
    assert response.startswith(b"HTTP/1.1 200 OK"), response


# --- keep-alive -------------------------------------------------------------------------------


async def test_idle_keep_alive_connections_are_closed_after_idle_timeout(
    make_gateway: MakeGatewayFn,
):
    """Set through the Application itself, so any runner of it (here aiohttp's test server,
    which has no header timeout) bounds idle connections; aiohttp's default is an hour."""
    client = await make_gateway({"idle.timeout.ms": "1000"})
    assert client.server.port is not None
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        assert (await one_request(reader, writer, GET_ROOT)) == ("HTTP/1.1 200 OK", b"{}")
        answered = time.monotonic()
        assert await read_until_closed(reader, 10) == b""
        idle = time.monotonic() - answered
    finally:
        writer.close()
    assert 0.9 <= idle <= 1.0 + SLACK_S, idle


# --- the shared producer's metadata -----------------------------------------------------------


async def test_missing_topics_are_not_tracked_by_the_producer_forever(
    make_gateway: MakeGatewayFn, new_topic: NewTopicFn, kafka_admin
):
    client = await make_gateway({"producer.max.block.ms": "300"})
    api = V2(client)
    record = {"records": [{"value": "eA=="}]}
    existing = await new_topic(partitions=1)
    status, body, _ = await api.call("POST", f"/topics/{existing}", record, ctype=BINARY)
    assert (status, body["offsets"][0]["error_code"]) == (200, None), body

    missing = [f"missing-{uuid.uuid4().hex[:12]}" for _ in range(200)]
    for start in range(0, len(missing), 50):
        answers = await asyncio.gather(
            *(
                api.call("POST", f"/topics/{name}", record, ctype=BINARY)
                for name in missing[start : start + 50]
            )
        )
        for status, body, _ in answers:
            assert status == 200, body
            assert body["offsets"][0]["error_code"] == 50003, body

    producer = await client.app[PRODUCER].producer()
    tracked = kafka_internals.metadata_topics(producer)
    assert not tracked & set(missing), sorted(tracked & set(missing))[:5]
    assert existing in tracked  # a topic the cluster knows is never dropped

    # Forgetting a name does not stop it from working once it exists.
    from aiokafka.admin import NewTopic

    late = missing[0]
    await kafka_admin.create_topics([NewTopic(late, 1, 1)])
    try:
        deadline = time.monotonic() + 15
        while True:
            status, body, _ = await api.call("POST", f"/topics/{late}", record, ctype=BINARY)
            if body["offsets"][0]["error_code"] is None or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert (status, body["offsets"][0]["error_code"]) == (200, None), body
        assert late in kafka_internals.metadata_topics(producer)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(kafka_admin.delete_topics([late]), 10)
