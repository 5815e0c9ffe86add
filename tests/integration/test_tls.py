"""The HTTPS listener, its certificate reload on SIGHUP, mTLS, and forwarding over HTTPS.

Certificates come from a test CA made at test time (tests/support/certs.py). The reload test
runs the real ``event-gateway serve`` and signals it; the others run the app in-process behind
a real TLS listener (the same context the server uses), so they can observe the principal.
"""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from cryptography import x509

from gateway.app import build_app
from gateway.config import ConfigError, from_properties
from gateway.context import SESSIONS
from gateway.security.principal import principal_of
from gateway.security.tls import TLS, TLS_KEY
from gateway.server import make_runner
from tests.harness.ports import free_port
from tests.harness.process import spawn
from tests.support.certs import Issued, TestCA, client_context

ROOT = Path(__file__).resolve().parents[2]
JWT_SECRET = "tls-test-secret-0123456789abcdef0123456789"


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


@pytest.fixture(scope="module")
def server_cert(ca: TestCA) -> Issued:
    return ca.issue("localhost", dns=("localhost",), ips=("127.0.0.1",))


def tls_props(tmp: Path, ca: TestCA, server: Issued, port: int) -> dict[str, str]:
    cert, key = server.write(tmp, "server-")
    return {
        "listeners": f"https://127.0.0.1:{port}",
        "ssl.certificate.location": str(cert),
        "ssl.key.location": str(key),
        "ssl.ca.location": str(ca.write(tmp / "ca.pem")),
    }


# --- a raw keep-alive HTTPS connection (to see which certificate *this* connection got) -------


class RawConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, ctx: ssl.SSLContext) -> RawConnection:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost"), 5
        )
        return cls(reader, writer)

    @property
    def serial(self) -> int:
        der = self.writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        return x509.load_der_x509_certificate(der).serial_number

    async def get(self, path: str) -> tuple[int, bytes]:
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 5)
        lines = head.decode().split("\r\n")
        length = next(
            int(h.split(":", 1)[1]) for h in lines if h.lower().startswith("content-length:")
        )
        body = await asyncio.wait_for(self.reader.readexactly(length), 5)
        return int(lines[0].split()[1]), body

    def close(self) -> None:
        self.writer.close()


async def serial_of_new_connection(port: int, ctx: ssl.SSLContext) -> int:
    conn = await RawConnection.open(port, ctx)
    try:
        assert (await conn.get("/"))[0] == 200
        return conn.serial
    finally:
        conn.close()


@pytest.mark.parametrize("workers", [1, 2])
async def test_https_listener_and_reload_on_sighup(
    kafka_bootstrap: str,
    ca: TestCA,
    server_cert: Issued,
    tmp_path: Path,
    workers: int,
    request: pytest.FixtureRequest,
) -> None:
    """Also with two worker processes: both serve TLS, both reload on the SIGHUP their parent
    passes on, and a request reaching the worker that does not own an instance is served by
    its sibling (over the Unix socket: no TLS there, none needed)."""
    port = free_port()
    props = tls_props(tmp_path, ca, server_cert, port)
    if workers > 1:
        props |= {
            "workers": str(workers),
            "session.store.url": request.getfixturevalue("redis_url"),
            "cluster.secret": "tls-workers",
        }
    args = [
        sys.executable,
        "-m",
        "gateway.cli",
        "serve",
        "--set",
        f"bootstrap.servers={kafka_bootstrap}",
    ]
    for k, v in props.items():
        args += ["--set", f"{k}={v}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENT_GATEWAY_")}
    log = tmp_path / "gateway.log"
    proc = spawn(args, log, cwd=ROOT, env=env)
    trusting = client_context(ca)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                first_serial = await serial_of_new_connection(port, trusting)
                break
            except (TimeoutError, OSError):
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                await asyncio.sleep(0.2)
        assert first_serial == server_cert.cert.serial_number
        if workers > 1:
            # Renewals signal at any time: SIGHUPs passed on to workers still starting (or
            # starting again) must neither kill them nor be lost.
            await _hup_while_workers_start(proc, log, workers)
        reloads_before = log.read_text().count("TLS certificate reloaded")

        # A client that does not trust the test CA (the system store) is refused.
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await session.get(f"https://localhost:{port}/")
            # Plain HTTP on the TLS port gets no answer in HTTP.
            with pytest.raises(aiohttp.ClientError):
                async with session.get(f"http://127.0.0.1:{port}/") as resp:
                    await resp.read()
        async with aiohttp.ClientSession() as session:
            async with session.get(f"https://localhost:{port}/", ssl=trusting) as resp:
                assert (resp.status, await resp.read()) == (200, b"{}")

        kept = await RawConnection.open(port, trusting)
        assert (await kept.get("/"))[0] == 200
        assert kept.serial == first_serial

        # Renewal: new certificate and key written in place, then SIGHUP.
        renewed = ca.issue("localhost", dns=("localhost",), ips=("127.0.0.1",), days=30)
        renewed.write(tmp_path, "server-")
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while (
            serial := await serial_of_new_connection(port, trusting)
        ) != renewed.cert.serial_number:
            assert time.monotonic() < deadline, log.read_text()
            await asyncio.sleep(0.1)
        assert serial != first_serial
        # Every worker must have reloaded before the next step writes a stray key: a new
        # connection reaches one worker only, and a sibling that handles this SIGHUP late would
        # read the stray pair instead.
        while log.read_text().count("TLS certificate reloaded") < reloads_before + workers:
            assert time.monotonic() < deadline, log.read_text()
            await asyncio.sleep(0.1)
        # The connection opened before the reload was not dropped and keeps its certificate.
        assert (await kept.get("/"))[0] == 200
        assert kept.serial == first_serial

        # A half-written renewal (certificate of one pair, key of another) is not loaded.
        stray = ca.issue("localhost", dns=("localhost",))
        (tmp_path / "server-key.pem").write_bytes(stray.key_pem)
        proc.send_signal(signal.SIGHUP)
        await asyncio.sleep(0.5)
        assert await serial_of_new_connection(port, trusting) == renewed.cert.serial_number
        assert (await kept.get("/"))[0] == 200
        kept.close()
        assert "TLS certificate not reloaded" in log.read_text()
        assert log.read_text().count("TLS certificate reloaded") >= workers
        assert proc.poll() is None
        if workers > 1:
            assert f"{workers} workers on https://" in log.read_text()
            await _instances_served_by_any_worker(port, trusting)
            forwarded = log.read_text().count("forwarded=yes")
            assert forwarded > 0, "no request reached the sibling that owns its instance"
    finally:
        proc.terminate()
        code = await asyncio.to_thread(proc.wait, 30)
    assert code == 0, log.read_text()


def _read(log: Path) -> str:
    return log.read_text()  # small, local: not worth a thread


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[1]) == pid:  # state, then ppid
            found.append(int(stat.parent.name))
    return found


async def _hup_while_workers_start(proc: subprocess.Popen[bytes], log: Path, workers: int) -> None:
    """SIGHUP the parent every 20 ms while a worker is killed and started again, until every
    worker of this generation listens: no worker may die of it, and every one that was up when
    a SIGHUP came logs a reload (a starting one reads the files anyway)."""
    listening = "event-gateway listening on"
    deadline = time.monotonic() + 30
    while _read(log).count(listening) < workers:
        assert proc.poll() is None and time.monotonic() < deadline, _read(log)
        await asyncio.sleep(0.05)
    # Restart one worker: SIGKILL it and keep signalling the parent while its successor starts.
    pids = _children(proc.pid)
    assert len(pids) == workers
    os.kill(pids[0], signal.SIGKILL)
    while _read(log).count(listening) < workers + 1:
        assert proc.poll() is None and time.monotonic() < deadline, _read(log)
        proc.send_signal(signal.SIGHUP)
        await asyncio.sleep(0.02)
    for _ in range(5):  # and a few once it listens
        proc.send_signal(signal.SIGHUP)
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.5)  # the last signals handled
    text = _read(log)
    assert text.count("exited with") == 1, text  # only the one killed here
    assert "exited with -9" in text, text
    assert proc.poll() is None


async def _instances_served_by_any_worker(port: int, ctx: ssl.SSLContext) -> None:
    """Instances created over separate connections land on both workers; every request for
    each, over new connections (either worker), is answered by the owner."""
    base = f"https://localhost:{port}/consumers/tls-workers-{os.getpid()}-{time.time_ns()}"
    v2 = {"Content-Type": "application/vnd.kafka.v2+json"}
    for i in range(8):
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
            async with s.post(base, json={"name": f"i{i}"}, headers=v2, ssl=ctx) as resp:
                assert resp.status == 200, await resp.text()
            async with s.post(
                f"{base}/instances/i{i}/subscription",
                json={"topics": [f"tls-{i}"]},
                headers=v2,
                ssl=ctx,
            ) as resp:
                assert resp.status == 204, await resp.text()
    for _ in range(3):
        for i in range(8):
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
                async with s.get(f"{base}/instances/i{i}/subscription", ssl=ctx) as resp:
                    assert resp.status == 200, await resp.text()
                    assert await resp.json() == {"topics": [f"tls-{i}"]}


# --- in-process HTTPS gateways ----------------------------------------------------------------

StartFn = Callable[[Mapping[str, str]], Awaitable[tuple[str, web.Application]]]


@pytest.fixture
async def start_https(kafka_bootstrap: str) -> AsyncIterator[StartFn]:
    """``url, app = await start_https(props)``: the app behind a real TLS listener, with a
    route echoing the principal."""
    runners: list[web.AppRunner] = []

    async def echo(request: web.Request) -> web.Response:
        p = principal_of(request)
        return web.json_response({"name": p.name, "method": p.method})

    async def start(props: Mapping[str, str]) -> tuple[str, web.Application]:
        cfg = from_properties(
            {"bootstrap.servers": kafka_bootstrap, "kafka.timeout.ms": "5000", **props}
        )
        app = build_app(cfg)
        app.router.add_get("/test/whoami", echo)
        runner = make_runner(app, cfg)
        await runner.setup()
        runners.append(runner)
        lst = cfg.listener
        await web.TCPSite(runner, lst.host, lst.port, ssl_context=app[TLS_KEY].server).start()
        return f"https://localhost:{lst.port}", app

    yield start
    for runner in reversed(runners):
        await runner.cleanup()


async def whoami(url: str, ctx: ssl.SSLContext) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{url}/test/whoami", ssl=ctx) as resp,
    ):
        return resp.status, await resp.json(content_type=None)


async def test_mtls_requested(
    start_https: StartFn, ca: TestCA, server_cert: Issued, tmp_path: Path
) -> None:
    props = tls_props(tmp_path, ca, server_cert, free_port())
    url, _ = await start_https(
        {**props, "ssl.client.authentication": "REQUESTED", "authentication.method": "MTLS"}
    )
    alice = ca.issue("alice", emails=("alice@example.com",), organization="Acme")
    assert await whoami(url, client_context(ca, alice, tmp_path)) == (
        200,
        {"name": "alice", "method": "mtls"},
    )
    # No certificate: the handshake succeeds (REQUESTED), the request has no credentials.
    status, body = await whoami(url, client_context(ca))
    assert (status, body["error_code"]) == (401, 40101), body
    # A certificate from another CA: the handshake itself is refused.
    mallory = TestCA("another CA").issue("alice")
    with pytest.raises(aiohttp.ClientError):
        await whoami(url, client_context(ca, mallory, tmp_path))
    # Public paths stay reachable without a certificate (probes carry none).
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{url}/healthz", ssl=client_context(ca)) as resp,
    ):
        assert resp.status == 200


@pytest.mark.parametrize(
    ("part", "expected"),
    [("SAN_EMAIL", "bob@example.com"), ("SUBJECT", "CN=bob,O=Acme"), ("SAN_DNS", None)],
)
async def test_mtls_required_and_principal_part(
    start_https: StartFn,
    ca: TestCA,
    server_cert: Issued,
    tmp_path: Path,
    part: str,
    expected: str | None,
) -> None:
    props = tls_props(tmp_path, ca, server_cert, free_port())
    url, _ = await start_https(
        {
            **props,
            "ssl.client.authentication": "REQUIRED",
            "authentication.method": "MTLS",
            "authentication.mtls.principal": part,
        }
    )
    bob = ca.issue("bob", emails=("bob@example.com",), organization="Acme")
    status, body = await whoami(url, client_context(ca, bob, tmp_path))
    if expected is None:  # the certificate has no DNS name: refused, not someone else
        assert (status, body["error_code"]) == (401, 40101), body
        assert "no SAN DNS" in body["message"]
    else:
        assert (status, body["name"]) == (200, expected), body
    # REQUIRED: no certificate, no handshake.
    with pytest.raises(aiohttp.ClientError):
        await whoami(url, client_context(ca))


def test_tls_configuration_mistakes_stop_start_up(
    ca: TestCA, server_cert: Issued, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=r"ssl\.certificate\.location"):
        from_properties({"listeners": "https://127.0.0.1:8443"})
    props = tls_props(tmp_path, ca, server_cert, 8443)
    with pytest.raises(ConfigError, match="MTLS needs"):
        from_properties({**props, "authentication.method": "MTLS"})
    with pytest.raises(ConfigError, match=r"ssl\.client\.authentication"):
        from_properties({"ssl.client.authentication": "REQUIRED"})
    # Files are read when the app is built: a key that does not match the certificate.
    other = ca.issue("other")
    (tmp_path / "other-key.pem").write_bytes(other.key_pem)
    with pytest.raises(ConfigError, match="not a usable certificate and key"):
        TLS(from_properties({**props, "ssl.key.location": str(tmp_path / "other-key.pem")}))
    # Through the CLI too: exit code 2, naming the key.
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--set", "listeners=https://127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 2 and "ssl.certificate.location" in done.stderr, done.stderr


async def test_forwarding_between_replicas_over_https(
    redis_server: Any, start_https: StartFn, ca: TestCA, tmp_path: Path, new_topic: Any
) -> None:
    """Two replicas sharing Redis, each on its own https:// node URL, requiring client
    certificates: an instance a JWT principal created on one is used through the other (one
    HTTPS hop, with the replica's own certificate as the client certificate, carrying the
    principal), and is invisible to another principal (the client certificate's)."""
    topic = await new_topic(partitions=1)
    urls, apps = [], []
    for i in range(2):
        port = free_port()
        replica = ca.issue(f"replica-{i}", dns=("localhost",), ips=("127.0.0.1",))
        props = tls_props(tmp_path / f"r{i}", ca, replica, port)
        url, app = await start_https(
            {
                **props,
                "ssl.client.authentication": "REQUIRED",
                "node.url": f"https://localhost:{port}",
                "session.store.url": redis_server.url,
                "cluster.secret": "s3cret",
                "authentication.method": "BEARER,MTLS",
                "authentication.jwt.secret": JWT_SECRET,
            }
        )
        urls.append(url)
        apps.append(app)
    alice = client_context(ca, ca.issue("alice"), tmp_path)
    token = jwt.encode({"sub": "jwt-user", "exp": int(time.time()) + 600}, JWT_SECRET, "HS256")
    bearer = {"Authorization": f"Bearer {token}"}
    v2 = "application/vnd.kafka.v2+json"
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=alice), headers=bearer
    ) as session:
        async with session.post(
            f"{urls[1]}/topics/{topic}",
            data=b'{"records":[{"value":{"n":1}}]}',
            headers={"Content-Type": "application/vnd.kafka.json.v2+json"},
        ) as resp:
            assert resp.status == 200, await resp.text()
        async with session.post(
            f"{urls[0]}/consumers/g-tls",
            json={"name": "c1", "format": "json", "auto.offset.reset": "earliest"},
            headers={"Content-Type": v2},
        ) as resp:
            assert resp.status == 200, await resp.text()
        path = "/consumers/g-tls/instances/c1"
        async with session.post(
            f"{urls[1]}{path}/subscription",
            json={"topics": [topic]},
            headers={"Content-Type": v2},
        ) as resp:
            assert resp.status == 204, await resp.text()
        records: list[Any] = []
        deadline = time.monotonic() + 20
        while not records:
            assert time.monotonic() < deadline
            async with session.get(
                f"{urls[1]}{path}/records?timeout=1000",
                headers={"Accept": "application/vnd.kafka.json.v2+json"},
            ) as resp:
                assert resp.status == 200, await resp.text()
                records = await resp.json(content_type=None)
        assert [r["value"] for r in records] == [{"n": 1}]
        # Served by its owner, reached only through the other replica: one HTTPS hop.
        assert apps[0][SESSIONS].local.find("g-tls", "c1") is not None
        assert apps[1][SESSIONS].local.find("g-tls", "c1") is None
        # Without the token the caller is the certificate's "alice": not the instance's owner.
        for url in urls:
            async with session.get(
                f"{url}{path}/subscription", headers={"Authorization": ""}
            ) as resp:
                body = await resp.json(content_type=None)
                assert (resp.status, body["error_code"]) == (404, 40403), body
            async with session.get(f"{url}{path}/subscription") as resp:
                assert (await resp.json(content_type=None))["topics"] == [topic]
        async with session.delete(f"{urls[1]}{path}", headers={"Content-Type": v2}) as resp:
            assert resp.status == 204, await resp.text()
