"""Headless Chromium for tests, driven over the DevTools protocol (CDP) with aiohttp.

No Selenium or Playwright: Chromium comes from Debian's ``chromium`` package (``.ci/run``
installs it), and what the tests need from it is small: open a page, evaluate JavaScript in
it, read what the page exposes. That is three CDP methods over one websocket.

Chromium runs in its own process group (``start_new_session``) so teardown kills it and every
renderer, GPU and utility process it started; it is also told to die with the test run
(``PR_SET_PDEATHSIG``), as the other test servers are. Every wait here has a deadline.

Example::

    async with Browser.launch(tmp_path) as browser:
        page = await browser.new_page("http://127.0.0.1:8082/ui/stream?topic=t")
        await page.wait_for("window.streamState && streamState.state === 'open'", timeout=15)
        count = await page.evaluate("streamState.count")
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from tests.harness.process import _die_with_parent, tail

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
FLAGS = (
    "--headless=new",
    "--remote-debugging-port=0",  # Chromium picks a free port and writes it down
    "--no-sandbox",  # the tests run as root, where Chromium's sandbox refuses to start
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-gpu",
    "--disable-extensions",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
    "--mute-audio",
    # A page in a hidden or background tab gets its timers throttled; the tests' page must
    # run its reconnects on time.
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
)


class BrowserError(AssertionError):
    """Chromium did not start, a CDP call failed, or a page did not get where it should."""


def chromium_path() -> str:
    for name in CANDIDATES:
        if found := shutil.which(name):
            return found
    raise BrowserError(
        f"no Chromium on PATH (tried {', '.join(CANDIDATES)}): "
        "apt-get install --no-install-recommends chromium"
    )


def _start(profile: str, log: Path) -> subprocess.Popen[bytes]:
    """Chromium with ``profile`` as its user data directory, its output appended to ``log``.
    Call from the main thread (see tests/harness/process.py ``spawn``: the parent-death signal
    follows the spawning thread)."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [chromium_path(), *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, killed whole at teardown
            preexec_fn=_die_with_parent,
        )


class _Connection:
    """One CDP websocket: numbered calls answered by id, events kept per session."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: dict[str, list[dict[str, Any]]] = {}
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for msg in self._ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = msg.json()
                if "id" in data:
                    future = self._pending.pop(data["id"], None)
                    if future is not None and not future.done():
                        future.set_result(data)
                else:
                    self.events.setdefault(data.get("sessionId", ""), []).append(data)
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(BrowserError("the DevTools connection closed"))

    async def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session: str | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109 (one call's bound)
    ) -> dict[str, Any]:
        call_id = next(self._ids)
        message: dict[str, Any] = {"id": call_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        await self._ws.send_json(message)
        try:
            answer = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise BrowserError(f"{method}: no answer within {timeout} s") from None
        finally:
            self._pending.pop(call_id, None)
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error']}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    async def close(self) -> None:
        await self._ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader


class Page:
    """One browser tab, attached through a flat CDP session."""

    def __init__(self, conn: _Connection, target_id: str, session: str) -> None:
        self._conn = conn
        self.target_id = target_id
        self._session = session

    async def navigate(self, url: str, timeout: float = 15.0) -> None:  # noqa: ASYNC109
        done = await self._conn.call("Page.navigate", {"url": url}, session=self._session)
        if done.get("errorText"):
            raise BrowserError(f"navigating to {url}: {done['errorText']}")
        await self.wait_for("document.readyState === 'complete'", timeout=timeout)

    async def evaluate(self, expression: str) -> Any:
        """The value of ``expression`` in the page (JSON-able values; promises are awaited)."""
        result = await self._conn.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            session=self._session,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"{expression!r} threw: {text}")
        return result["result"].get("value")

    async def wait_for(
        self,
        expression: str,
        timeout: float = 15.0,  # noqa: ASYNC109 (a deadline for the whole poll)
        interval: float = 0.05,
    ) -> Any:
        """Poll ``expression`` until it is truthy; its value. A page still loading (no
        context to evaluate in yet) counts as not yet."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            try:
                last = await self.evaluate(expression)
                if last:
                    return last
            except BrowserError as exc:
                last = exc
            if time.monotonic() > deadline:
                raise BrowserError(
                    f"{expression!r} not true within {timeout} s (last: {last!r});"
                    f" console:\n{self.console()}"
                )
            await asyncio.sleep(interval)

    def console(self) -> str:
        """What the page logged (console calls, uncaught exceptions, CSP and network
        messages): for failure messages that explain themselves."""
        lines = []
        for event in self._conn.events.get(self._session, []):
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled":
                args = " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
                lines.append(f"console.{params.get('type')}: {args}")
            elif method == "Runtime.exceptionThrown":
                lines.append(f"exception: {params['exceptionDetails'].get('text')}")
            elif method == "Log.entryAdded":
                entry = params["entry"]
                lines.append(f"{entry.get('source')} {entry.get('level')}: {entry.get('text')}")
        return "\n".join(lines[-40:]) or "(nothing)"


class Browser:
    def __init__(self, proc: subprocess.Popen[bytes], log: Path, profile: str) -> None:
        self.proc = proc
        self.log = log
        self._profile = profile
        self._http: aiohttp.ClientSession | None = None
        self._conn: _Connection | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def launch(cls, workdir: Path, timeout: float = 30.0) -> AsyncIterator[Browser]:  # noqa: ASYNC109
        """A started headless Chromium, killed (with its whole process group) at the end."""
        profile = tempfile.mkdtemp(prefix="chromium-", dir=workdir)
        log = workdir / "chromium.log"
        browser = cls(_start(profile, log), log, profile)
        try:
            await browser._connect(timeout)
            yield browser
        finally:
            await browser._close()

    async def _connect(self, timeout: float) -> None:  # noqa: ASYNC109
        # Chromium writes the port it chose, and the browser target's path, to this file.
        port_file = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while True:
            lines = port_file.read_text().split("\n") if port_file.exists() else []
            if len(lines) >= 2 and lines[0].strip() and lines[1].strip():
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise BrowserError(f"Chromium did not start:\n{tail(self.log)}")
            await asyncio.sleep(0.05)
        url = f"ws://127.0.0.1:{lines[0].strip()}{lines[1].strip()}"
        self._http = aiohttp.ClientSession()
        ws = await self._http.ws_connect(
            url, timeout=aiohttp.ClientWSTimeout(ws_close=5), max_msg_size=0
        )
        self._conn = _Connection(ws)

    async def new_page(self, url: str = "about:blank") -> Page:
        """A new tab at ``url``, loaded (``document.readyState`` complete)."""
        assert self._conn is not None
        target = await self._conn.call("Target.createTarget", {"url": "about:blank"})
        attached = await self._conn.call(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        page = Page(self._conn, target["targetId"], attached["sessionId"])
        for domain in ("Page", "Runtime", "Log"):
            await self._conn.call(f"{domain}.enable", session=attached["sessionId"])
        if url != "about:blank":
            await page.navigate(url)
        return page

    async def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.call("Browser.close", timeout=5)
            await self._conn.close()
        if self._http is not None:
            await self._http.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # renderers and helpers too
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(self.proc.wait, 10)
        shutil.rmtree(self._profile, ignore_errors=True)
