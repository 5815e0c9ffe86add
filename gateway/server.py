"""Run the Application until SIGTERM/SIGINT, then shut down in the order a load balancer needs.

aiohttp's own ``run_app`` stops listening first and only then runs shutdown hooks. A replica
behind a load balancer must do it the other way round: (1) report not-ready and keep serving
while the balancer notices, (2) hand every consumer instance back to the directory with its
exact positions (in-flight reads finish first), (3) only then stop listening and exit. Every
step is bounded, so a stuck Kafka or Redis cannot keep a terminating pod alive forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from aiohttp import web

from .app import build_app
from .config import Config
from .context import SESSIONS

log = logging.getLogger(__name__)


async def serve(config: Config) -> None:
    app = build_app(config)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=config.shutdown_timeout_ms / 1000,
    )
    await runner.setup()
    lst = config.listener
    site = web.TCPSite(runner, lst.host, lst.port, reuse_address=True)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()  # close Kafka and Redis clients before reporting the failure
        raise
    log.info("event-gateway listening on %s (node %s)", lst.url, app[SESSIONS].node_id)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
        log.info("shutting down: readiness off, draining consumer instances")
        sessions = app[SESSIONS]
        sessions.ready = False
        await asyncio.sleep(config.shutdown_readiness_delay_ms / 1000)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(sessions.stop(), config.shutdown_timeout_ms / 1000 + 5)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
        log.info("event-gateway stopped")
