"""The bound on open streams, per replica and per principal, and their end on drain.

A stream holds a connection, a consumer's buffers and (for topic streams) broker connections
for as long as the client keeps it: without a cap one client could hold them all. Past
either bound the answer is 429 42905 with Retry-After, before anything is opened.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Iterator

from aiohttp import web

from ..errors import GatewayError

TOO_MANY_STREAMS = 42905
# Ends kept for streams not open yet: a drain ends a handful of relayed streams at once.
ENDED_EARLY_MAX = 1024


class StreamSlots:
    def __init__(self, max_open: int, max_per_principal: int) -> None:
        self._max_open = max_open
        self._max_per_principal = max_per_principal
        self._open: Counter[str] = Counter()
        self.total = 0
        # Set when the replica drains: every open stream ends cleanly so that its client
        # reconnects (through the load balancer) to a replica that stays.
        self.closing = asyncio.Event()
        # Each open stream's own end, set on drain or by end(): a stream relayed by another
        # replica (named by the hop's stream token) ends when that replica drains.
        self._ends: set[asyncio.Event] = set()
        self._by_token: dict[str, asyncio.Event] = {}
        # Ends that arrived before their stream opened (the relay drained while the hop was
        # on its way): such a stream ends at its first turn. Bounded; the oldest go first.
        self._ended_early: dict[str, None] = {}

    @contextlib.contextmanager
    def hold(self, principal: str, token: str | None = None) -> Iterator[asyncio.Event]:
        """A slot for one stream, kept until the block ends; yields the event that ends it
        (the replica drains, or ``end(token)``)."""
        if self.closing.is_set():
            raise GatewayError(
                503, 50302, "This replica is shutting down; retry the request", retry_after=1
            )
        if self.total >= self._max_open:
            raise GatewayError(
                429,
                TOO_MANY_STREAMS,
                f"This replica serves {self._max_open} streams already (stream.max.open)",
                retry_after=1,
            )
        if self._open[principal] >= self._max_per_principal:
            raise GatewayError(
                429,
                TOO_MANY_STREAMS,
                f"{self._max_per_principal} streams of this principal are open on this replica"
                " already (stream.max.open.per.principal)",
                retry_after=1,
            )
        self._open[principal] += 1
        self.total += 1
        ends = asyncio.Event()
        self._ends.add(ends)
        if token is not None:
            self._by_token[token] = ends
            if token in self._ended_early:
                del self._ended_early[token]
                ends.set()
        try:
            yield ends
        finally:
            self._ends.discard(ends)
            if token is not None and self._by_token.get(token) is ends:
                del self._by_token[token]
            self.total -= 1
            self._open[principal] -= 1
            if not self._open[principal]:
                del self._open[principal]

    def end(self, token: str) -> bool:
        """End the stream opened with ``token`` (cleanly, at its next turn); False if it is
        not open (yet): if it opens later, it ends at its first turn."""
        ends = self._by_token.get(token)
        if ends is None:
            if len(self._ended_early) >= ENDED_EARLY_MAX:
                del self._ended_early[next(iter(self._ended_early))]
            self._ended_early[token] = None
            return False
        ends.set()
        return True

    def close(self) -> None:
        self.closing.set()
        for ends in self._ends:
            ends.set()


STREAMS = web.AppKey("streams", StreamSlots)
