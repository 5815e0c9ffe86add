"""A private redis-server for tests, which a test may also pause to play "Redis unavailable"."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self

from tests.harness import process
from tests.harness.ports import free_port


class RedisStartError(RuntimeError):
    """redis-server could not be started; the message carries the end of its log."""


def _ping(port: int) -> bool:
    # Raw RESP inline command, so readiness needs no client library and no event loop.
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """``redis-server`` on a free loopback port, with no persistence.

    ``process`` is the Popen, public on purpose: failure tests pause it (SIGSTOP, a Redis that
    accepts connections but never answers, the nastier kind of outage) with :meth:`pause` and
    :meth:`resume`, or kill it outright.
    """

    def __init__(self, *, start_timeout: float = 20.0, extra_args: tuple[str, ...] = ()) -> None:
        self.start_timeout = start_timeout
        self.extra_args = extra_args
        self.port = 0
        self.workdir: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        assert self.workdir is not None, "not started"
        return self.workdir / "redis.log"

    def start(self) -> str:
        """Start redis-server and return its URL once it answers PING."""
        if self.process is not None:
            raise RuntimeError("already started")
        binary = shutil.which("redis-server")
        if not binary:
            raise RedisStartError(
                "no `redis-server` on PATH (Debian: apt-get install redis-server), "
                "or set REDIS_URL to an existing server"
            )
        self.workdir = Path(tempfile.mkdtemp(prefix="eg-redis-"))
        for attempt in range(3):
            self.port = free_port()
            self.log_path.unlink(missing_ok=True)
            self.process = process.spawn(
                [
                    binary,
                    "--port", str(self.port),
                    "--bind", "127.0.0.1",
                    "--save", "",
                    "--appendonly", "no",
                    "--dir", str(self.workdir),
                    *self.extra_args,
                ],
                self.log_path,
                cwd=self.workdir,
            )  # fmt: skip
            deadline = time.monotonic() + self.start_timeout
            while time.monotonic() < deadline and self.process.poll() is None:
                if _ping(self.port):
                    return self.url
                time.sleep(0.05)
            log = process.tail(self.log_path)
            process.stop(self.process, 5)
            self.process = None
            if "Address already in use" in log and attempt < 2:
                continue
            self.stop()
            raise RedisStartError(f"redis-server did not answer PING; its log ends:\n{log}")
        raise AssertionError("unreachable")

    def pause(self) -> None:
        """Freeze the server: connections stay open but nothing is answered."""
        assert self.process is not None, "not started"
        process.freeze(self.process)

    def resume(self) -> None:
        assert self.process is not None, "not started"
        os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        """Stop the server (resuming it first if paused) and delete its folder."""
        process.stop(self.process, 5)
        self.process = None
        if self.workdir is not None and not os.environ.get("EVENT_GATEWAY_KEEP_TEST_DIRS"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
