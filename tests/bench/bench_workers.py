"""Scenario ``workers``: one gateway with ``workers=1``, then with ``workers=2``.

``workers=N`` makes a replica a parent process with N worker child processes sharing its
listener (they need a shared session store, so both runs get the same Redis and
``cluster.secret``; the only difference between them is ``workers``). The workload is the
produce scenario: binary, 100-record requests, 8 requests in flight from the driver's one
HTTP session. CPU is summed over the parent and every descendant process
(``/proc/<pid>/task/*/children``), so CPU µs per record compares like with like. The direct
aiokafka producer runs in the same run for the ratio, as in the produce scenario.

Until the gateway implements the setting this scenario fails with :class:`WorkersUnavailable`
(the gateway refused ``--set workers=N``, or accepted it and started no worker processes).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.bench import bench_scenarios as sc
from tests.bench.bench_infra import GatewayProcess, descendants, process_tree

COUNTS = (1, 2)
BATCH = 100


class WorkersUnavailable(RuntimeError):
    """The gateway does not (yet) run ``workers=N`` as N worker processes."""


async def _start(
    n: int, bootstrap: str, redis_url: str, workdir: Path, extra: Mapping[str, str]
) -> tuple[GatewayProcess, list[int]]:
    props = {
        "bootstrap.servers": bootstrap,
        "workers": str(n),
        "session.store.url": redis_url,
        "cluster.secret": "x",
        **extra,
    }
    gw = GatewayProcess(f"workers-{n}", props, workdir)
    gw.start()
    try:
        await gw.wait_ready()
    except RuntimeError as exc:
        gw.stop()
        raise WorkersUnavailable(
            f"scenario workers: the gateway did not start with `--set workers={n}` "
            f"(the setting is being implemented; rerun `python3 -m tests.bench.run --only "
            f"workers` once it has landed). {exc}"
        ) from exc
    # Workers may still be starting when the first one answers /readyz.
    kids: list[int] = []
    for _ in range(50):
        kids = descendants(gw.pid)
        if n == 1 or len(kids) >= n:
            break
        await asyncio.sleep(0.1)
    if n > 1 and len(kids) < n:
        gw.stop()
        raise WorkersUnavailable(
            f"scenario workers: `--set workers={n}` was accepted, but gateway pid {gw.pid} has "
            f"{len(kids)} child process(es) after 5 s (expected {n} workers): the setting is "
            "not implemented yet. Rerun `python3 -m tests.bench.run --only workers` once it is."
        )
    return gw, kids


async def workers(
    ctx: sc.Ctx,
    bootstrap: str,
    redis_url: str,
    workdir: Path,
    *,
    repeat: int = 1,
    extra: Mapping[str, str] | None = None,
) -> list[sc.Result]:
    """``repeat`` rounds of workers=1, workers=2, direct; each gateway freshly started (with
    the ``extra`` settings, e.g. ``--gateway-set``)."""
    variant = f"binary batch={BATCH} conc={ctx.sizes.concurrency}"
    results: list[sc.Result] = []
    saved = ctx.cpu_pids
    for _ in range(repeat):
        for n in COUNTS:
            gw, kids = await _start(n, bootstrap, redis_url, workdir, extra or {})
            try:
                ctx.cpu_pids = {
                    **{k: v for k, v in saved.items() if k != "gateway"},
                    **process_tree("gateway", gw.pid),
                }
                print(f"  workers={n}: parent pid {gw.pid}, children {kids}")
                (res,) = await sc.produce_throughput(
                    ctx, gw.url, fmt="binary", batch=BATCH, sides=["gateway"]
                )
            finally:
                ctx.cpu_pids = saved
                gw.stop()
            res.update(
                scenario="workers",
                variant=variant,
                side=f"workers={n}",
                gateway_processes=1 + len(kids),
            )
            results.append(res)
            _show(res)
        (res,) = await sc.produce_throughput(ctx, "", fmt="binary", batch=BATCH, sides=["direct"])
        res.update(scenario="workers", variant=variant)
        results.append(res)
        _show(res)
    return results


def gateway_cores(r: dict[str, Any]) -> float:
    """CPU cores of the gateway: the parent plus every worker (``gateway*`` keys)."""
    return sum(v for k, v in r["cpu"].items() if k.startswith("gateway_"))


def _show(r: sc.Result) -> None:
    lat = r.get("latency", {})
    print(
        f"  workers {r['side']:<10} {r['records_per_s']:,.0f} rec/s {r['mb_per_s']} MB/s "
        f"p50/p99 {lat.get('p50_ms')}/{lat.get('p99_ms')} ms cpu {r['cpu']}"
    )
