"""``session.store.url``: which Redis deployment it names, and a client for it.

Three deployments, one setting:

- ``redis://``, ``rediss://`` (TLS), ``unix://``: one Redis endpoint, given to redis-py as is
  (its own query options keep working). A managed service's fixed primary endpoint is one too.
- ``redis+sentinel://[user:pass@]host:port[,host:port…]/service_name[/db]`` (``rediss+sentinel``
  for TLS): the sentinels are asked where the primary of ``service_name`` is, again after every
  failover (redis-py's Sentinel pool re-discovers it when a connection breaks).
- ``redis+cluster://[user:pass@]host:port[,host:port…]`` (``rediss+cluster``): any reachable
  node gives the slot map; a failover is followed through MOVED replies and map refreshes.

The user info authenticates to the Redis servers that hold the data. Sentinels often run
without a password, or with their own: ``?sentinel_password=…`` (and ``sentinel_username``).
With ``rediss+sentinel`` the sentinels are spoken to over TLS too, unless ``?sentinel_ssl=false``
(some deployments put TLS on the data port only). TLS options for the non-plain forms:
``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``, ``ssl_cert_reqs`` (``none`` / ``optional``
/ ``required``, the default) and ``ssl_check_hostname`` (``true`` / ``false``). An unknown
option is refused at start-up rather than ignored: a misspelt CA path must not silently turn
into "no verification".

Every key the gateway writes carries one hash tag in Cluster mode (see :func:`key_prefix`), so
each Lua script touches one slot; this module knows the layout so that the directory and the
health probe (which counts the census) agree on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

Kind = Literal["plain", "sentinel", "cluster"]

PLAIN_SCHEMES = ("redis://", "rediss://", "unix://")
_SCHEMES: dict[str, tuple[Kind, bool]] = {
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
}
_DEFAULT_PORT = {"sentinel": 26379, "cluster": 6379}
_TLS_OPTIONS = (
    "ssl_ca_certs",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_cert_reqs",
    "ssl_check_hostname",
)
_SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password", "sentinel_ssl")
_BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


@dataclass(frozen=True)
class StoreAddress:
    """A parsed ``session.store.url``; ``url`` is the original (it may hold a password)."""

    url: str
    kind: Kind
    tls: bool = False
    nodes: tuple[tuple[str, int], ...] = ()
    service: str = ""  # Sentinel: the monitored primary's name
    db: int = 0
    username: str | None = None
    password: str | None = None
    options: dict[str, str] = field(default_factory=dict)

    @property
    def has_replicas(self) -> bool | None:
        """Whether the deployment replicates, when the URL alone tells: a Sentinel-monitored
        primary does (that is what Sentinel is for); a plain URL is taken as a lone Redis;
        a Cluster may or may not have replicas (None: ask the cluster)."""
        return {"sentinel": True, "plain": False}.get(self.kind)


def parse_store_url(url: str) -> StoreAddress:
    """Parse and validate; ``ValueError`` with a message that never repeats a password."""
    v = url.strip()
    if v.startswith(PLAIN_SCHEMES):
        return StoreAddress(v, "plain", tls=v.startswith("rediss://"))
    scheme, sep, rest = v.partition("://")
    if not sep or scheme.lower() not in _SCHEMES:
        raise ValueError(
            "must be memory://, redis://, rediss://, unix://, redis+sentinel://, "
            "rediss+sentinel://, redis+cluster:// or rediss+cluster://"
        )
    kind, tls = _SCHEMES[scheme.lower()]
    parts = urlsplit(f"x://{rest}")  # the netloc holds a comma-separated host list
    if parts.fragment:
        raise ValueError("must not have a #fragment")
    userinfo, at, hosts = parts.netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
        if not colon:  # "redis+cluster://secret@host": like redis-py, a lone value is a password
            username, password = None, unquote(user) or None
    nodes = tuple(_host_port(item, _DEFAULT_PORT[kind]) for item in hosts.split(","))
    path = [unquote(p) for p in parts.path.split("/") if p]
    service, db = "", 0
    if kind == "sentinel":
        if not path or len(path) > 2:
            raise ValueError(
                "needs the monitored primary's name: redis+sentinel://host:port/name[/db]"
            )
        service = path[0]
        if len(path) == 2:
            db = _db(path[1])
    elif path and path != ["0"]:
        raise ValueError("a Redis Cluster has database 0 only: no path after the host list")
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    allowed = _TLS_OPTIONS + (_SENTINEL_OPTIONS if kind == "sentinel" else ())
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"unknown option {unknown[0]!r} (known: {', '.join(allowed)})")
    for name in ("ssl_check_hostname", "sentinel_ssl"):
        if name in options and options[name].lower() not in _BOOLEANS:
            raise ValueError(f"{name} must be true or false")
    if options.get("ssl_cert_reqs", "required").lower() not in ("none", "optional", "required"):
        raise ValueError("ssl_cert_reqs must be none, optional or required")
    return StoreAddress(v, kind, tls, nodes, service, db, username, password, options)


def _host_port(item: str, default_port: int) -> tuple[str, int]:
    item = item.strip()
    if item.startswith("["):  # [::1]:26379
        host, _, tail = item[1:].partition("]")
        port_text = tail[1:] if tail.startswith(":") else ""
        if tail and not tail.startswith(":"):
            raise ValueError(f"{item!r} is not host:port")
    else:
        host, _, port_text = item.partition(":")
    if not host:
        raise ValueError("needs at least one host:port (comma-separated)")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{item!r} has an invalid port")
    return host, int(port_text)


def _db(text: str) -> int:
    if not text.isdigit():
        raise ValueError(f"database {text!r} is not a number")
    return int(text)


def key_prefix(address: StoreAddress, base: str = "eg:") -> str:
    """Where the gateway's keys live: ``base``, plus one hash tag in Cluster mode.

    Every key (records, census, leases, URL slots) then hashes to one slot, so each Lua
    script and each ownership change is atomic on one primary, the census stays one sorted
    set and the cluster-wide cap exact. The directory is small and quiet (a write per
    create/claim/subscription change, a batched touch per replica per second, a lease
    renewal per replica every few seconds), far below what one shard serves; what a slot
    of its own costs is sharding, which it does not need. Plain and Sentinel URLs keep the
    historical layout, so a rolling upgrade shares one directory with older replicas.
    """
    if address.kind != "cluster":
        return base
    return f"{base}{{{base.rstrip(':')}}}:"


def census_key(address: StoreAddress, base: str = "eg:") -> str:
    """The sorted set of live instances (member: record key, score: expiry in ms)."""
    return key_prefix(address, base) + "census"


# --- clients ---------------------------------------------------------------------------------


@dataclass
class StoreClient:
    """A command client for the address (``redis``: ``redis.asyncio.Redis`` or
    ``RedisCluster``) and what must be closed with it."""

    address: StoreAddress
    redis: Any
    _extra: list[Any] = field(default_factory=list)  # sentinel clients, a pool

    @property
    def cluster(self) -> bool:
        return self.address.kind == "cluster"

    async def close(self) -> None:
        await self.redis.aclose()
        for other in self._extra:
            if hasattr(other, "aclose"):
                await other.aclose()
            else:
                await other.disconnect()


def connect(
    address: StoreAddress, *, timeout_s: float, max_connections: int = 64, health_check_s: int = 10
) -> StoreClient:
    """A client whose every socket operation is bounded by ``timeout_s``.

    No connection is made here: the gateway starts without Redis and connects when it can.
    Retries stay with the caller (``retry_on_timeout=False``): a store call must fail within
    its bound so the request answers 503, not hang through a failover.
    """
    import redis.asyncio as aioredis

    common: dict[str, Any] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "retry_on_timeout": False,
        "health_check_interval": health_check_s,
    }
    if address.kind == "plain":
        # A blocking pool: past its size, callers wait (bounded) for a free connection
        # instead of failing at once with "Too many connections".
        pool = aioredis.BlockingConnectionPool.from_url(
            address.url, max_connections=max_connections, timeout=timeout_s, **common
        )
        return StoreClient(address, aioredis.Redis(connection_pool=pool), [pool])
    auth: dict[str, Any] = {"username": address.username, "password": address.password}
    tls = _tls_kwargs(address) if address.tls else {}
    if address.kind == "sentinel":
        from redis.asyncio.retry import Retry
        from redis.asyncio.sentinel import Sentinel
        from redis.backoff import NoBackoff

        sentinel_tls = (
            address.tls and _BOOLEANS[address.options.get("sentinel_ssl", "true").lower()]
        )
        # Each sentinel is asked once, briefly, and then the next: redis-py's default retries
        # (with backoff) would spend the whole budget on the first sentinel when it is down or
        # refuses the handshake, and a replica would lose its store with two sentinels up.
        per_sentinel_s = timeout_s / max(1, len(address.nodes))
        sentinel_kwargs: dict[str, Any] = {
            "retry": Retry(NoBackoff(), 0),
            "socket_timeout": per_sentinel_s,
            "socket_connect_timeout": per_sentinel_s,
            "username": address.options.get("sentinel_username") or None,
            "password": address.options.get("sentinel_password") or None,
            **(_tls_kwargs(address) if sentinel_tls else {}),
        }
        sentinel = Sentinel(list(address.nodes), sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
        client = sentinel.master_for(
            address.service,
            db=address.db,
            max_connections=max_connections,
            **auth,
            **tls,
            **common,
        )
        return StoreClient(address, client, list(sentinel.sentinels))
    from redis.asyncio.cluster import ClusterNode, RedisCluster

    cluster = RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in address.nodes],
        # A slot left uncovered while a shard fails over must not stop the client from
        # loading the map: the gateway's keys may well live on another shard.
        require_full_coverage=False,
        max_connections=max_connections,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        health_check_interval=health_check_s,
        **auth,
        **tls,
    )
    return StoreClient(address, cluster)


def connect_url(url: str, *, timeout_s: float, max_connections: int = 8) -> StoreClient:
    """:func:`connect` for a URL (for small side clients: the health probe, locks)."""
    return connect(parse_store_url(url), timeout_s=timeout_s, max_connections=max_connections)


def _tls_kwargs(address: StoreAddress) -> dict[str, Any]:
    o = address.options
    out: dict[str, Any] = {"ssl": True, "ssl_cert_reqs": o.get("ssl_cert_reqs", "required").lower()}
    for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
        if o.get(name):
            out[name] = o[name]
    if "ssl_check_hostname" in o:
        out["ssl_check_hostname"] = _BOOLEANS[o["ssl_check_hostname"].lower()]
    return out
