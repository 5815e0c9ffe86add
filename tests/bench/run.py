"""Run the benchmarks: the gateway next to a direct aiokafka client, in the same run.

    python3 -m tests.bench.run            # full sizes (100k records), a few minutes
    python3 -m tests.bench.run --quick    # 10x smaller, a smoke run
    python3 -m tests.bench.run --profile produce   # gateway under pyinstrument, one scenario
    python3 -m tests.bench.run --profile latency --profiler cprofile   # CPU self time
    python3 -m tests.bench.run --only mixed [--quick]   # 8 producers + 50 consumers via HAProxy
    python3 -m tests.bench.run --only workers --repeat 3   # one gateway, workers=1 vs workers=2
    python3 -m tests.bench.run --only v3 [--quick]   # v3 streaming produce, one request
    python3 -m tests.bench.run --only stream [--quick]   # SSE / NDJSON streaming consume

Kafka: ``KAFKA_BOOTSTRAP_SERVERS`` if set, else a private broker from tests/harness/kafka.py.
Redis (scenarios forwarding, mixed and workers): ``REDIS_URL`` if set, else a private redis-server if one is
on PATH, else that scenario is skipped and the report says so. The gateway always runs as a
separate process. Results go to stdout as markdown tables and to a JSON file (``--out``).

Only ratios (gateway / direct, measured minutes apart on the same machine) are meant to be
compared across machines; absolute numbers depend on the machine and on whatever else it runs,
which is why each result also carries the CPU used by other processes while it was measured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka.admin import AIOKafkaAdminClient

from tests.bench import bench_idle, bench_mixed, bench_stream, bench_v3, bench_workers
from tests.bench import bench_scenarios as sc
from tests.bench.bench_infra import REPO, GatewayProcess, loadavg, new_workdir
from tests.harness.kafka import KafkaServer, ensure_jars
from tests.harness.redis import RedisServer

RESULTS = Path(__file__).resolve().parent / "results"
ALL = (
    "produce",
    "latency",
    "consume",
    "json",
    "memory",
    "forwarding",
    "idle",
    "mixed",
    "workers",
    "v3",
    "stream",
)
NEEDS_REDIS = ("forwarding", "mixed", "workers")
PROFILABLE = ("produce", "json", "latency", "consume", "forwarding", "v3")


def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python3 -m tests.bench.run", description=__doc__.split("\n")[0]
    )
    p.add_argument("--quick", action="store_true", help="10x smaller workloads (smoke run)")
    p.add_argument(
        "--consume-records",
        type=int,
        default=0,
        help="records of the consume scenario (default: as every scenario, 100,000)",
    )
    p.add_argument(
        "--records",
        type=int,
        default=0,
        help="records of every scenario (default: 100,000; 10,000 with --quick). At 100,000 a "
        "produce measurement lasts about a second, short enough for one broker hiccup to move it",
    )
    p.add_argument("--out", type=Path, default=RESULTS / "last.json", help="JSON results file")
    p.add_argument(
        "--only",
        default=",".join(ALL),
        help=f"comma-separated subset of {','.join(ALL)} (default: all)",
    )
    p.add_argument(
        "--profile",
        choices=PROFILABLE,
        help="run only this scenario's gateway half, with the gateway under pyinstrument",
    )
    p.add_argument(
        "--profiler",
        choices=("pyinstrument", "cprofile"),
        default="pyinstrument",
        help="with --profile: pyinstrument (wall-clock call tree) or cprofile (CPU self time)",
    )
    p.add_argument(
        "--uvloop",
        action="store_true",
        help="run the main gateway on uvloop (installed separately; not a gateway dependency)",
    )
    p.add_argument(
        "--http-client",
        choices=("lean", "aiohttp"),
        default="lean",
        help="HTTP client of the produce throughput scenarios: lean (prebuilt keep-alive "
        "requests, little CPU of its own; default) or aiohttp (pooled ClientSession, as "
        "runs 1-12)",
    )
    p.add_argument("--partitions", type=int, default=3, help="partitions of every topic")
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="measure each gateway/direct pair of scenarios 1-4 this many times, alternating; "
        "the tables show the median run",
    )
    p.add_argument(
        "--idle-count",
        type=int,
        default=0,
        help="instances of scenario idle (default: 1000, 50 with --quick)",
    )
    p.add_argument(
        "--idle-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="gateway setting for scenario idle's gateway (repeatable), "
        "e.g. consumer.heartbeat.interval.ms=10000",
    )
    p.add_argument(
        "--mixed-seconds",
        type=float,
        default=0,
        help="duration of scenario mixed's measurement window (default: 30 s, 10 s with --quick)",
    )
    p.add_argument(
        "--mixed-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="gateway setting for scenario mixed's replicas (repeatable; default workers=1 "
        "where the gateway knows the setting), e.g. workers=2",
    )
    p.add_argument(
        "--gateway-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="gateway setting for the main gateway and scenario workers' (repeatable), e.g. "
        "producer.batch.size=65536: to measure a setting against the defaults",
    )
    args = p.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.only) - set(ALL)
    if unknown:
        p.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    return args


# --- environment ---------------------------------------------------------------------------------


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _meminfo_gb() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return 0.0


def _cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _uptime() -> str:
    try:
        return subprocess.run(
            ["uptime"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        return f"load average: {loadavg()}"


def source_fingerprint() -> dict[str, Any]:
    """Which gateway code was measured: git HEAD, how many files of gateway/ and sessions/
    differ from it, and a hash of each of their .py files.

    Taken before and after the run: the gateway is developed concurrently, and a number is
    only comparable with another measured on the same code.
    """
    import hashlib

    files = {
        str(path.relative_to(REPO)): hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        for path in sorted([*REPO.glob("gateway/**/*.py"), *REPO.glob("sessions/**/*.py")])
    }

    def git(*cmd: str) -> str:
        try:
            return subprocess.run(
                ["git", *cmd], cwd=REPO, capture_output=True, text=True, check=False
            ).stdout.strip()
        except OSError:
            return ""

    dirty = git("status", "--porcelain", "--", "gateway", "sessions")
    return {
        "git_head": git("rev-parse", "--short", "HEAD"),
        "uncommitted_files": len(dirty.splitlines()),
        "sha256": hashlib.sha256(repr(sorted(files.items())).encode()).hexdigest()[:16],
        "files": files,
    }


def changed_files(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    old, new = before["files"], after["files"]
    return sorted(p for p in old.keys() | new.keys() if old.get(p) != new.get(p))


def environment(kafka_version: str) -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "ram_gb": _meminfo_gb(),
        "cpu": _cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "aiokafka": _version("aiokafka"),
        "aiohttp": _version("aiohttp"),
        "orjson": _version("orjson"),
        "uvloop": _version("uvloop"),
        "kafka": kafka_version,
    }


# --- servers -------------------------------------------------------------------------------------


class Servers:
    """The broker and Redis: existing ones from the environment, or private ones started and
    stopped here (from the main thread, as the harness requires)."""

    def __init__(self) -> None:
        self.kafka: KafkaServer | None = None
        self.redis: RedisServer | None = None
        self.bootstrap = ""
        self.kafka_version = "external (KAFKA_BOOTSTRAP_SERVERS)"
        self.redis_url: str | None = None
        self.redis_note = ""

    def start_kafka(self) -> None:
        external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
        if external:
            self.bootstrap = external
            return
        self.kafka = KafkaServer(heap="1g")
        self.bootstrap = self.kafka.start()
        self.kafka_version = _kafka_version(self.kafka.jars or ensure_jars())
        print(
            f"[bench] own Kafka broker {self.bootstrap} ({self.kafka_version}) "
            f"ready in {self.kafka.startup_seconds:.1f} s"
        )

    def start_redis(self) -> None:
        external = os.environ.get("REDIS_URL", "").strip()
        if external:
            self.redis_url = external
            return
        if shutil.which("redis-server") is None:
            self.redis_note = "skipped: no REDIS_URL and no redis-server on PATH"
            return
        self.redis = RedisServer()
        self.redis_url = self.redis.start()

    @property
    def pids(self) -> dict[str, int]:
        out = {}
        if self.kafka is not None and self.kafka.process is not None:
            out["broker"] = self.kafka.process.pid
        return out

    def stop(self) -> None:
        if self.redis is not None:
            self.redis.stop()
        if self.kafka is not None:
            self.kafka.stop()


def _kafka_version(jars: Path) -> str:
    """The broker version, from the name of the core jar (kafka_2.13-X.Y.Z.jar)."""
    for jar in sorted(jars.glob("kafka_2.13-*.jar")):
        name = jar.stem.removeprefix("kafka_2.13-")
        if name[:1].isdigit() and "-" not in name:
            return f"Apache Kafka {name} (KRaft, single node, own broker)"
    return "Apache Kafka (own broker, version unknown)"


# --- the run -------------------------------------------------------------------------------------


def _mem(gw: GatewayProcess) -> dict[str, int]:
    return gw.memory_kb()


async def _direct_proc(*args: str) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.bench.bench_direct_proc",
        *args,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"bench_direct_proc {args[0]} failed:\n{err.decode()[-3000:]}")
    return orjson.loads(out.splitlines()[-1])


async def _idle_instances(ctx: sc.Ctx, bootstrap: str, workdir: Path, count: int) -> dict[str, Any]:
    """RSS of a *fresh* gateway process before and after creating ``count`` idle instances.

    Fresh, because the main gateway's heap has already grown through the throughput
    scenarios: new instances would fill memory it freed but kept, and the RSS delta would
    say nearly nothing about what an instance costs.
    """
    gw = GatewayProcess("idle", {"bootstrap.servers": bootstrap}, workdir)
    gw.start()
    try:
        await gw.wait_ready()
        await asyncio.sleep(1)
        group = f"bench-idle-{uuid.uuid4().hex[:8]}"
        before = _mem(gw)
        paths: list[str] = []
        create_times: list[float] = []
        sem = asyncio.Semaphore(8)

        async def one(i: int) -> None:
            async with sem:
                t0 = time.perf_counter()
                paths.append(await sc.create_instance(ctx.http, gw.url, group, f"idle-{i}"))
                create_times.append(time.perf_counter() - t0)

        await asyncio.gather(*(one(i) for i in range(count)))
        await asyncio.sleep(2)  # let start-up garbage settle before reading RSS
        after = _mem(gw)
        t0 = time.perf_counter()
        await asyncio.gather(*(sc.delete_instance(ctx.http, gw.url, p) for p in paths))
        delete_s = time.perf_counter() - t0
        await asyncio.sleep(1)
        return {
            "count": count,
            "rss_before_kb": before["VmRSS"],
            "rss_after_kb": after["VmRSS"],
            "rss_after_delete_kb": _mem(gw)["VmRSS"],
            "kb_per_instance": round((after["VmRSS"] - before["VmRSS"]) / count, 1),
            "create_latency": sc.latency_summary(create_times),
            "delete_all_s": round(delete_s, 3),
        }
    finally:
        gw.stop()


async def _forwarding(
    ctx: sc.Ctx,
    servers: Servers,
    workdir: Path,
    topic: str,
    *,
    repeat: int = 1,
    profile_to: Path | None = None,
) -> dict[str, Any]:
    """Three replicas sharing Redis; an instance on A read via A (owner) and via B (one hop).

    With ``profile_to``, replica B (the forwarding one) runs under pyinstrument.
    """
    assert servers.redis_url is not None
    props = {
        "bootstrap.servers": servers.bootstrap,
        "session.store.url": servers.redis_url,
        "cluster.secret": "x",
        # With a Redis store the gateway's default (workers=auto) starts one worker process
        # per CPU; this scenario measures single-process replicas, whose pid is the one metered.
        **bench_mixed.workers_prop(),
    }
    replicas = [
        GatewayProcess(f"replica-{c}", props, workdir, profile_to=profile_to if c == "b" else None)
        for c in "abc"
    ]
    saved_pids = ctx.cpu_pids
    try:
        for r in replicas:
            r.start()
        await asyncio.gather(*(r.wait_ready() for r in replicas))
        a, b = replicas[0], replicas[1]
        ctx.cpu_pids = {
            **saved_pids,
            "gateway_a": a.pid,
            "gateway_b": b.pid,
        }
        ctx.cpu_pids.pop("gateway", None)
        if servers.redis is not None and servers.redis.process is not None:
            ctx.cpu_pids["redis"] = servers.redis.process.pid
        results = []
        for _ in range(repeat):  # owner and forwarded alternate, as gateway and direct do
            for label, read_url in (("owner", a.url), ("forwarded", b.url)):
                results.append(
                    await sc.gateway_consume(
                        ctx,
                        a.url,
                        read_url,
                        topic,
                        variant="min1",
                        scenario="forward-consume",
                        label=label,
                    )
                )
        results += await sc.forwarded_read_latency(ctx, a.url, b.url, topic)
        return {"results": results}
    finally:
        ctx.cpu_pids = saved_pids
        for r in replicas:
            r.stop()


async def bench(args: argparse.Namespace, servers: Servers, workdir: Path) -> dict[str, Any]:
    sizes = sc.Sizes.quick() if args.quick else sc.Sizes()
    sizes = sc.Sizes(
        **{
            **sizes.__dict__,
            "partitions": args.partitions,
            "consume_records": args.consume_records,
            **({"records": args.records} if args.records else {}),
        }
    )
    suffix = ".prof" if args.profiler == "cprofile" else ".pyisession"
    profile_to = workdir / f"gateway-{args.profile}{suffix}" if args.profile else None
    # Profiling forwarding profiles replica B (the one forwarding), not the main gateway.
    fwd_profile = profile_to if args.profile == "forwarding" else None
    main_profile = None if fwd_profile else profile_to
    gw = GatewayProcess(
        "main",
        {
            "bootstrap.servers": servers.bootstrap,
            **dict(kv.split("=", 1) for kv in args.gateway_set),
        },
        workdir,
        profile_to=main_profile,
        uvloop=args.uvloop,
    )
    gw.start()
    ready_s = await gw.wait_ready()
    print(f"[bench] gateway pid {gw.pid} ready at {gw.url} in {ready_s:.1f} s")
    memory: dict[str, Any] = {"gateway_ready": _mem(gw)}
    results: list[sc.Result] = []
    out: dict[str, Any] = {"sizes": sizes.__dict__, "results": results, "memory": memory}
    admin = AIOKafkaAdminClient(bootstrap_servers=servers.bootstrap, request_timeout_ms=30_000)
    await admin.start()
    http = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=64),
        timeout=aiohttp.ClientTimeout(total=120),
    )
    ctx = sc.Ctx(
        bootstrap=servers.bootstrap,
        admin=admin,
        http=http,
        sizes=sizes,
        cpu_pids={"gateway": gw.pid, "driver": os.getpid(), **servers.pids},
        client=args.http_client,
    )
    sides = ["gateway"] if args.profile else ["gateway", "direct"]
    only = [args.profile] if args.profile else args.only

    def show(rs: list[sc.Result]) -> None:
        for r in rs:
            perf = " ".join(
                [
                    *(
                        [f"{r['records_per_s']:,.0f} rec/s {r['mb_per_s']} MB/s"]
                        if "mb_per_s" in r
                        else []
                    ),
                    *(
                        [f"p50 {r['latency']['p50_ms']} ms p99 {r['latency']['p99_ms']} ms"]
                        if "latency" in r
                        else []
                    ),
                ]
            )
            print(f"  {r['scenario']:<22} {r['variant']:<30} {r['side']:<9} {perf}  cpu {r['cpu']}")
        results.extend(rs)

    reps = range(args.repeat)
    try:
        if "produce" in only:
            print("[bench] 1. produce throughput, binary")
            for batch in sizes.batches:
                for _ in reps:
                    show(
                        await sc.produce_throughput(
                            ctx, gw.url, fmt="binary", batch=batch, sides=sides
                        )
                    )
            memory["gateway_after_produce"] = _mem(gw)
        if "latency" in only:
            print("[bench] 2. produce latency")
            for _ in reps:
                show(await sc.produce_latency(ctx, gw.url, sides=sides))
        consume_topic: str | None = None
        if "consume" in only or "forwarding" in only:
            consume_topic = await sc.prefill(ctx, sizes.consumed)
        if "consume" in only:
            assert consume_topic is not None
            print("[bench] 3. consume throughput")
            for _ in reps:
                for variant in ("min1", "min1MB"):
                    show(
                        [
                            await sc.gateway_consume(
                                ctx,
                                gw.url,
                                gw.url,
                                consume_topic,
                                variant=variant,
                                scenario="consume",
                                label="gateway",
                            )
                        ]
                    )
                if "direct" in sides:
                    show(
                        [
                            await sc.direct_consume(
                                ctx, consume_topic, scenario="consume", variant="getmany"
                            )
                        ]
                    )
            memory["gateway_after_consume"] = _mem(gw)
        if "json" in only:
            print("[bench] 4. produce throughput, json")
            for batch in sizes.batches:
                for _ in reps:
                    show(
                        await sc.produce_throughput(
                            ctx, gw.url, fmt="json", batch=batch, sides=sides
                        )
                    )
        memory["gateway_after_scenarios"] = _mem(gw)
        if "memory" in only and not args.profile:
            print("[bench] 5. memory")
            memory["idle_instances"] = await _idle_instances(
                ctx, servers.bootstrap, workdir, sizes.idle_instances
            )
            print(f"  gateway idle instances: {memory['idle_instances']}")
            topic = await ctx.topic()
            memory["direct_produce_process"] = await _direct_proc(
                "produce",
                "--bootstrap",
                servers.bootstrap,
                "--topic",
                topic,
                "--records",
                str(sizes.records),
                "--size",
                str(sizes.record_bytes),
                "--batch",
                str(max(sizes.batches)),
                "--concurrency",
                str(sizes.concurrency),
            )
            print(f"  direct produce process: {memory['direct_produce_process']}")
            memory["direct_idle_consumers"] = await _direct_proc(
                "consumers", "--bootstrap", servers.bootstrap, "--count", str(sizes.idle_instances)
            )
            print(f"  direct idle consumers: {memory['direct_idle_consumers']}")
        if "forwarding" in only:
            print("[bench] 6. forwarding (3 replicas, Redis)")
            if servers.redis_url is None:
                out["forwarding"] = {"skipped": servers.redis_note}
                print(f"  {servers.redis_note}")
            else:
                assert consume_topic is not None
                fwd = await _forwarding(
                    ctx, servers, workdir, consume_topic, repeat=args.repeat, profile_to=fwd_profile
                )
                show(fwd["results"])
        if "idle" in only and not args.profile:
            count = args.idle_count or (50 if args.quick else 1000)
            idle_s = 10.0 if args.quick else 20.0
            print(f"[bench] 7. {count} idle subscribed instances")
            idle_props = dict(kv.split("=", 1) for kv in args.idle_set)
            out["idle"] = {
                "gateway": await bench_idle.idle_instances(
                    ctx,
                    servers.bootstrap,
                    workdir,
                    count,
                    idle_s=idle_s,
                    samples=200,
                    props=idle_props,
                ),
                "direct": await bench_idle.direct_idle(servers.bootstrap, count, idle_s),
            }
            print(f"  idle: {orjson.dumps(out['idle']).decode()}")
        if "mixed" in only and not args.profile:
            seconds = args.mixed_seconds or (10.0 if args.quick else 30.0)
            print(
                f"[bench] 8. mixed: {bench_mixed.PRODUCERS} producers + {bench_mixed.CONSUMERS} "
                f"consumers in one group, {bench_mixed.REPLICAS} replicas behind HAProxy, "
                f"{seconds:.0f} s per side"
            )
            if servers.redis_url is None:
                out["mixed"] = {"skipped": servers.redis_note}
                print(f"  {servers.redis_note}")
            else:
                redis_pid = (
                    servers.redis.process.pid
                    if servers.redis is not None and servers.redis.process is not None
                    else None
                )
                results.extend(
                    await bench_mixed.mixed(
                        ctx,
                        redis_url=servers.redis_url,
                        redis_pid=redis_pid,
                        duration_s=seconds,
                        repeat=args.repeat,
                        props=dict(kv.split("=", 1) for kv in args.mixed_set),
                    )
                )
        if "v3" in only:
            print("[bench] 10. v3 streaming produce, all records in one request")
            for _ in reps:
                show(await bench_v3.v3_stream(ctx, gw.url, sides=sides))
        if "stream" in only:
            print("[bench] 11. streaming consume (NDJSON instance, SSE topic) and its latency")
            for _ in reps:
                show(await bench_stream.throughput(ctx, gw.url, sides=sides))
                show(await bench_stream.latency(ctx, gw.url, sides=sides))
        if "workers" in only and not args.profile:
            print("[bench] 9. produce with workers=1 and workers=2 (one gateway, Redis store)")
            if servers.redis_url is None:
                out["workers"] = {"skipped": servers.redis_note}
                print(f"  {servers.redis_note}")
            else:
                try:
                    show(
                        await bench_workers.workers(
                            ctx,
                            servers.bootstrap,
                            servers.redis_url,
                            workdir,
                            repeat=args.repeat,
                            extra=dict(kv.split("=", 1) for kv in args.gateway_set),
                        )
                    )
                except bench_workers.WorkersUnavailable as exc:
                    out["workers"] = {"failed": str(exc)}
                    print(f"  ! {exc}", file=sys.stderr)
    finally:
        await http.close()
        if ctx.created_topics:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(admin.delete_topics(ctx.created_topics), 30)
        await admin.close()
        gw.stop()
    if profile_to is not None:
        out["profile"] = render_profile(
            profile_to, args.out.parent / f"profile-{args.profile}-{args.profiler}"
        )
    return out


def render_profile(session: Path, stem: Path) -> dict[str, str]:
    """The profile as a flat self-time list (pstats) and, for pyinstrument, a call tree."""
    import io
    import pstats

    if not session.exists():
        return {"error": f"no profile written at {session}"}
    stem.parent.mkdir(parents=True, exist_ok=True)
    out: dict[str, str] = {}
    if session.suffix == ".prof":
        pstats_file = session
    else:
        load = [sys.executable, "-m", "pyinstrument", "--load", str(session)]
        tree = stem.with_suffix(".txt")
        subprocess.run([*load, "-r", "text", "--no-color", "-o", str(tree)], check=True)
        pstats_file = stem.with_suffix(".pstats")
        subprocess.run([*load, "-r", "pstats", "-o", str(pstats_file)], check=True)
        out["tree"] = str(tree)
    buf = io.StringIO()
    stats = pstats.Stats(str(pstats_file), stream=buf)
    stats.sort_stats("tottime").print_stats(40)
    buf.write("\n\n=== by cumulative time ===\n")
    stats.sort_stats("cumulative").print_stats(60)
    flat = stem.with_name(stem.name + "-flat.txt")
    flat.write_text(buf.getvalue())
    out["flat"] = str(flat)
    print(f"[bench] profile: {', '.join(out.values())}")
    return out


# --- report --------------------------------------------------------------------------------------


def _find(
    results: list[sc.Result],
    scenario: str,
    variant: str,
    side: str,
    metric: str = "records_per_s",
) -> sc.Result | None:
    """The median run, by ``metric``, of a (scenario, variant, side) measured ``--repeat`` times.

    A real run, not an average of runs, so its CPU figures belong to its own numbers; with an
    even count the worse of the two middle runs is taken (the conservative one).
    """
    runs = [
        r
        for r in results
        if r["scenario"] == scenario and r["variant"] == variant and r["side"] == side
    ]
    if not runs:
        return None
    if metric.endswith("_ms"):  # latency: worse is higher
        runs.sort(key=lambda r: r["latency"][metric], reverse=True)
    else:
        runs.sort(key=lambda r: r[metric])
    return runs[(len(runs) - 1) // 2]


def _ratio_range(
    results: list[sc.Result], g: tuple[str, str, str], d: tuple[str, str, str], metric: str
) -> str:
    """min-max of gateway/direct over the repeats, pairing the i-th run of each side (they
    ran back to back), so the spread shows how much the machine's load moved the ratio."""

    def runs(key: tuple[str, str, str]) -> list[float]:
        return [
            r["latency"][metric] if metric.endswith("_ms") else r[metric]
            for r in results
            if (r["scenario"], r["variant"], r["side"]) == key
        ]

    ratios = [a / b for a, b in zip(runs(g), runs(d), strict=False) if a and b]
    if len(ratios) < 2:
        return "-"
    return f"{min(ratios):.2f}-{max(ratios):.2f}"


def _cpu(r: sc.Result | None, *keys: str) -> str:
    if r is None:
        return "-"
    return " / ".join(f"{r['cpu'].get(f'{k}_cores', 0):.2f}" for k in keys)


def _ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "-"
    return f"{a / b:.2f}"


def tables(out: dict[str, Any]) -> str:
    """The results as markdown tables (what BENCHMARKS.md shows)."""
    res: list[sc.Result] = out["results"]
    lines = [
        f"Each gateway/direct pair measured {out.get('repeat', 1)} time(s), alternating; the "
        "median run is shown. CPU columns: cores busy during that run (other = processes "
        "this benchmark did not start). Produce throughput's HTTP client: "
        f"{out.get('environment', {}).get('http_client', 'aiohttp')}.",
        "",
        "| scenario | gateway | direct aiokafka | gateway / direct | range over repeats "
        "| CPU cores, gateway run (gateway / driver / broker / other) "
        "| CPU cores, direct run (driver / broker / other) "
        "| latency p50 / p99 ms, gateway | latency p50 / p99 ms, direct "
        "| CPU µs/record, gateway / direct |",
        "|---|---:|---:|---:|---:|---|---|---:|---:|---:|",
    ]
    gw_keys = ("gateway", "driver", "broker", "foreign")
    d_keys = ("driver", "broker", "foreign")
    for fmt in ("binary", "json"):
        variants = sorted(
            {r["variant"] for r in res if r["scenario"] == f"produce-{fmt}"},
            key=lambda v: int(v.split()[0].split("=")[1]),
        )
        for v in variants:
            g = _find(res, f"produce-{fmt}", v, "gateway")
            d = _find(res, f"produce-{fmt}", v, "direct")
            lines.append(
                f"| produce {fmt}, {v} | {_tp(g)} | {_tp(d)} | "
                f"{_ratio(g and g['records_per_s'], d and d['records_per_s'])} | "
                f"{_ratio_range(res, (f'produce-{fmt}', v, 'gateway'), (f'produce-{fmt}', v, 'direct'), 'records_per_s')} | "
                f"{_cpu(g, *gw_keys)} | {_cpu(d, *d_keys)} |{_extra(g, d)}"
            )
    v3, v3v = "v3-produce-stream", "1 request, all records"
    g, d = _find(res, v3, v3v, "gateway"), _find(res, v3, v3v, "direct")
    if g is not None or d is not None:
        lines.append(
            f"| v3 streaming produce, {v3v} | {_tp(g)} | {_tp(d)} | "
            f"{_ratio(g and g['records_per_s'], d and d['records_per_s'])} | "
            f"{_ratio_range(res, (v3, v3v, 'gateway'), (v3, v3v, 'direct'), 'records_per_s')} | "
            f"{_cpu(g, *gw_keys)} | {_cpu(d, *d_keys)} |{_extra(g, d)}"
        )
    lat, lv = "produce-latency", "1 record/request, sequential"
    for p in ("p50", "p99"):
        g = _find(res, lat, lv, "gateway", f"{p}_ms")
        d = _find(res, lat, lv, "direct", f"{p}_ms")
        if g is None and d is None:
            continue
        gv = g and g["latency"][f"{p}_ms"]
        dv = d and d["latency"][f"{p}_ms"]
        lines.append(
            f"| produce latency {p}, 1 record, sequential | {gv if gv else '-'} ms | "
            f"{dv if dv else '-'} ms | {_ratio(gv, dv)} | "
            f"{_ratio_range(res, (lat, lv, 'gateway'), (lat, lv, 'direct'), f'{p}_ms')} | "
            f"{_cpu(g, *gw_keys)} | {_cpu(d, *d_keys)} |{_extra(g, d)}"
        )
    d = _find(res, "consume", "getmany", "direct")
    for v, label in (("min1", "fetch.min.bytes=1"), ("min1MB", "fetch.min.bytes=1MB")):
        g = _find(res, "consume", v, "gateway")
        if g is None:
            continue
        lines.append(
            f"| consume binary, {label} ({g['records_per_response']:.0f} rec/response; direct "
            f"{_per_response(d)} rec/getmany) | {_tp(g)} | {_tp(d)} | "
            f"{_ratio(g['records_per_s'], d and d['records_per_s'])} | "
            f"{_ratio_range(res, ('consume', v, 'gateway'), ('consume', 'getmany', 'direct'), 'records_per_s')} | "
            f"{_cpu(g, *gw_keys)} | {_cpu(d, *d_keys)} |{_extra(g, d)}"
        )
    d = _find(res, "stream-consume", "getmany", "direct")
    for v in ("NDJSON instance", "SSE topic"):
        g = _find(res, "stream-consume", v, "gateway")
        if g is None:
            continue
        lines.append(
            f"| streaming consume, {v}, one response | {_tp(g)} | {_tp(d)} | "
            f"{_ratio(g['records_per_s'], d and d['records_per_s'])} | "
            f"{_ratio_range(res, ('stream-consume', v, 'gateway'), ('stream-consume', 'getmany', 'direct'), 'records_per_s')} | "
            f"{_cpu(g, *gw_keys)} | {_cpu(d, *d_keys)} |{_extra(g, d)}"
        )
    d = _find(res, "stream-latency", "getmany loop, produce to record", "direct", "p50_ms")
    for v in ("SSE topic, produce to event", "NDJSON instance, produce to line"):
        g = _find(res, "stream-latency", v, "gateway", "p50_ms")
        if g is None:
            continue
        gl, dl = g["latency"], d and d["latency"]
        lines.append(
            f"| end-to-end latency p50 / p99, {v} | {gl['p50_ms']} / {gl['p99_ms']} ms | "
            f"{dl['p50_ms'] if dl else '-'} / {dl['p99_ms'] if dl else '-'} ms | "
            f"{_ratio(gl['p50_ms'], dl and dl['p50_ms'])} (p50) | - | - | - |"
        )
    if len(lines) == 4:  # none of scenarios 1-4 ran
        lines = [*lines[:1], ""]
    else:
        lines += ["", *_cpu_per_record_table(res), ""]
    mem = out.get("memory", {})
    if "idle_instances" in mem:
        dp = mem.get("direct_produce_process", {})
        dc = mem.get("direct_idle_consumers", {})
        idle = mem["idle_instances"]
        ready = mem["gateway_ready"]["VmRSS"]
        after_produce = mem.get("gateway_after_produce", {}).get("VmHWM")
        lines += [
            "| memory (MiB unless noted) | gateway process | direct aiokafka process | ratio |",
            "|---|---:|---:|---:|",
            f"| RSS idle (started, connected) | {_mib(ready)} | {_mib(dp.get('rss_idle_kb'))} | "
            f"{_ratio(ready, dp.get('rss_idle_kb'))} |",
            f"| peak RSS (VmHWM) after scenario 1 (direct: one batch={max(out['sizes']['batches'])} "
            f"run in its own process) | {_mib(after_produce)} | "
            f"{_mib(dp.get('after', {}).get('VmHWM'))} | "
            f"{_ratio(after_produce, dp.get('after', {}).get('VmHWM'))} |",
            f"| peak RSS (VmHWM) after scenarios 1-4 | "
            f"{_mib(mem['gateway_after_scenarios']['VmHWM'])} | - | - |",
            f"| RSS with {idle['count']} idle consumer instances (fresh gateway; direct: "
            f"{idle['count']} started AIOKafkaConsumers) | {_mib(idle['rss_after_kb'])} "
            f"| {_mib(dc.get('rss_after_kb'))} | {_ratio(idle['rss_after_kb'], dc.get('rss_after_kb'))} |",
            f"| RSS per idle consumer instance (KiB) | {idle['kb_per_instance']} | "
            f"{dc.get('kb_per_consumer', '-')} | "
            f"{_ratio(idle['kb_per_instance'], dc.get('kb_per_consumer'))} |",
            f"| create instance latency p50 / p99 (8 concurrent) | "
            f"{idle['create_latency']['p50_ms']} / {idle['create_latency']['p99_ms']} ms | - | - |",
            "",
        ]
    fwd = [r for r in res if r["scenario"].startswith("forward-")]
    if fwd:
        o = _find(res, "forward-consume", "min1", "owner")
        f = _find(res, "forward-consume", "min1", "forwarded")
        lo = _find(res, "forward-read-latency", "max_bytes=1, alternating", "owner", "p50_ms")
        lf = _find(res, "forward-read-latency", "max_bytes=1, alternating", "forwarded", "p50_ms")
        fk = ("gateway_a", "gateway_b", "driver", "broker", "foreign")
        dc = _find(res, "consume", "getmany", "direct")
        lines += [
            "| forwarding (3 replicas + Redis; instance on A) | via A (owner) | via B (one hop) "
            "| B / A | CPU cores (A / B / driver / broker / other) "
            "| read p50 / p99 ms, A; B | gateway CPU µs/record (A+B), A; B "
            "| A / direct; B / direct (direct: consume scenario, same run) |",
            "|---|---:|---:|---:|---|---:|---:|---:|",
            f"| consume binary, fetch.min.bytes=1 | {_tp(o)} | {_tp(f)} | "
            f"{_ratio(f and f['records_per_s'], o and o['records_per_s'])} "
            f"({_ratio_range(res, ('forward-consume', 'min1', 'forwarded'), ('forward-consume', 'min1', 'owner'), 'records_per_s')}) | "
            f"{_cpu(o, *fk)} vs {_cpu(f, *fk)} | {_lat(o)}; {_lat(f)} | "
            f"{_us(o, 'gateway_a', 'gateway_b')}; {_us(f, 'gateway_a', 'gateway_b')} | "
            f"{_ratio(o and o['records_per_s'], dc and dc['records_per_s'])}; "
            f"{_ratio(f and f['records_per_s'], dc and dc['records_per_s'])} |",
        ]
        for p in ("p50", "p99"):
            ov = lo and lo["latency"][f"{p}_ms"]
            fv = lf and lf["latency"][f"{p}_ms"]
            lines.append(
                f"| single-record read latency {p} | {ov} ms | {fv} ms | {_ratio(fv, ov)} | "
                f"{_cpu(lo, *fk)} | - | - | - |"
            )
        lines.append("")
    elif out.get("forwarding"):
        lines.append(f"Forwarding: {out['forwarding']}\n")
    lines += _mixed_table(out)
    lines += _workers_table(out)
    return "\n".join(lines)


def _lat(r: sc.Result | None, key: str = "latency") -> str:
    """``p50 / p99`` ms of a result's latency summary (per request, or per read)."""
    if r is None or key not in r or not r[key].get("n"):
        return "-"
    return f"{r[key]['p50_ms']:.2f} / {r[key]['p99_ms']:.2f}"


def _us(r: sc.Result | None, *procs: str, records: int | None = None) -> str:
    """CPU µs per record of ``procs`` (summed) in one run."""
    if r is None or "seconds" not in r:
        return "-"
    n = records if records is not None else r.get("records")
    if not n:
        return "-"
    cores = sum(r["cpu"].get(f"{p}_cores", 0.0) for p in procs)
    return f"{cores * r['seconds'] / n * 1e6:.1f}"


def _extra(g: sc.Result | None, d: sc.Result | None) -> str:
    """The latency and CPU-per-record cells every scenario row of the main table carries."""
    return f" {_lat(g)} | {_lat(d)} | {_us(g, 'gateway')} / {_us(d, 'driver')} |"


def _group_cores(r: dict[str, Any], prefix: str) -> float:
    """Summed cores of every process whose name starts with ``prefix`` (a result or a CPU
    reading)."""
    cpu = r.get("cpu", r)
    return sum(v for k, v in cpu.items() if k.startswith(prefix) and k.endswith("_cores"))


def _mixed_table(out: dict[str, Any]) -> list[str]:
    res: list[sc.Result] = out["results"]
    if out.get("mixed"):
        return [f"Mixed: {out['mixed']}", ""]
    runs = [r for r in res if r["scenario"] == "mixed"]
    if not runs:
        return []
    g = _find(res, "mixed", runs[0]["variant"], "gateway")
    d = _find(res, "mixed", runs[0]["variant"], "direct")

    def both(fn: Any) -> tuple[str, str]:
        return (fn(g) if g else "-", fn(d) if d else "-")

    def row(label: str, gv: str, dv: str, ratio: str = "-") -> str:
        return f"| {label} | {gv} | {dv} | {ratio} |"

    def num(key: str) -> Any:
        return lambda r: f"{r[key]:,.0f}"

    def moved(r: sc.Result) -> int:
        return int(r["records"] + r["consumed"])

    gw_us = _group_cores(g, "replica") * g["seconds"] / max(moved(g), 1) * 1e6 if g else None
    d_us = d["cpu"].get("driver_cores", 0) * d["seconds"] / max(moved(d), 1) * 1e6 if d else None
    lines = [
        f"| mixed: {runs[0]['variant']}, {g and g['seconds']:.0f} s window, "
        f"3 replicas ({g and g.get('gateway_processes')} gateway processes"
        f"{', ' + _errors(runs[0].get('replica_props', {})) if runs[0].get('replica_props') else ''}) "
        "+ HAProxy + Redis (gateway) vs aiokafka in the driver (direct) "
        "| gateway | direct aiokafka | gateway / direct |",
        "|---|---:|---:|---:|",
        row(
            "produce records/s (MB/s)",
            *both(lambda r: f"{r['records_per_s']:,.0f} ({r['mb_per_s']:.2f} MB/s)"),
            _ratio(g and g["records_per_s"], d and d["records_per_s"])
            + _range_note(res, "mixed", runs[0]["variant"], "gateway", "direct"),
        ),
        row(
            "consume records/s (MB/s)",
            *both(
                lambda r: f"{r['consume_records_per_s']:,.0f} ({r['consume_mb_per_s']:.2f} MB/s)"
            ),
            _ratio(g and g["consume_records_per_s"], d and d["consume_records_per_s"])
            + _range_note(
                res, "mixed", runs[0]["variant"], "gateway", "direct", "consume_records_per_s"
            ),
        ),
    ]
    for label, key in (
        ("produce request (100 records) p50 / p99 ms", "latency"),
        ("read returning records p50 / p99 ms", "read_latency"),
        ("record age when read (end to end) p50 / p99 ms", "e2e_latency"),
        ("commit p50 / p99 ms", "commit_latency"),
    ):
        lines.append(
            row(
                label,
                *both(lambda r, k=key: _lat(r, k)),
                _ratio(g and g[key]["p50_ms"], d and d[key]["p50_ms"]) + " (p50)",
            )
        )
    lines += [
        row(
            "reads (empty) / commits",
            *both(lambda r: f"{r['reads']:,} ({r['empty_reads']:,}) / {r['commits']:,}"),
        ),
        row("errors by status", *both(lambda r: _errors(r["errors"]))),
        row(
            "CPU µs per record moved (produced + consumed): gateway replicas / direct driver",
            "-" if gw_us is None else f"{gw_us:.1f}",
            "-" if d_us is None else f"{d_us:.1f}",
            _ratio(gw_us, d_us),
        ),
        row(
            "CPU µs per record moved, driver (HTTP clients) and HAProxy",
            f"{_us(g, 'driver', records=moved(g))} + {_us(g, 'haproxy', records=moved(g))}"
            if g
            else "-",
            "-",
        ),
        row(
            f"CPU cores, {bench_mixed.IDLE_S:.0f} s before the window, all consumers polling "
            "an empty topic: replicas (gateway) / driver (direct)",
            f"{_group_cores(g['cpu_idle_polling'], 'replica'):.2f}" if g else "-",
            f"{d['cpu_idle_polling'].get('driver_cores', 0):.2f}" if d else "-",
        ),
        row(
            "CPU cores: replicas / HAProxy / Redis / driver / broker / other",
            f"{_group_cores(g, 'replica'):.2f} / {_cpu(g, 'haproxy', 'redis', 'driver', 'broker', 'foreign')}"
            if g
            else "-",
            f"- / - / - / {_cpu(d, 'driver', 'broker', 'foreign')}" if d else "-",
        ),
        "",
    ]
    return lines


def _range_note(
    res: list[sc.Result], scenario: str, variant: str, a: str, b: str, metric: str = "records_per_s"
) -> str:
    """`` (range x-y)`` of a/b over the repeats, or nothing with one repeat."""
    spread = _ratio_range(res, (scenario, variant, a), (scenario, variant, b), metric)
    return "" if spread == "-" else f" (range {spread})"


def _errors(errors: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(errors.items())) or "none"


def _workers_table(out: dict[str, Any]) -> list[str]:
    if out.get("workers"):
        return [f"Workers: {out['workers']}", ""]
    res: list[sc.Result] = out["results"]
    runs = [r for r in res if r["scenario"] == "workers"]
    if not runs:
        return []
    v = runs[0]["variant"]
    d = _find(res, "workers", v, "direct")
    w1 = _find(res, "workers", v, "workers=1")
    lines = [
        f"| produce {v}, one gateway (Redis store) | rec/s (MB/s) | vs workers=1 | vs direct "
        "| p50 / p99 ms | gateway CPU µs/record (all processes) | gateway processes "
        "| CPU cores: gateway / driver / broker / other |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for side in ("workers=1", "workers=2", "direct"):
        r = _find(res, "workers", v, side)
        if r is None:
            continue
        gw = bench_workers.gateway_cores(r)
        us = "-" if side == "direct" else f"{gw * r['seconds'] / r['records'] * 1e6:.1f}"
        cores = (
            _cpu(r, "driver", "broker", "foreign")
            if side == "direct"
            else f"{gw:.2f} / {_cpu(r, 'driver', 'broker', 'foreign')}"
        )
        lines.append(
            f"| {side} | {_tp(r)} | "
            f"{'-' if side == 'direct' else _ratio(r['records_per_s'], w1 and w1['records_per_s'])}"
            f"{_range_note(res, 'workers', v, side, 'workers=1') if side == 'workers=2' else ''} | "
            f"{_ratio(r['records_per_s'], d and d['records_per_s'])} | {_lat(r)} | {us} | "
            f"{r.get('gateway_processes', '-')} | {cores} |"
        )
    if d is not None:
        lines[-1] = lines[-1].replace(
            f"| {_lat(d)} | - |", f"| {_lat(d)} | - (driver: {_us(d, 'driver')}) |"
        )
    return [*lines, ""]


def _cpu_per_record_table(res: list[sc.Result]) -> list[str]:
    """CPU microseconds per record (per request for latency), median over the repeats.

    Throughput on a shared 2-core machine moves with whatever else runs; the CPU a process
    spends per record moves much less, so this is the steadier measure of the gateway's
    overhead. The gateway path also needs the HTTP client's CPU, shown apart.
    """

    def per_record(scenario: str, variant: str, side: str, proc: str) -> float | None:
        vals = sorted(
            r["cpu"].get(f"{proc}_cores", 0.0) * r["seconds"] / r["records"] * 1e6
            for r in res
            if (r["scenario"], r["variant"], r["side"]) == (scenario, variant, side)
        )
        return vals[(len(vals) - 1) // 2] if vals else None

    rows = [
        (f"produce {fmt}, {v}", f"produce-{fmt}", v, v)
        for fmt in ("binary", "json")
        for v in sorted(
            {r["variant"] for r in res if r["scenario"] == f"produce-{fmt}"},
            key=lambda v: int(v.split()[0].split("=")[1]),
        )
    ]
    rows.append(
        (
            "produce latency (per request)",
            "produce-latency",
            *(["1 record/request, sequential"] * 2),
        )
    )
    rows += [
        ("consume, fetch.min.bytes=1", "consume", "min1", "getmany"),
        ("consume, fetch.min.bytes=1MB", "consume", "min1MB", "getmany"),
    ]
    out = [
        "| CPU µs per record (median of repeats) | gateway process | its HTTP client "
        "| direct aiokafka client | gateway / direct |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, scenario, gv, dv in rows:
        g = per_record(scenario, gv, "gateway", "gateway")
        c = per_record(scenario, gv, "gateway", "driver")
        d = per_record(scenario, dv, "direct", "driver")
        if g is None:
            continue
        out.append(
            f"| {label} | {g:.1f} | {c:.1f} | {'-' if d is None else f'{d:.1f}'} | {_ratio(g, d)} |"
        )
    return out


def _per_response(r: sc.Result | None) -> str:
    return "-" if r is None else f"{r['records_per_response']:.0f}"


def _tp(r: sc.Result | None) -> str:
    if r is None:
        return "-"
    return f"{r['records_per_s']:,.0f} rec/s ({r['mb_per_s']:.1f} MB/s)"


def _mib(kb: int | float | None) -> str:
    return "-" if kb is None else f"{kb / 1024:.1f}"


def main(argv: Sequence[str] | None = None) -> int:
    args = _args(argv)
    if (
        args.profile
        and args.profiler == "pyinstrument"
        and not _version("pyinstrument")[0].isdigit()
    ):
        print("--profile needs pyinstrument: pip install pyinstrument", file=sys.stderr)
        return 2
    print(f"[bench] {_uptime()}")
    uptime_before = _uptime()
    source_before = source_fingerprint()
    began = time.monotonic()
    servers = Servers()
    workdir = new_workdir()
    failed = True
    try:
        servers.start_kafka()
        needs_redis = any(s in args.only for s in NEEDS_REDIS) and not args.profile
        if needs_redis or args.profile == "forwarding":
            servers.start_redis()
        out = asyncio.run(bench(args, servers, workdir))
        failed = False
    finally:
        servers.stop()
        if failed or os.environ.get("EVENT_GATEWAY_KEEP_TEST_DIRS"):
            print(f"[bench] gateway logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    out = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "argv": sys.argv[1:] if argv is None else list(argv),
        "quick": args.quick,
        "repeat": args.repeat,
        "environment": {
            **environment(servers.kafka_version),
            "gateway_uvloop": args.uvloop,
            "http_client": args.http_client,
            "gateway_settings": dict(kv.split("=", 1) for kv in args.gateway_set),
        },
        "source": source_before,
        "source_changed_during_run": changed_files(source_before, source_fingerprint()),
        "uptime_before": uptime_before,
        "uptime_after": _uptime(),
        "duration_s": round(time.monotonic() - began, 1),
        **out,
    }
    report = tables(out)
    if out["source_changed_during_run"]:
        report = (
            "**Warning: gateway code changed while this run was measuring (its numbers may "
            f"mix two versions): {', '.join(out['source_changed_during_run'])}**\n\n" + report
        )
    out["table_md"] = report
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(out, option=orjson.OPT_INDENT_2))
    print()
    print(report)
    print(f"[bench] {out['uptime_after']}")
    print(f"[bench] results written to {args.out}")
    if isinstance(out.get("workers"), dict) and "failed" in out["workers"]:
        print(f"[bench] scenario workers FAILED: {out['workers']['failed']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
