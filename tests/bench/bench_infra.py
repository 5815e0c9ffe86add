"""Processes and measurements for the benchmarks: broker, Redis, gateway processes, /proc.

The gateway is always a real separate process (``python3 -m gateway.cli serve``), never an
in-process app: an in-process gateway would share the benchmark client's event loop and CPU,
and the numbers would measure the two of them interleaved rather than the gateway.

Every reading that can be disturbed by other work on the machine is recorded next to the
number it may have disturbed (CPU used by foreign processes during each measurement), because
the benchmark machines are shared and a ratio is only meaningful if both sides saw the same
conditions.
"""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from tests.harness import process
from tests.harness.ports import free_port

REPO = Path(__file__).resolve().parents[2]
CLK_TCK = os.sysconf("SC_CLK_TCK")
ENV_PREFIX = "EVENT_GATEWAY_"


# --- /proc readings ------------------------------------------------------------------------------


def proc_memory_kb(pid: int) -> dict[str, int]:
    """``VmRSS`` (now) and ``VmHWM`` (peak since start) of ``pid`` in kB, from /proc."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0])
    return out


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (all its threads) in seconds; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return 0.0
    # The command name (field 2) may contain spaces; everything after its ')' is positional.
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (children, their children...), from
    ``/proc/<pid>/task/*/children`` (no psutil): a gateway started with ``workers=N`` is a
    parent whose worker processes do the serving, so its CPU is the sum over all of them."""
    out: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*/children"):
            try:
                kids = [int(k) for k in task.read_text().split()]
            except (OSError, ValueError):
                continue
            out += kids
            todo += kids
    return sorted(set(out))


def process_tree(name: str, pid: int) -> dict[str, int]:
    """``{name: pid, name_child1: ..., ...}``: a process and its descendants, for CpuMeter."""
    return {name: pid, **{f"{name}_child{i}": c for i, c in enumerate(descendants(pid), 1)}}


def machine_cpu_seconds() -> dict[str, float]:
    """Machine-wide CPU seconds since boot (all cores, /proc/stat), split by kind.

    ``tasks`` is user + nice + system: time spent running processes, ours or anyone's.
    ``irq`` (hard + soft interrupts, where much loopback TCP work lands) and ``steal`` (the
    hypervisor running other guests) are kept apart: neither is another process's fault,
    and steal in particular slows everything without showing up in any process's CPU time.
    """
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    values += [0] * (8 - len(values))
    return {
        "tasks": (values[0] + values[1] + values[2]) / CLK_TCK,
        "irq": (values[5] + values[6]) / CLK_TCK,
        "steal": values[7] / CLK_TCK,
    }


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


class CpuMeter:
    """CPU used during one measurement: by the watched processes and by everyone else.

    ``foreign_cores`` (CPU seconds of processes we did not start, divided by wall time) says
    how much the shared machine's other work may have slowed a measurement; it is recorded
    with every result instead of being silently absorbed into the numbers.
    """

    def __init__(self, pids: Mapping[str, int]) -> None:
        self.pids = dict(pids)
        self._t0 = 0.0
        self._cpu0: dict[str, float] = {}
        self._machine0: dict[str, float] = {}

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._cpu0 = {name: proc_cpu_seconds(pid) for name, pid in self.pids.items()}
        self._machine0 = machine_cpu_seconds()

    def stop(self) -> dict[str, float]:
        wall = max(time.perf_counter() - self._t0, 1e-9)
        used = {name: proc_cpu_seconds(pid) - self._cpu0[name] for name, pid in self.pids.items()}
        machine = {k: v - self._machine0[k] for k, v in machine_cpu_seconds().items()}
        out = {f"{name}_cores": round(sec / wall, 3) for name, sec in used.items()}
        out["foreign_cores"] = round(max(machine["tasks"] - sum(used.values()), 0.0) / wall, 3)
        out["irq_cores"] = round(machine["irq"] / wall, 3)
        out["steal_cores"] = round(machine["steal"] / wall, 3)
        return out


# --- statistics ----------------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (no interpolation to hide gaps)."""
    if not sorted_values:
        return math.nan
    rank = max(math.ceil(p / 100 * len(sorted_values)), 1)
    return sorted_values[rank - 1]


def latency_summary(samples_s: Iterable[float]) -> dict[str, float]:
    values = sorted(samples_s)
    ms = 1000.0
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 50) * ms, 3),
        "p90_ms": round(percentile(values, 90) * ms, 3),
        "p99_ms": round(percentile(values, 99) * ms, 3),
        "max_ms": round(values[-1] * ms, 3) if values else math.nan,
        "mean_ms": round(sum(values) / len(values) * ms, 3) if values else math.nan,
    }


# --- gateway processes ---------------------------------------------------------------------------


def child_env() -> dict[str, str]:
    """This environment minus ``EVENT_GATEWAY_*``, which would override the benchmark's --set
    values (the environment beats the properties file, not --set, but a stray setting such as
    a log level or a session store would still change what is measured)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class GatewayProcess:
    """One ``python3 -m gateway.cli serve`` on a free loopback port, its log in ``workdir``.

    With ``profile_to`` the same command runs under a profiler that writes there when the
    gateway exits after SIGTERM (the gateway's own graceful shutdown): cProfile for a ``.prof``
    path, else pyinstrument. pyinstrument samples wall-clock time, so under CPU contention a
    syscall the process was descheduled in (``socket.send`` waking the peer) looks expensive
    and awaiting coroutines collect time; the cProfile run counts CPU time only.
    """

    name: str
    props: Mapping[str, str]
    workdir: Path
    log_level: str = "WARNING"
    profile_to: Path | None = None
    # Run the gateway on uvloop (``--uvloop``): the gateway has no switch for it, so the
    # benchmark installs the loop policy before starting the same module.
    uvloop: bool = False
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"gateway-{self.name}.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def command(self) -> list[str]:
        props = {
            "listeners": self.url,
            # Benchmarks stop gateways many times; the LB grace period would only add waiting.
            "shutdown.readiness.delay.ms": "0",
            **self.props,
        }
        sets = [arg for k, v in props.items() for arg in ("--set", f"{k}={v}")]
        serve = ["-m", "gateway.cli", "serve", *sets, "--log-level", self.log_level]
        if self.profile_to is None and self.uvloop:
            code = (
                "import runpy, sys, uvloop\n"
                "uvloop.install()\n"
                f"sys.argv = ['gateway.cli', *{serve[2:]!r}]\n"
                "runpy.run_module('gateway.cli', run_name='__main__', alter_sys=True)\n"
            )
            return [sys.executable, "-c", code]
        if self.profile_to is None:
            return [sys.executable, *serve]
        if self.profile_to.suffix == ".prof":
            # cProfile timed with process_time, not its default wall clock: on a loaded
            # machine a wall-clock profile blames whatever call the process was descheduled in.
            code = (
                "import cProfile, runpy, sys, time\n"
                f"sys.argv = ['gateway.cli', *{serve[2:]!r}]\n"
                "prof = cProfile.Profile(time.process_time)\n"
                "prof.enable()\n"
                "try:\n"
                "    runpy.run_module('gateway.cli', run_name='__main__', alter_sys=True)\n"
                "except SystemExit:\n"
                "    pass\n"
                "finally:\n"
                "    prof.disable()\n"
                f"    prof.dump_stats({str(self.profile_to)!r})\n"
            )
            return [sys.executable, "-c", code]
        return [
            sys.executable, "-m", "pyinstrument",
            "-r", "pyisession", "-o", str(self.profile_to), "-i", "0.001",
            *serve,
        ]  # fmt: skip

    def start(self) -> None:
        """Spawn (from the main thread: the harness ties the child's life to this thread)."""
        self.port = self.port or free_port()
        self.started_at = time.monotonic()
        self.proc = process.spawn(self.command(), self.log_path, cwd=REPO, env=child_env())

    async def wait_ready(self, timeout: float = 60.0) -> float:  # noqa: ASYNC109
        """Poll GET /readyz until 200; returns the seconds from spawn to ready."""
        deadline = time.monotonic() + timeout
        client_timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=client_timeout) as http:
            while time.monotonic() < deadline:
                if self.proc is None or self.proc.poll() is not None:
                    break
                try:
                    async with http.get(self.url + "/readyz") as resp:
                        if resp.status == 200:
                            return time.monotonic() - self.started_at
                except (aiohttp.ClientError, OSError, TimeoutError):
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(
            f"gateway {self.name} not ready at {self.url}; its log ends:\n"
            f"{process.tail(self.log_path, 60)}"
        )

    def memory_kb(self) -> dict[str, int]:
        return proc_memory_kb(self.pid)

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM (graceful drain; a profiler writes its output then), SIGKILL if stuck."""
        process.stop(self.proc, grace)


def new_workdir() -> Path:
    """A private folder for gateway logs and profiles (kept after a failure for the post-mortem)."""
    return Path(tempfile.mkdtemp(prefix="eg-bench-"))
