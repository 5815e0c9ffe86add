"""A minimal keep-alive HTTP/1.1 client for the produce scenarios' load.

The benchmark's load generator shares the machine's two cores with the gateway and the
broker. aiohttp's client spends about 270 µs of CPU per produce request (a request object,
header multidicts, a response object, its own stream reader), roughly a third of what the
gateway spends answering it: on a 2-core machine that CPU is taken from the gateway, so the
measurement partly measured the client. Load generators for HTTP servers (wrk, h2load) are
written to cost next to nothing for this reason. This one sends prebuilt request bytes on
one connection and reads each answer by its Content-Length: nothing else, because the
gateway answers produce requests with a fixed-length body. Anything it does not expect
(chunked answers, a closed connection) is an error, never a silently wrong count.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

_CONTENT_LENGTH = b"\r\ncontent-length:"


class LeanConnection:
    """One keep-alive connection; one request at a time (as a browser's or curl's)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, url: str) -> LeanConnection:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname is None or parts.port is None:
            raise ValueError(f"lean client speaks plain http to host:port only, not {url!r}")
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        return cls(reader, writer)

    async def close(self) -> None:
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except OSError:
            pass

    async def request(self, head: bytes, body: bytes) -> tuple[int, bytes]:
        """Send ``head`` (request line and headers, ending in the blank line) and ``body``;
        the answer's status and body."""
        if len(body) < 65536:
            self._writer.write(head + body)  # one segment for the usual small request
        else:
            self._writer.write(head)
            self._writer.write(body)
        head_in = await self._reader.readuntil(b"\r\n\r\n")
        status = int(head_in[9:12])
        lowered = head_in.lower()
        at = lowered.find(_CONTENT_LENGTH)
        if at < 0:
            raise RuntimeError(f"answer without Content-Length: {head_in[:300]!r}")
        end = lowered.index(b"\r\n", at + 2)
        length = int(lowered[at + len(_CONTENT_LENGTH) : end])
        return status, await self._reader.readexactly(length)


def post_head(url: str, content_type: str, accept: str, length: int) -> bytes:
    """The request line and headers of a POST to ``url`` with a body of ``length`` bytes."""
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: {parts.netloc}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Accept: {accept}\r\n"
        f"Content-Length: {length}\r\n"
        "\r\n"
    ).encode("ascii")
