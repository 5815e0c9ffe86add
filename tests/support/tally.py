"""A v2 consuming client for failure tests: retries what the contract says is retriable and
counts what it received, so a test can state produced / delivered / duplicates / lost."""

from __future__ import annotations

import asyncio
import base64
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
import orjson

V2 = "application/vnd.kafka.v2+json"
BINARY = "application/vnd.kafka.binary.v2+json"


@dataclass
class Tally:
    produced: int
    delivered: list[int] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    error_codes: Counter[int] = field(default_factory=Counter)
    first_failure: float | None = None
    recovered: float | None = None
    requests: int = 0

    @property
    def duplicates(self) -> int:
        return len(self.delivered) - len(set(self.delivered))

    @property
    def lost(self) -> int:
        return len(set(range(self.produced)) - set(self.delivered))

    @property
    def recovery_s(self) -> float | None:
        if self.first_failure is None or self.recovered is None:
            return None
        return round(self.recovered - self.first_failure, 2)

    def figures(self, scenario: str) -> dict[str, object]:
        return {
            "scenario": scenario,
            "produced": self.produced,
            "delivered": len(self.delivered),
            "duplicates": self.duplicates,
            "lost": self.lost,
            "recovery_s": self.recovery_s,
            "statuses": dict(self.statuses),
        }

    def note_failure(self) -> None:
        if self.first_failure is None:
            self.first_failure = time.monotonic()

    def note_success(self, got_records: bool) -> None:
        if self.first_failure is not None and self.recovered is None and got_records:
            self.recovered = time.monotonic()


async def consume(
    session: aiohttp.ClientSession,
    base: Callable[[int], str],
    group: str,
    name: str,
    tally: Tally,
    *,
    deadline_s: float,
    max_bytes: int = 400,
    pause_s: float = 0.0,
    until: int | None = None,
    commit: bool = True,
    on_progress: Callable[[Tally], object] | None = None,
) -> Tally:
    """Read (and commit what was read) until every record arrived or the deadline passes.

    ``base(i)`` is the base URL for the i-th request: the load balancer, or a rotation over
    replicas. 503s are retried after a short pause, as ``Retry-After`` asks; anything else that
    is not a 200 is counted and retried too, so the test can assert on the counts.
    """
    path = f"/consumers/{group}/instances/{name}"
    end = time.monotonic() + deadline_s
    goal = tally.produced if until is None else until
    while time.monotonic() < end and len(set(tally.delivered)) < goal:
        url = base(tally.requests) + path + "/records"
        tally.requests += 1
        try:
            async with session.get(
                url,
                params={"timeout": "1000", "max_bytes": str(max_bytes)},
                headers={"Accept": BINARY},
                timeout=aiohttp.ClientTimeout(total=30),
            ) as resp:
                body = await resp.read()
                tally.statuses[resp.status] += 1
                if resp.status != 200:
                    tally.note_failure()
                    if body:
                        tally.error_codes[_error_code(body)] += 1
                    await asyncio.sleep(0.2)
                    continue
                records = orjson.loads(body)
        except (aiohttp.ClientError, TimeoutError):
            tally.statuses[0] += 1
            tally.note_failure()
            await asyncio.sleep(0.2)
            continue
        tally.delivered.extend(int(base64.b64decode(r["value"])) for r in records)
        tally.note_success(bool(records))
        if pause_s:
            await asyncio.sleep(pause_s)  # a client that processes what it read
        if on_progress is not None:
            on_progress(tally)
        if commit and records:
            try:
                async with session.post(
                    base(tally.requests) + path + "/offsets",
                    headers={"Content-Type": V2},
                    timeout=aiohttp.ClientTimeout(total=30),
                ) as resp:
                    await resp.read()
            except (aiohttp.ClientError, TimeoutError):
                pass  # the next commit covers it; at worst the records come again
    return tally


def _error_code(body: bytes) -> int:
    """The answer's ``error_code``; -1 for a body that is not the gateway's JSON (a proxy's
    own error page), which the tally counts instead of crashing on."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return -1
    return int(parsed.get("error_code", 0)) if isinstance(parsed, dict) else -1
