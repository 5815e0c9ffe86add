"""``session.store.url`` over TLS against real TLS-only Redis deployments (issue 14).

Three forms, each started once for the module from Debian's ``redis-server``, every one with
no plaintext port at all (``--port 0``) and demanding a client certificate from the test CA
(``tls-auth-clients yes``): so anything that works here went over verified TLS.

- ``rediss://host:port/0``: one server;
- ``rediss+sentinel://…/service/0``: a primary, two replicas (TLS replication) and three
  sentinels, spoken to over TLS too (``sentinel_ssl`` left at its default, true);
- ``rediss+cluster://…``: three primaries with one replica each (TLS cluster bus).

Each URL carries ``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``, ``ssl_cert_reqs=required``
and ``ssl_check_hostname=true``; :func:`open_directory` gets it as the gateway would. Without
the CA (the system store does not know the test CA) or without the client certificate, every
call is a :class:`StoreUnavailable` well within the directory's timeout, not a hang.

Two Sentinel tests pin what these tests found: the clients for the sentinels kept redis-py's
default retry with exponential backoff, so a sentinel that refuses (wrong CA) or is down cost
the whole call timeout instead of a quick move to the next (a store unusable with the first
listed sentinel down). Each sentinel is now asked once, briefly.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

from sessions.directory import open_directory
from sessions.errors import StoreUnavailable
from sessions.record import InstanceRecord
from sessions.redis_store import RedisDirectory
from tests.harness.ports import free_port
from tests.harness.redis_ha import RedisClusterSet, RedisSentinelSet, RedisServer, TLSFiles

FORMS = ["single", "sentinel", "cluster"]
SCHEMES = {"single": "rediss", "sentinel": "rediss+sentinel", "cluster": "rediss+cluster"}
TIMEOUT_S = 2.0


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return TLSFiles.create(tmp_path_factory.mktemp("redis-tls"))


@pytest.fixture(scope="module")
def single(tls: TLSFiles) -> Iterator[RedisServer]:
    with RedisServer(tls=tls) as deployment:
        yield deployment


@pytest.fixture(scope="module")
def sentinel(tls: TLSFiles) -> Iterator[RedisSentinelSet]:
    with RedisSentinelSet(tls=tls) as deployment:
        yield deployment


@pytest.fixture(scope="module")
def cluster(tls: TLSFiles) -> Iterator[RedisClusterSet]:
    with RedisClusterSet(tls=tls) as deployment:
        yield deployment


@pytest.fixture(params=FORMS)
def form(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(form, the deployment's full TLS URL)."""
    deployment = request.getfixturevalue(request.param)
    return request.param, str(deployment.url)


def without(url: str, *names: str) -> str:
    """``url`` with the query options ``names`` left out."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in names]
    return urlunsplit(parts._replace(query=urlencode(query)))


def rec(owner: str, epoch: int, name: str) -> InstanceRecord:
    return InstanceRecord(
        "g:1", name, owner, epoch, {"group": "g:1", "name": name}, {"topics": ["t"]}
    )


async def test_every_form_works_over_tls(form: tuple[str, str]) -> None:
    kind, url = form
    assert url.startswith(f"{SCHEMES[kind]}://") and "ssl_ca_certs=" in url
    d = open_directory(url, timeout_s=TIMEOUT_S)
    assert isinstance(d, RedisDirectory)
    name = f"tls-{uuid.uuid4().hex[:8]}"
    node = f"n-{uuid.uuid4().hex[:8]}"
    try:
        await d.start()
        # Replicas confirm ownership changes where there are any: over TLS replication.
        assert await d.wait_replicas() == (0 if kind == "single" else 1)

        assert await d.create(rec("n1", 1, name), 10_000)
        assert not await d.create(rec("n2", 1, name), 10_000)  # taken
        assert await d.get("g:1", name) == rec("n1", 1, name)

        assert await d.claim("g:1", name, "n1", 0, "n2", 10_000) is None  # stale epoch
        won = await d.claim("g:1", name, "n1", 1, "n2", 10_000)
        assert won is not None and (won.owner, won.epoch) == ("n2", 2)
        assert await d.get("g:1", name) == won

        await d.touch([("g:1", name), ("g:1", "gone")], 10_000)
        assert await d.get("g:1", name) == won  # touched, unchanged

        assert not await d.renew_lease(node, "http://a:1", 5_000)  # a new lease
        assert await d.renew_lease(node, "http://a:1", 5_000)  # it still existed
        assert await d.lease(node) == "http://a:1"

        assert not await d.delete("g:1", name, "n1", 1)  # no longer n1's
        assert await d.get("g:1", name) == won
        assert await d.delete("g:1", name, "n2", 2)
        assert await d.get("g:1", name) is None
    finally:
        await d.drop_lease(node)
        await d.stop()


async def _fails_fast(url: str) -> StoreUnavailable:
    d = open_directory(url, timeout_s=TIMEOUT_S)
    try:
        started = time.monotonic()
        await d.start()  # swallows the failure: the gateway starts without Redis
        with pytest.raises(StoreUnavailable) as raised:
            await d.get("g:1", "c")
        assert time.monotonic() - started < 3 * TIMEOUT_S  # start() and get(): bounded
        return raised.value
    finally:
        await d.stop()


async def test_without_the_ca_the_server_is_not_trusted(form: tuple[str, str]) -> None:
    # ssl_cert_reqs=required stays: the servers' certificate is checked against the system
    # store, which does not know the test CA.
    kind, url = form
    error = await _fails_fast(without(url, "ssl_ca_certs"))
    if kind != "sentinel":  # redis-py's "no master found" names no cause (network:ConnectionError)
        assert "CERTIFICATE_VERIFY_FAILED" in str(error), _chain(error)


async def test_without_a_client_certificate_the_server_refuses(form: tuple[str, str]) -> None:
    # tls-auth-clients yes: proves the client certificate options reach every connection.
    await _fails_fast(without(form[1], "ssl_certfile", "ssl_keyfile"))


def _chain(exc: BaseException | None) -> str:
    """The messages of an exception and its causes (the SSL error sits at the bottom)."""
    out = []
    while exc is not None:
        out.append(f"{type(exc).__name__}: {exc}")
        exc = exc.__cause__ or exc.__context__
    return " <- ".join(out)


def test_no_plaintext_port(single: RedisServer) -> None:
    """The servers listen on TLS only: a plaintext client gets nowhere."""
    import redis

    plain = redis.Redis(host="127.0.0.1", port=single.node.port, socket_timeout=1.0)
    try:
        with pytest.raises((redis.ConnectionError, redis.TimeoutError)):
            plain.ping()
    finally:
        plain.close()
    assert single.node.query("PING")  # with the CA and the client certificate it answers


async def test_sentinel_refusal_fails_at_once(sentinel: RedisSentinelSet) -> None:
    """Every sentinel fails the handshake: the call should fail right away ("no master
    found"), not with a bare TimeoutError once the directory's timeout has run out."""
    started = time.monotonic()
    error = await _fails_fast(without(sentinel.url, "ssl_ca_certs"))
    assert time.monotonic() - started < TIMEOUT_S / 2
    assert "No master found" in str(error), _chain(error)


async def test_a_dead_sentinel_listed_first_is_skipped(sentinel: RedisSentinelSet) -> None:
    """Nothing listens on the first address: the other two sentinels must still be asked."""
    url = sentinel.url.replace("://", f"://127.0.0.1:{free_port()},", 1)
    d = open_directory(url, timeout_s=TIMEOUT_S)
    try:
        name = f"dead-{uuid.uuid4().hex[:8]}"
        assert await d.create(rec("n1", 1, name), 10_000)
        assert await d.get("g:1", name) == rec("n1", 1, name)
        assert await d.delete("g:1", name, "n1", 1)
    finally:
        await d.stop()
