"""Child processes for test servers that never outlive the test run."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # A pytest run killed with SIGKILL (CI time-out, a developer's Ctrl-\) runs no teardown; the
    # kernel then sends the server SIGKILL too, instead of leaving a JVM holding ports and memory.
    # Runs in the child between fork and exec, so it must not raise.
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(
    args: Sequence[str],
    log_path: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a server with stdout and stderr in ``log_path`` (appended to, so a server
    restarted on the same log keeps its earlier life for the post-mortem).

    Output goes to a file, not a pipe: nobody reads a pipe while tests run, and a full pipe
    would block the server. Call from the main thread: the parent-death signal fires when the
    *thread* that spawned the server exits, so a server spawned from a worker thread (say via
    ``asyncio.to_thread``) dies with that thread.
    """
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            list(args),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=None if env is None else dict(env),
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )


def stop(proc: subprocess.Popen[bytes] | None, grace: float) -> None:
    """Terminate, then kill after ``grace`` seconds; safe on an already stopped process."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        # A paused (SIGSTOP) process would not act on SIGTERM until continued.
        os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def tail(path: Path, lines: int = 40) -> str:
    """The end of a server log, for failure messages that explain themselves."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log at {path}: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def freeze(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """SIGSTOP, returning only once every thread of the process is stopped.

    ``kill`` only queues the signal: on a loaded machine a thread of a big process (a JVM has
    dozens) may run on until its CPU takes the interrupt, and a test that acts at once could be
    answered by the server it believes frozen.
    """
    os.kill(proc.pid, signal.SIGSTOP)
    deadline = time.monotonic() + timeout
    while not _all_threads_stopped(proc.pid):
        if time.monotonic() > deadline:
            raise AssertionError(f"process {proc.pid} did not stop within {timeout} s")
        time.sleep(0.005)


def _all_threads_stopped(pid: int) -> bool:
    tasks = Path(f"/proc/{pid}/task")
    if not tasks.is_dir():  # not Linux: trust the signal
        return True
    for task in tasks.iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue  # the thread ended
        # "pid (comm) S ...": comm may hold spaces and parentheses, the state follows the last ")".
        if stat[stat.rindex(")") + 2] not in "Tt":
            return False
    return True


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (Linux; empty elsewhere or when it is gone)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in task.read_text().split()]
    return found


def descendants(pid: int) -> list[int]:
    out: list[int] = []
    todo = children(pid)
    while todo:
        child = todo.pop()
        out.append(child)
        todo += children(child)
    return out
