"""One open streaming response: bounded writes, heartbeats while idle, an end on drain."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from . import framing

# A reader that takes no bytes for this long is gone (or stuck): the stream ends, releasing its
# slot, rather than holding the consumer and its buffers for as long as the TCP connection lives.
WRITE_TIMEOUT_S = 30.0


class StreamClosed(Exception):
    """The client went away, or stopped reading for longer than the write timeout."""


class EventStream:
    """The response side of a stream.

    :meth:`send` returns once the bytes are in the socket's buffer below aiohttp's high-water
    mark, so a slow reader slows the caller down (backpressure) instead of piling records up in
    memory. The caller fetches the next records only after the last send returned.
    """

    def __init__(
        self,
        request: web.Request,
        ctype: str,
        *,
        heartbeat_s: float,
        write_timeout_s: float = WRITE_TIMEOUT_S,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.ctype = ctype
        self._request = request
        self._heartbeat_s = heartbeat_s
        self._write_timeout_s = write_timeout_s
        self._last_write = time.monotonic()
        self.response = web.StreamResponse(
            headers={
                "Content-Type": ctype if ctype != framing.SSE else f"{ctype}; charset=utf-8",
                # Proxies must pass each event on at once, and nobody may cache a stream.
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
                **(headers or {}),
            }
        )

    async def open(self, first: bytes = b"") -> None:
        """Send the status line and headers (and ``first``) at once: a client, or a replica
        forwarding the stream, sees the stream start before the first record arrives."""
        if self._request.transport is None or self._request.transport.is_closing():
            raise StreamClosed("the client closed the connection")
        await self.response.prepare(self._request)
        await self.send(first or framing.heartbeat(self.ctype))

    async def send(self, data: bytes) -> None:
        transport = self._request.transport
        if transport is None or transport.is_closing():
            raise StreamClosed("the client closed the connection")
        try:
            async with asyncio.timeout(self._write_timeout_s):
                await self.response.write(data)
        except TimeoutError as exc:
            raise StreamClosed(f"the client read nothing for {self._write_timeout_s:g} s") from exc
        except ConnectionError as exc:
            raise StreamClosed(str(exc) or type(exc).__name__) from exc
        self._last_write = time.monotonic()

    async def tick(self) -> None:
        """A heartbeat if nothing was written for a heartbeat interval; call when idle."""
        if time.monotonic() - self._last_write >= self._heartbeat_s:
            await self.send(framing.heartbeat(self.ctype))

    @property
    def heartbeat_due_s(self) -> float:
        """Seconds until :meth:`tick` would write: the longest an idle wait should last."""
        return max(0.0, self._heartbeat_s - (time.monotonic() - self._last_write))

    async def close(self) -> None:
        """End the response cleanly (the last chunk), if the client is still there."""
        transport = self._request.transport
        if transport is None or transport.is_closing():
            return
        try:
            async with asyncio.timeout(self._write_timeout_s):
                await self.response.write_eof()
        except (TimeoutError, ConnectionError):
            transport.abort()
