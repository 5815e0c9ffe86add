"""The benchmark's lean HTTP client reads answers exactly, or fails loudly."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.bench.lean_http import LeanConnection, post_head


async def _echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.Response(status=201 if body else 400, body=body[::-1] + b"|" + request.path.encode())


async def _chunked(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    response.enable_chunked_encoding()
    await response.prepare(request)
    await response.write(b"abc")
    await response.write_eof()
    return response


@pytest.fixture
async def server():
    app = web.Application()
    app.router.add_post("/echo", _echo)
    app.router.add_post("/chunked", _chunked)
    srv = TestServer(app, host="127.0.0.1")
    await srv.start_server()
    yield srv
    await srv.close()


async def test_requests_on_one_connection_get_their_own_answers(server) -> None:
    url = str(server.make_url("/echo"))
    conn = await LeanConnection.open(url)
    try:
        for body in (b"one", b"", b"x" * 70_000, b"last"):
            head = post_head(url, "application/octet-stream", "*/*", len(body))
            status, answer = await conn.request(head, body)
            assert status == (201 if body else 400)
            assert answer == body[::-1] + b"|/echo"
    finally:
        await conn.close()


async def test_an_answer_without_content_length_is_an_error(server) -> None:
    url = str(server.make_url("/chunked"))
    conn = await LeanConnection.open(url)
    try:
        with pytest.raises(RuntimeError, match="without Content-Length"):
            await conn.request(post_head(url, "text/plain", "*/*", 1), b"x")
    finally:
        await conn.close()


async def test_open_refuses_https() -> None:
    with pytest.raises(ValueError, match="plain http"):
        await LeanConnection.open("https://127.0.0.1:1/x")
