"""Run the Application until SIGTERM/SIGINT, then shut down in the order a load balancer needs.

aiohttp's own ``run_app`` stops listening first and only then runs shutdown hooks. A replica
behind a load balancer must do it the other way round: (1) report not-ready and keep serving
while the balancer notices, (2) hand every consumer instance back to the directory with its
exact positions (in-flight reads finish first), (3) only then stop listening and exit. Every
step is bounded, so a stuck Kafka or Redis cannot keep a terminating pod alive forever.

The HTTP server itself is bounded too: aiohttp has no limit on how long a client may take to
send a request's headers, so a client trickling them a byte at a time (slowloris) would hold a
connection forever; :func:`make_runner` adds that limit (``http.header.read.timeout.ms``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from typing import Any

import orjson
from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler

from .app import build_app
from .config import Config
from .context import SESSIONS
from .forwarding import FORWARDER
from .security.tls import TLS_KEY
from .streaming.slots import STREAMS
from .workers.identity import WorkerIdentity

# How long a draining replica waits for the owners of the streams it relays to accept their end.
RELAY_END_TIMEOUT_S = 5.0

log = logging.getLogger(__name__)


async def serve(config: Config, worker: WorkerIdentity | None = None) -> None:
    """Serve until SIGTERM/SIGINT; as a worker (see gateway/workers), on the listener shared
    with its siblings (SO_REUSEPORT), plus this worker's own Unix socket for them."""
    loop = asyncio.get_running_loop()
    # SIGHUP: certificate renewal (cert-manager, certbot) without dropping a connection. One
    # during start-up (a renewal, or a parent passing one on to a worker still starting) must
    # neither kill the process (the default action) nor be lost: the files may have been
    # replaced after build_app read them, so it is replayed once TLS is set up.
    early_hup: list[bool] = []
    loop.add_signal_handler(signal.SIGHUP, early_hup.append, True)
    try:
        app = build_app(config, worker)
        tls = app[TLS_KEY]
        loop.add_signal_handler(signal.SIGHUP, tls.reload)
        if early_hup:
            tls.reload()
        runner = make_runner(app, config)
        await runner.setup()
    except BaseException:
        loop.remove_signal_handler(signal.SIGHUP)
        raise
    lst = config.listener
    # With workers, each binds the port with SO_REUSEPORT: the kernel spreads new
    # connections over them by address hash. (One shared accept queue would not: asyncio
    # accepts every pending connection on each wake-up, so the first worker awake takes all.)
    sites: list[web.BaseSite] = [
        web.TCPSite(
            runner,
            lst.host,
            lst.port,
            reuse_address=True,
            reuse_port=worker is not None or None,
            ssl_context=tls.server,
        )
    ]
    if worker is not None:
        path = worker.socket_path(worker.index)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # left by this worker's crashed predecessor
        sites.append(web.UnixSite(runner, path))
    try:
        for site in sites:
            await site.start()
    except BaseException:
        loop.remove_signal_handler(signal.SIGHUP)
        await runner.cleanup()  # close Kafka and Redis clients before reporting the failure
        raise
    log.info("event-gateway listening on %s (node %s)", lst.url, app[SESSIONS].node_id)

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
        log.info("shutting down: readiness off, draining consumer instances")
        sessions = app[SESSIONS]
        sessions.ready = False
        app[STREAMS].close()  # streams end now; their clients reconnect to a replica that stays
        # Streams relayed for another replica's instances: their owners end them, so that
        # what they already wrote still reaches the client (a cut relay would lose it). Asked
        # during the readiness delay: an owner that does not answer adds nothing to the drain.
        ending = asyncio.ensure_future(
            app[FORWARDER].end_relayed_streams(
                min(RELAY_END_TIMEOUT_S, config.shutdown_timeout_ms / 1000)
            )
        )
        await asyncio.sleep(config.shutdown_readiness_delay_ms / 1000)
        await ending
        with contextlib.suppress(Exception):
            await asyncio.wait_for(sessions.stop(), config.shutdown_timeout_ms / 1000 + 5)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
        log.info("event-gateway stopped")


def make_runner(app: web.Application, config: Config) -> web.AppRunner:
    """An AppRunner whose connections must send each request's headers in bounded time."""
    return _Runner(
        app,
        header_timeout_s=config.http_header_read_timeout_ms / 1000,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=config.shutdown_timeout_ms / 1000,
    )


# --- the header-read timeout ------------------------------------------------------------------
#
# aiohttp builds one RequestHandler (an asyncio protocol) per connection and offers no hook for
# a header deadline, so the runner below makes its server build _Connection instead. That
# reads private attributes (RequestHandler's _request_count, _messages and _waiter, and
# web.Server's _loop and _kwargs); tests/integration/test_server_limits.py trickles headers
# at a real server, so an aiohttp upgrade that moves one fails there instead of silently
# dropping the limit.


class _Runner(web.AppRunner):
    def __init__(self, app: web.Application, *, header_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._header_timeout_s = header_timeout_s

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        return _Server(made, self._header_timeout_s)


class _Server(web.Server):
    """The server the app runner made, building :class:`_Connection` protocols."""

    def __init__(self, made: web.Server, header_timeout_s: float) -> None:
        super().__init__(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            loop=asyncio.get_running_loop(),
            **made._kwargs,
        )
        self._header_timeout_s = header_timeout_s

    def __call__(self) -> RequestHandler:
        return _Connection(
            self, loop=self._loop, header_timeout_s=self._header_timeout_s, **self._kwargs
        )


class _Connection(RequestHandler):
    """One HTTP connection; a request's headers must be complete within the header timeout.

    The clock starts when the connection opens, and afterwards with the first byte of each
    request once the previous request's body is complete; it stops when the parser has the
    headers. Idle time between requests is the keep-alive timeout's business, not this one's,
    so a pooled connection is never cut for sitting idle. A client cut off mid-headers gets a
    408 in Confluent's error shape; one that sent nothing is just closed (it may be a pooled
    connection about to be reused, which must not read a stray 408 as its answer).
    """

    def __init__(self, manager: web.Server, *, header_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._header_timeout_s = header_timeout_s
        self._header_timer: asyncio.TimerHandle | None = None
        self._armed_at = 0  # _request_count when the clock started
        self._partial = False  # bytes of a request whose headers are not complete yet
        self._body: StreamReader | None = None  # the last request's body (may still stream in)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._start_clock()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_clock()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if data and self._header_timer is None and (self._body is None or self._body.is_eof()):
            self._start_clock()  # the first byte of a new request
        if data and self._header_timer is not None:
            self._partial = True
        before = self._request_count
        super().data_received(data)
        if self._request_count != before:  # the parser has a request's headers
            self._stop_clock()
            self._body = self._messages[-1][1] if self._messages else None

    def _start_clock(self) -> None:
        self._stop_clock()
        self._armed_at = self._request_count
        self._header_timer = self._loop.call_later(self._header_timeout_s, self._timed_out)

    def _stop_clock(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        self._partial = False

    def _timed_out(self) -> None:
        self._header_timer = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self._request_count != self._armed_at:
            self._partial = False  # headers arrived by a path data_received() did not see
            return
        waiter = self._waiter
        if waiter is None or waiter.done():
            # A response to an earlier, pipelined request is still being written here; a
            # 408 now would cut into it. That response is bounded, so look again later.
            partial = self._partial
            self._start_clock()
            self._partial = partial
            return
        if self._partial:
            transport.write(_header_timeout_response(self._header_timeout_s))
            log.debug("request headers incomplete after %g s; closing", self._header_timeout_s)
        self.force_close()


def _header_timeout_response(timeout_s: float) -> bytes:
    body = orjson.dumps(
        {"error_code": 408, "message": f"Request headers not received within {timeout_s:g} s."}
    )
    head = (
        "HTTP/1.1 408 Request Timeout\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body
