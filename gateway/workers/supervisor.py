"""The parent of a replica's workers: keeps N workers running on the replica's listener.

Deliberately small and synchronous: it holds no Kafka or Redis client and serves no request,
so nothing in it can hang on a dependency. Each worker is ``event-gateway serve`` started
again with the same arguments, told by the environment which worker it is
(:class:`~gateway.workers.identity.WorkerIdentity`); the workers bind the listener's port
together (SO_REUSEPORT) and the kernel spreads new connections over them.

A worker that dies is started again at once under the same index: it takes over its
predecessor's directory slot, which retires the dead node's lease, so the instances it held
are adopted on their next request instead of after ``node.lease.ms``. A worker that keeps
dying is restarted with a growing delay; one that exits with status 2 (invalid
configuration, the same for every worker) ends the replica. SIGTERM and SIGINT are passed to
every worker, which drain as a single process would; the parent waits for them (bounded),
then exits. SIGHUP (certificate reload) is passed on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from types import FrameType

from gateway.config import Config

from .identity import ENV, WorkerIdentity

log = logging.getLogger(__name__)

POLL_S = 0.2
# A worker that ran at least this long before dying is restarted at once.
STABLE_S = 30.0
MAX_RESTART_DELAY_S = 10.0
CONFIG_EXIT = 2
_PR_SET_PDEATHSIG = 1


class _Worker:
    def __init__(self, identity: WorkerIdentity) -> None:
        self.identity = identity
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.quick_deaths = 0  # deaths in a row, each soon after its start
        self.restart_at = 0.0


class Supervisor:
    """``run()`` until SIGTERM/SIGINT and every worker has exited."""

    def __init__(self, config: Config, argv: Sequence[str], count: int) -> None:
        self._config = config
        self._argv = list(argv)
        self._count = count
        self._stopping = False
        self._reload = False

    def run(self) -> int:
        lst = self._config.listener
        try:
            _check_port_free(lst.host, lst.port)
        except OSError as exc:
            print(f"event-gateway: cannot serve on {lst.url}: {exc}", file=sys.stderr)
            return 1
        run_dir = tempfile.mkdtemp(prefix="event-gateway-workers-")  # 0700: ours alone
        token = secrets.token_hex(4)
        workers = [
            _Worker(WorkerIdentity(i, self._count, token, run_dir)) for i in range(self._count)
        ]
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)
        log.info("event-gateway: %d workers on %s", self._count, lst.url)
        try:
            for w in workers:
                self._start(w)
            status = self._supervise(workers)
            self._stop_all(workers)
            return status
        finally:
            for w in workers:
                if w.process is not None and w.process.poll() is None:
                    w.process.kill()
                    w.process.wait(10)
            shutil.rmtree(run_dir, ignore_errors=True)

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self._stopping = True

    def _on_hup(self, signum: int, frame: FrameType | None) -> None:
        self._reload = True

    def _supervise(self, workers: list[_Worker]) -> int:
        while not self._stopping:
            if self._reload:
                self._reload = False
                self._signal_all(workers, signal.SIGHUP)
            now = time.monotonic()
            for w in workers:
                proc = w.process
                if proc is not None and (code := proc.poll()) is not None:
                    w.process = None
                    if code == CONFIG_EXIT:
                        log.error("worker %d: invalid configuration; stopping", w.identity.index)
                        return CONFIG_EXIT
                    lived = now - w.started
                    # The first death is restarted at once; a worker that keeps dying soon
                    # after its start waits longer each time (0.5 s, 1 s, ... 10 s).
                    w.quick_deaths = 0 if lived >= STABLE_S else w.quick_deaths + 1
                    delay = (
                        0.0
                        if w.quick_deaths <= 1
                        else min(MAX_RESTART_DELAY_S, 0.5 * 2 ** (w.quick_deaths - 2))
                    )
                    w.restart_at = now + delay
                    log.warning(
                        "worker %d (pid %d) exited with %s after %.1f s; restarting in %.1f s",
                        w.identity.index,
                        proc.pid,
                        code,
                        lived,
                        delay,
                    )
                if w.process is None and now >= w.restart_at:
                    self._start(w)
            time.sleep(POLL_S)
        return 0

    def _start(self, w: _Worker) -> None:
        env = {**os.environ, ENV: w.identity.encode()}
        w.process = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", *self._argv],
            env=env,
            preexec_fn=_prepare_worker,
        )
        w.started = time.monotonic()

    def _signal_all(self, workers: list[_Worker], sig: int) -> None:
        for w in workers:
            if w.process is not None and w.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    w.process.send_signal(sig)

    def _stop_all(self, workers: list[_Worker]) -> None:
        """Drain: every worker gets SIGTERM and the time a single process would have."""
        self._signal_all(workers, signal.SIGTERM)
        cfg = self._config
        bound = (cfg.shutdown_readiness_delay_ms + cfg.shutdown_timeout_ms) / 1000 + 10
        deadline = time.monotonic() + bound
        for w in workers:
            if w.process is None:
                continue
            try:
                w.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker %d did not stop within %.0f s; killed", w.identity.index, bound)
                w.process.kill()
                w.process.wait(10)


def _prepare_worker() -> None:
    """Runs between fork and exec, so it must not raise."""
    # A SIGHUP passed on while the worker is still importing would kill it (the default
    # action); an ignored signal stays ignored across exec, until serve() installs its handler
    # (which reads the certificate files after this point anyway).
    with contextlib.suppress(Exception):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # A parent killed with SIGKILL runs no cleanup: the kernel then stops the workers too,
    # rather than leaving them serving on a socket no supervisor watches.
    if sys.platform == "linux":
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _check_port_free(host: str, port: int) -> None:
    """Workers bind with SO_REUSEPORT, which would quietly share the port with a leftover
    process that did too; a plain bind first fails as a single process's would."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
