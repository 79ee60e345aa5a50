"""Redis connections from one URL: a server, a Sentinel-managed master, or a Cluster.

Every Redis client of wsauth is built here, from ``WSAUTH_REDIS_URL``. The
forms (``[[user]:password@]`` is optional everywhere and authenticates to
the data nodes, not to the sentinels)::

    redis://host[:port][/db]                       one server (port 6379, db 0)
    rediss://host[:port][/db]                      one server over TLS
    unix:///path/to/redis.sock[?db=N]              one server on a Unix socket
    redis+sentinel://host[:port][,host[:port]...]/service[/db]
                                                   the master that the sentinels
                                                   (port 26379) name for service
    rediss+sentinel://...                          the same, TLS to every node
    redis+cluster://host[:port][,host[:port]...]   a Redis Cluster; the nodes
                                                   listed are seeds (any of them
                                                   will do, list several)
    rediss+cluster://...                           the same over TLS

``WSAUTH_REDIS_CLUSTER=1`` turns a ``redis://`` or ``rediss://`` URL into
its ``+cluster`` form (:func:`cluster_url`).

The clients are redis-py's own: ``redis.sentinel.Sentinel.master_for`` and
``redis.cluster.RedisCluster`` (and their ``redis.asyncio`` twins), with the
same rules as for one server: every command fails within the timeout, and a
failed command is reported, never retried behind our back (a GETDEL retried
after a lost reply would turn a success into a refusal). Where a Cluster or
Sentinel client has no answer — no reachable node, a slot not covered, no
master known — the error is a :class:`redis.ConnectionError`, so callers
answer 503 (fail closed) exactly as for a single server.

A Cluster client is typed as ``redis.Redis`` (``redis.asyncio.Redis``): it
offers the same single-key commands, pipelines and pub/sub that wsauth uses
(every wsauth key command names one key; see :mod:`wsauth.shared.state.replay` and
:mod:`wsauth.shared.state.sessions`), so the callers need not know which one they hold.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Literal, cast
from urllib.parse import parse_qs, unquote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.sentinel
import redis.cluster
import redis.sentinel
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException
from redis.retry import Retry

try:  # redis-py >= 7; older versions have no maintenance notifications to switch off
    from redis.maint_notifications import MaintNotificationsConfig
except ImportError:  # pragma: no cover
    MaintNotificationsConfig = None  # type: ignore[assignment,misc]

Kind = Literal["server", "sentinel", "cluster"]

SCHEMES = (
    "redis",
    "rediss",
    "unix",
    "redis+sentinel",
    "rediss+sentinel",
    "redis+cluster",
    "rediss+cluster",
)
SENTINEL_PORT = 26379
REDIS_PORT = 6379
MAX_DB = 15


class ClusterUnavailable(redis.ConnectionError):
    """The Cluster client has no node to ask (none reachable, or a slot not covered)."""


@dataclass(frozen=True)
class RedisTarget:
    """What a ``WSAUTH_REDIS_URL`` names; build it with :func:`parse_redis_url`."""

    kind: Kind
    url: str = field(repr=False)
    nodes: tuple[tuple[str, int], ...] = ()
    service: str | None = None
    db: int = 0
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def parse_redis_url(raw: str) -> RedisTarget:
    """Parse one of the URL forms of the module docstring.

    Raises:
        ValueError: the URL is not one of them; the message says what is wrong
            (never the password).
    """
    value = raw.strip()
    try:
        parts = urlsplit(value)
    except ValueError:
        raise ValueError("is not a URL") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError(f"must start with one of {', '.join(s + '://' for s in SCHEMES)}")
    tls = scheme.startswith("rediss")
    credentials = _credentials(parts.netloc)
    if scheme == "unix":
        if not parts.path:
            raise ValueError("a unix:// URL names a socket path: unix:///path/to/redis.sock")
        return RedisTarget("server", value, db=_query_db(parts.query), **credentials)
    if scheme in ("redis", "rediss"):
        nodes = _nodes(parts.netloc, default_port=REDIS_PORT, many=False)
        db = _path_db(parts.path.strip("/")) if parts.path.strip("/") else _query_db(parts.query)
        return RedisTarget("server", value, nodes=nodes, db=db, tls=tls, **credentials)
    if scheme.endswith("+sentinel"):
        nodes = _nodes(parts.netloc, default_port=SENTINEL_PORT, many=True)
        segments = [unquote(segment) for segment in parts.path.split("/")[1:] if segment]
        if not segments or len(segments) > 2:
            raise ValueError("a sentinel URL names the service: redis+sentinel://host:26379/name")
        service = segments[0]
        if not service.isprintable() or " " in service:
            raise ValueError("the sentinel service name must be printable, without spaces")
        db = _path_db(segments[1]) if len(segments) == 2 else 0
        return RedisTarget("sentinel", value, nodes, service, db, tls, **credentials)
    nodes = _nodes(parts.netloc, default_port=REDIS_PORT, many=True)
    if parts.path.strip("/") not in ("", "0"):
        raise ValueError("Redis Cluster has database 0 only: no /db in a cluster URL")
    return RedisTarget("cluster", value, nodes, tls=tls, **credentials)


def cluster_url(url: str) -> str:
    """``url`` in its ``+cluster`` form (``WSAUTH_REDIS_CLUSTER=1``); a ``+cluster`` URL as is.

    Raises:
        ValueError: not a redis://, rediss:// or +cluster URL, or a database other than 0.
    """
    target = parse_redis_url(url)
    if target.kind == "cluster":
        return target.url
    parts = urlsplit(target.url)
    if target.kind != "server" or parts.scheme == "unix":
        raise ValueError("cluster mode needs a redis://, rediss:// or redis+cluster:// URL")
    if target.db != 0:
        raise ValueError("Redis Cluster has database 0 only")
    return f"{parts.scheme}+cluster://{parts.netloc}"


def redact(url: str) -> str:
    """``url`` with the password replaced by ``***`` (for error messages and logs)."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, tail = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{hosts}{slash}{tail}"


def _credentials(netloc: str) -> dict[str, Any]:
    userinfo, at, _hosts = netloc.rpartition("@")
    if not at:
        return {}
    user, colon, password = userinfo.partition(":")
    return {
        "username": unquote(user) or None,
        "password": unquote(password) if colon else None,
    }


def _nodes(netloc: str, *, default_port: int, many: bool) -> tuple[tuple[str, int], ...]:
    hosts = netloc.rpartition("@")[2]
    items = [item.strip() for item in hosts.split(",")]
    if not hosts or any(not item for item in items):
        raise ValueError("names no host")
    if len(items) > 1 and not many:
        raise ValueError("names one host only (use redis+cluster:// for several)")
    nodes = []
    for item in items:
        try:
            parsed = urlsplit(f"//{item}")
            host, port = parsed.hostname, parsed.port
        except ValueError:
            raise ValueError(f"{item!r} is not host[:port]") from None
        if not host:
            raise ValueError(f"{item!r} is not host[:port]")
        nodes.append((host, port or default_port))
    return tuple(nodes)


def _path_db(text: str) -> int:
    if not text.isdigit() or int(text) > MAX_DB:
        raise ValueError(f"the database must be a number from 0 to {MAX_DB}")
    return int(text)


def _query_db(query: str) -> int:
    values = parse_qs(query).get("db")
    return _path_db(values[0]) if values else 0


# --- client factories -----------------------------------------------------------


def _options(timeout: float | None, *, connect_timeout: float) -> dict[str, Any]:
    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": connect_timeout,
        "health_check_interval": 0,
        "retry_on_timeout": False,
    }


def _no_maintenance() -> dict[str, Any]:
    """redis-py 8's asyncio pool skips its "is this pooled connection alive?" check while
    maintenance notifications (a Redis Enterprise feature) are on; after a restart
    or failover the first command on each pooled connection would fail."""
    if MaintNotificationsConfig is None:  # pragma: no cover
        return {}
    return {"maint_notifications_config": MaintNotificationsConfig(enabled=False)}


def _auth(target: RedisTarget) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if target.username is not None:
        options["username"] = target.username
    if target.password is not None:
        options["password"] = target.password
    return options


def sync_client(url: str, *, timeout: float) -> redis.Redis:
    """A redis-py client for ``url`` whose every command fails within ``timeout`` s.

    Raises:
        ValueError: ``url`` is not one of the forms of this module.
    """
    target = parse_redis_url(url)
    options = _options(timeout, connect_timeout=timeout)
    if target.kind == "server":
        return redis.Redis.from_url(target.url, **options)
    options.update(_auth(target))
    if target.kind == "sentinel":
        options["retry"] = Retry(NoBackoff(), 0)
        master = _sentinel(target, options).master_for(  # type: ignore[no-untyped-call]
            _service(target), redis_class=SentinelMaster, db=target.db, **_tls(target)
        )
        return cast(redis.Redis, master)
    return cast(redis.Redis, LazyCluster(target, options))


def async_client(url: str, *, timeout: float) -> redis.asyncio.Redis:
    """The ``redis.asyncio`` twin of :func:`sync_client`."""
    return _async_client(url, timeout=timeout, connect_timeout=timeout)


def subscriber_client(url: str, *, connect_timeout: float) -> redis.asyncio.Redis:
    """A client for one long-lived subscription: no read timeout, no hidden retries."""
    return _async_client(url, timeout=None, connect_timeout=connect_timeout, subscriber=True)


def _async_client(
    url: str, *, timeout: float | None, connect_timeout: float, subscriber: bool = False
) -> redis.asyncio.Redis:
    target = parse_redis_url(url)
    options = _options(timeout, connect_timeout=connect_timeout)
    options.update(_no_maintenance())
    if subscriber:
        # The subscription reconnects itself, so that it knows an outage happened.
        options["socket_keepalive"] = True
        options["retry"] = AsyncRetry(NoBackoff(), 0)
    if target.kind == "server":
        return redis.asyncio.Redis.from_url(target.url, **options)
    options.update(_auth(target))
    if target.kind == "sentinel":
        sentinel = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            [(host, port) for host, port in target.nodes],
            sentinel_kwargs=_sentinel_kwargs(target, connect_timeout),
        )
        options.setdefault("retry", AsyncRetry(NoBackoff(), 0))
        master = sentinel.master_for(
            _service(target),
            redis_class=AsyncSentinelMaster,
            db=target.db,
            **_tls(target),
            **options,
        )
        return cast(redis.asyncio.Redis, master)
    options.pop("retry_on_timeout")
    options["retry"] = AsyncRetry(NoBackoff(), 0)
    options.update(_tls(target))
    nodes = [redis.asyncio.cluster.ClusterNode(host, port) for host, port in target.nodes]
    return cast(redis.asyncio.Redis, AsyncCluster(startup_nodes=nodes, **options))


def _service(target: RedisTarget) -> str:
    assert target.service is not None
    return target.service


def _tls(target: RedisTarget) -> dict[str, Any]:
    return {"ssl": True} if target.tls else {}


def _sentinel_kwargs(target: RedisTarget, timeout: float) -> dict[str, Any]:
    return {"socket_timeout": timeout, "socket_connect_timeout": timeout, **_tls(target)}


def _sentinel(target: RedisTarget, options: dict[str, Any]) -> redis.sentinel.Sentinel:
    return redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        [(host, port) for host, port in target.nodes],
        sentinel_kwargs=_sentinel_kwargs(target, float(options["socket_connect_timeout"])),
        **options,
    )


async def ready(client: redis.asyncio.Redis) -> None:
    """Load a Cluster client's slot map (a no-op for other clients).

    ``pubsub()`` on a Cluster picks the node from the slot map, which a new
    client loads only with its first command.

    Raises:
        redis.ConnectionError: no node answered.
    """
    candidate: object = client  # typed as Redis, may be a Cluster client (module docstring)
    if isinstance(candidate, redis.asyncio.cluster.RedisCluster):
        try:
            await candidate.initialize()
        except RedisClusterException as error:
            raise ClusterUnavailable(str(error)) from None


def sharded_pubsub(client: object) -> tuple[bool, str]:
    """Whether topics use sharded pub/sub (``SSUBSCRIBE``/``SPUBLISH``) on ``client``, and why.

    True only for a Cluster client whose servers have the commands (Redis >= 7):
    there, classic pub/sub would copy every message to every node. Read from
    the command table that redis-py's Cluster client loads with its slot map
    (:func:`ready` for an asyncio client), so it costs no command; publishers
    and gateways on one Cluster reach the same answer.
    """
    if not isinstance(
        client, LazyCluster | redis.cluster.RedisCluster | redis.asyncio.cluster.RedisCluster
    ):
        return False, "not a Redis Cluster"
    parser = getattr(client, "commands_parser", None)
    commands = getattr(parser, "commands", None) or {}
    if "ssubscribe" in commands and "spublish" in commands:
        return True, "Redis Cluster with sharded pub/sub"
    return False, "the Cluster's servers have no sharded pub/sub (Redis < 7)"


class SentinelMaster(redis.Redis):
    """The master named by the sentinels; closing it closes the sentinel connections too."""

    def close(self) -> None:
        super().close()
        manager = getattr(self.connection_pool, "sentinel_manager", None)
        for sentinel in getattr(manager, "sentinels", ()):
            sentinel.close()


class AsyncSentinelMaster(redis.asyncio.Redis):
    """The async :class:`SentinelMaster`."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        manager = getattr(self.connection_pool, "sentinel_manager", None)
        for sentinel in getattr(manager, "sentinels", ()):
            await sentinel.aclose()


class AsyncCluster(redis.asyncio.cluster.RedisCluster):
    """redis-py's async Cluster client; "no node to ask" becomes a ConnectionError."""

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().execute_command(*args, **kwargs)
        except RedisClusterException as error:
            raise ClusterUnavailable(str(error)) from None


class SyncCluster(redis.cluster.RedisCluster):
    """redis-py's Cluster client; "no node to ask" becomes a ConnectionError."""

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().execute_command(*args, **kwargs)  # type: ignore[no-untyped-call]
        except RedisClusterException as error:
            raise ClusterUnavailable(str(error)) from None


class LazyCluster:
    """A :class:`SyncCluster` built on first use.

    redis-py's synchronous Cluster client asks a seed node for the slot map
    in its constructor; built lazily, an issuer starts (and answers 503)
    while the Cluster is unreachable, as it does with a single server, and
    picks it up once it answers.
    """

    def __init__(self, target: RedisTarget, options: dict[str, Any]) -> None:
        self._target = target
        self._options = options
        self._client: SyncCluster | None = None
        self._lock = threading.Lock()

    def _get(self) -> SyncCluster:
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    options = dict(self._options)
                    options.pop("retry_on_timeout")
                    try:
                        self._client = SyncCluster(
                            startup_nodes=[
                                redis.cluster.ClusterNode(h, p)  # type: ignore[no-untyped-call]
                                for h, p in self._target.nodes
                            ],
                            retry=Retry(NoBackoff(), 0),
                            **_tls(self._target),
                            **options,
                        )
                    except RedisClusterException as error:
                        raise ClusterUnavailable(str(error)) from None
                client = self._client
        return client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get(), name)

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def __enter__(self) -> LazyCluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LazyCluster(nodes={list(self._target.nodes)!r})"


def limits_storage_uri(redis_url: str) -> str:
    """The `limits` storage URI of a wsauth Redis URL (both services' rate limiters).

    `limits` reads ``redis://``, ``rediss://``, ``redis+sentinel://`` and
    ``redis+cluster://`` as wsauth does; ``unix://path`` is ``redis+unix://path``.
    """
    return (
        "redis+unix://" + redis_url.removeprefix("unix://")
        if redis_url.startswith("unix://")
        else redis_url
    )
