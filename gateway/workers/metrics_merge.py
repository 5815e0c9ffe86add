"""One ``/metrics`` for a replica of several workers: each family once, a ``worker`` label.

A scrape reaches one worker through the shared listener; that worker asks its siblings for
their own exposition over their sockets (:data:`LOCAL_SCRAPE`) and merges the texts here.
Prometheus' text format wants every sample of a family in one group under a single HELP and
TYPE, so the texts are regrouped by family rather than concatenated.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import aiohttp

from .identity import WorkerIdentity

log = logging.getLogger(__name__)

# Asks a worker for its own samples only (no fan-out to its siblings: no loops).
LOCAL_SCRAPE = "X-Event-Gateway-Scrape"
SCRAPE_TIMEOUT_S = 2.0


def merge(texts: Mapping[int, str]) -> str:
    """The expositions of workers (by index) as one, every sample labelled with its worker."""
    order: list[str] = []
    meta: dict[str, list[str]] = {}
    samples: dict[str, list[str]] = {}
    for index in sorted(texts):
        family = ""
        for line in texts[index].splitlines():
            if not line.strip():
                continue
            if line.startswith("#"):
                parts = line.split(None, 3)
                if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                    family = parts[2]
                    if family not in meta:
                        order.append(family)
                        meta[family], samples[family] = [], []
                    if not any(m.split(None, 2)[1] == parts[1] for m in meta[family]):
                        meta[family].append(line)
                continue
            if family not in meta:  # a sample with no HELP/TYPE before it
                family = line.split("{", 1)[0].split(None, 1)[0]
                order.append(family)
                meta[family], samples[family] = [], []
            samples[family].append(_labelled(line, index))
    out: list[str] = []
    for family in order:
        out += meta[family]
        out += samples[family]
    return "\n".join(out) + "\n"


def workers_answering(answering: int, count: int) -> str:
    """Two gauges that tell a scrape missing a worker (one being restarted) from a whole one:
    its counters would otherwise just seem to drop."""
    return (
        "# HELP event_gateway_workers Worker processes this replica runs.\n"
        "# TYPE event_gateway_workers gauge\n"
        f"event_gateway_workers {count}\n"
        "# HELP event_gateway_workers_answering Workers whose samples this scrape holds.\n"
        "# TYPE event_gateway_workers_answering gauge\n"
        f"event_gateway_workers_answering {answering}\n"
    )


def _labelled(sample: str, index: int) -> str:
    label = f'worker="{index}"'
    name, brace, rest = sample.partition("{")
    if brace:
        return f"{name}{{{label},{rest}" if not rest.startswith("}") else f"{name}{{{label}{rest}"
    name, _, value = sample.partition(" ")
    return f"{name}{{{label}}} {value}"


async def scrape_siblings(worker: WorkerIdentity) -> dict[int, str]:
    """Each live sibling's own exposition; a sibling being restarted is left out."""

    async def one(index: int) -> tuple[int, str | None]:
        connector = aiohttp.UnixConnector(worker.socket_path(index))
        timeout = aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_S)
        try:
            async with (
                aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
                session.get("http://localhost/metrics", headers={LOCAL_SCRAPE: "local"}) as resp,
            ):
                if resp.status == 200:
                    return index, await resp.text()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.debug("worker %d not scraped: %s", index, exc)
        return index, None

    found = await asyncio.gather(*(one(i) for i in range(worker.count) if i != worker.index))
    return {i: text for i, text in found if text is not None}
