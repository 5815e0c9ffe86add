"""``session.store.url`` forms (one server, Sentinel, Cluster) and the Cluster key layout."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from gateway.config import ConfigError, load, redact
from sessions.record import lease_key, record_key, url_key
from sessions.redis_connect import census_key, key_prefix, parse_store_url


def test_plain_urls_pass_through_unchanged() -> None:
    for url in (
        "redis://h:6379/0",
        "rediss://:pw@h:6380/1?ssl_cert_reqs=none",
        "unix:///run/r.sock",
    ):
        a = parse_store_url(url)
        assert (a.kind, a.url, a.has_replicas) == ("plain", url, False)
    assert parse_store_url("rediss://h").tls and not parse_store_url("redis://h").tls


def test_sentinel_url() -> None:
    a = parse_store_url(
        "redis+sentinel://app:s%40cret@s1:26380,s2,[::1]:5000/mymaster/3?sentinel_password=sp"
    )
    assert a.kind == "sentinel" and not a.tls and a.has_replicas
    assert a.nodes == (("s1", 26380), ("s2", 26379), ("::1", 5000))
    assert (a.service, a.db, a.username, a.password) == ("mymaster", 3, "app", "s@cret")
    assert a.options == {"sentinel_password": "sp"}
    b = parse_store_url("rediss+sentinel://:pw@s1/m?ssl_ca_certs=/ca.pem&sentinel_ssl=false")
    assert (b.tls, b.username, b.password, b.db) == (True, None, "pw", 0)


def test_cluster_url() -> None:
    a = parse_store_url("redis+cluster://n1:7000,n2:7001,n3")
    assert a.kind == "cluster" and a.has_replicas is None  # asked of the cluster at start
    assert a.nodes == (("n1", 7000), ("n2", 7001), ("n3", 6379))
    assert parse_store_url("rediss+cluster://secret@n1:7000/").password == "secret"
    assert parse_store_url("REDISS+CLUSTER://n1/0").tls


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://h", "must be memory://"),
        ("redis+sentinel://s1:26379", "monitored primary's name"),
        ("redis+sentinel://s1/m/x", "database 'x'"),
        ("redis+sentinel://s1/m/0/extra", "monitored primary's name"),
        ("redis+cluster://n1/2", "database 0 only"),
        ("redis+cluster://n1:99999", "invalid port"),
        ("redis+cluster://n1:x", "invalid port"),
        ("redis+cluster://", "at least one host"),
        ("redis+cluster://n1,,n2", "at least one host"),
        ("redis+cluster://n1?sentinel_password=x", "unknown option 'sentinel_password'"),
        ("redis+sentinel://s1/m?ssl_ca_cert=/x", "unknown option 'ssl_ca_cert'"),
        ("redis+sentinel://s1/m?ssl_cert_reqs=maybe", "ssl_cert_reqs"),
        ("redis+sentinel://s1/m?sentinel_ssl=perhaps", "sentinel_ssl must be true or false"),
        ("redis+cluster://n1#frag", "fragment"),
    ],
)
def test_invalid_urls_are_refused_with_a_reason(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_store_url(url)


def test_config_accepts_every_form_and_never_echoes_a_password() -> None:
    for url in (
        "redis+sentinel://:pw@s1:26379,s2:26379/mymaster/0",
        "rediss+cluster://u:pw@n1:7000,n2:7000",
        "redis://h:6379/0",
    ):
        cfg = load(environ={}, overrides={"session.store.url": url, "cluster.secret": "s"})
        assert cfg.session_store_url == url
    with pytest.raises(ConfigError) as err:
        load(
            environ={},
            overrides={"session.store.url": "redis+sentinel://:hunter2@s1", "cluster.secret": "s"},
        )
    assert "hunter2" not in str(err.value) and "session.store.url" in str(err.value)
    assert "hunter2" not in redact("redis+sentinel://:hunter2@s1,s2/m?sentinel_password=hunter2")


def test_cluster_keys_share_one_slot_and_plain_keys_keep_their_names() -> None:
    """Each Lua script touches one slot in Cluster mode: records, census, leases, URL slots
    all carry the same hash tag. One server and Sentinel keep the historical names, so
    replicas of an older version share the directory during a rolling upgrade."""
    cluster = parse_store_url("redis+cluster://n1")
    prefix = key_prefix(cluster)
    assert prefix == "eg:{eg}:"
    keys = [
        record_key(prefix, "group:with{braces}", "name}{"),
        record_key(prefix, "g", "n"),
        census_key(cluster),
        lease_key(prefix, "host:8082:abc"),
        url_key(prefix, "http://host:8082#w1"),
    ]
    assert len({key_slot(k.encode()) for k in keys}) == 1, keys
    for plain in ("redis://h", "redis+sentinel://s/m"):
        address = parse_store_url(plain)
        assert key_prefix(address) == "eg:"
        assert census_key(address) == "eg:census"
        assert record_key(key_prefix(address), "g", "n") == "eg:inst:1:g:n"
    # A test's own prefix gets a tag of its own: its keys live on one shard, another's elsewhere.
    assert key_prefix(cluster, "test-1:") == "test-1:{test-1}:"


def test_replicas_to_wait_for_by_default() -> None:
    from sessions.redis_store import RedisDirectory

    # No connection is made by the constructor: these hosts need not exist.
    assert RedisDirectory("redis://127.0.0.1:1/0")._wait == 0  # a lone Redis
    assert RedisDirectory("redis+sentinel://127.0.0.1:1/m")._wait == 1
    assert RedisDirectory("redis+cluster://127.0.0.1:1")._wait is None  # asked at start
    assert RedisDirectory("redis://127.0.0.1:1/0", wait_replicas=2)._wait == 2
    assert RedisDirectory("redis+sentinel://127.0.0.1:1/m", wait_replicas=0)._wait == 0


async def test_tls_options_reach_the_clients() -> None:
    """No TLS server here: what is checked is the client each form builds (no connection is
    made until first use), so a ``rediss+…`` URL really asks for TLS, with the given CA."""
    from redis.asyncio.connection import SSLConnection

    from sessions.redis_connect import connect

    url = "rediss+sentinel://:pw@s1:1,s2:2/m/1?ssl_ca_certs=/ca.pem&sentinel_password=sp"
    client = connect(parse_store_url(url), timeout_s=1.0)
    try:
        pool = client.redis.connection_pool
        assert issubclass(pool.connection_class, SSLConnection)
        kw = pool.connection_kwargs
        assert (kw["ssl_ca_certs"], kw["password"], kw["db"]) == ("/ca.pem", "pw", 1)
        sentinels = client._extra
        assert len(sentinels) == 2
        for s in sentinels:
            skw = s.connection_pool.connection_kwargs
            assert issubclass(s.connection_pool.connection_class, SSLConnection)
            assert (skw["password"], skw["ssl_ca_certs"]) == ("sp", "/ca.pem")
    finally:
        await client.close()
    plain_sentinels = connect(
        parse_store_url("rediss+sentinel://s1/m?sentinel_ssl=false"), timeout_s=1.0
    )
    try:
        s = plain_sentinels._extra[0]
        assert not issubclass(s.connection_pool.connection_class, SSLConnection)
        assert issubclass(plain_sentinels.redis.connection_pool.connection_class, SSLConnection)
    finally:
        await plain_sentinels.close()
    cluster = connect(
        parse_store_url("rediss+cluster://u:pw@n1:7000?ssl_cert_reqs=none"), timeout_s=1.0
    )
    try:
        (node,) = cluster.redis.startup_nodes
        assert node.name == "n1:7000"
        assert issubclass(node.connection_class, SSLConnection)
        kw = node.connection_kwargs
        assert (kw["username"], kw["password"], kw["ssl_cert_reqs"]) == ("u", "pw", "none")
    finally:
        await cluster.close()
