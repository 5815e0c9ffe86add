"""A TCP relay on loopback that a test can cut and heal: one replica's network partition.

Put in front of Redis for one replica only, it partitions that replica from the session store
while the others keep their direct connection. ``cut()`` behaves like a dropped route, not a
refused connection: bytes stop flowing both ways and new connections are accepted but never
reach the server, so the replica's Redis client waits and times out as it would on a real
partition. ``heal()`` drops every connection that lived through the cut (their half-sent
commands must not arrive late, as a retransmission might) and relays new ones again.
"""

from __future__ import annotations

import asyncio
import contextlib


class TcpProxy:
    """Explicit lifecycle: ``port = await proxy.start()`` ... ``await proxy.stop()``."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._open = asyncio.Event()
        self._open.set()
        self._links: set[asyncio.Task[None]] = set()
        self._cut_links: set[asyncio.Task[None]] = set()
        self.port = 0
        self.connections = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._links):
            task.cancel()
        await asyncio.gather(*self._links, return_exceptions=True)

    def cut(self) -> None:
        self._open.clear()
        self._cut_links = set(self._links)

    def heal(self) -> None:
        for task in self._cut_links | set(self._links):
            task.cancel()  # connections from before the heal never deliver late bytes
        self._cut_links = set()
        self._open.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._links.add(task)
        self.connections += 1
        upstream: asyncio.StreamWriter | None = None
        try:
            await self._open.wait()
            up_reader, upstream = await asyncio.open_connection(*self._target)
            await asyncio.gather(self._pipe(reader, upstream), self._pipe(up_reader, writer))
        except (asyncio.CancelledError, ConnectionError, OSError):
            pass
        finally:
            self._links.discard(task)
            for w in (writer, upstream):
                if w is not None:
                    w.close()
                    with contextlib.suppress(Exception):
                        await w.wait_closed()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            data = await reader.read(65536)
            await self._open.wait()  # while cut, nothing moves (the bytes are never sent)
            if not data:
                writer.close()
                return
            writer.write(data)
            await writer.drain()
