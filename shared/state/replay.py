"""The replay guard: each token's ``jti`` is recorded at issue and consumed once.

Redis keys (all with a TTL, single-key commands only so Redis Cluster works)::

    {prefix}jti:{jti} = {sub}     SET NX EX (token ttl + leeway)   at issue
                                  GETDEL                          at connect

A connect is accepted only when ``GETDEL`` returns the token's own ``sub``:
``GETDEL`` is atomic, so of any number of racing uses exactly one sees the
value. Any Redis error or timeout is :class:`~wsauth.shared.core.errors.Unavailable`:
the caller answers 503 and never accepts unchecked (fail closed).

:class:`ReplayGuard` is synchronous (the Flask issuer);
:class:`AsyncReplayGuard` uses ``redis.asyncio`` (the Tornado gateway), so
nothing blocks the IOLoop.

Automatic pipelining (gateway): every ``GETDEL`` asked for during one turn of
the event loop goes to Redis in one pipeline (one write, one round trip, one
pooled connection) instead of one command each. Under load this cuts the
client-side cost of a consume from about 80 to under 20 µs of CPU
(docs/performance.md). The gateway's revocation reads (``GET`` of the
records of :mod:`wsauth.shared.state.sessions`) ride in the same pipeline,
right after their handshake's ``GETDEL``. It changes nothing in the guarantees: each ``GETDEL``
is still its own atomic command (a non-transactional pipeline), so of racing
uses of one jti, in one batch or not, exactly one sees the value; and a batch
that fails or times out fails every consume in it with
:class:`~wsauth.shared.core.errors.Unavailable` (fail closed).
"""

from __future__ import annotations

import hmac
from typing import Any

import redis
import redis.asyncio

from wsauth.shared.core.errors import Replayed, Unavailable, WsAuthError
from wsauth.shared.core.tokens import Claims, Jti
from wsauth.shared.state import redis_conn
from wsauth.shared.state.batching import LoopBatcher


class JtiCollision(WsAuthError):
    """A freshly drawn 128-bit jti already exists: never expected; refuse to issue."""

    code = "jti_collision"
    status = 503


def jti_key(prefix: str, jti: Jti) -> str:
    return f"{prefix}jti:{jti}"


def sync_client(url: str, *, timeout: float) -> redis.Redis:
    """A redis-py client whose every command fails within ``timeout`` seconds.

    ``url`` is any form of :mod:`wsauth.shared.state.redis_conn` (one server, Sentinel, Cluster).
    """
    return redis_conn.sync_client(url, timeout=timeout)


def async_client(url: str, *, timeout: float) -> redis.asyncio.Redis:
    """The async twin of :func:`sync_client`.

    Maintenance notifications (a Redis Enterprise feature) are switched off:
    while on, redis-py 8's asyncio pool skips its "is this pooled connection
    still alive?" check, so after a Redis restart or failover the first
    command on each pooled connection failed (tests/security/test_redis_faults.py).
    """
    return redis_conn.async_client(url, timeout=timeout)


class ReplayGuard:
    """Records issued tokens (issuer side, synchronous)."""

    def __init__(self, client: redis.Redis, *, prefix: str, leeway: int) -> None:
        self._client = client
        self._prefix = prefix
        self._leeway = leeway

    def record(self, claims: Claims) -> None:
        """Store the token's jti with a TTL of its lifetime plus leeway.

        Raises:
            Unavailable: Redis did not answer in time.
            JtiCollision: the jti exists already (a broken random source).
        """
        ttl = claims.exp - claims.iat + self._leeway
        try:
            stored = self._client.set(
                jti_key(self._prefix, claims.jti), claims.sub, nx=True, ex=ttl
            )
        except redis.RedisError as error:
            raise Unavailable(type(error).__name__) from None
        if not stored:
            raise JtiCollision()

    def ping(self) -> bool:
        try:
            return bool(self._client.ping())
        except redis.RedisError:
            return False


class AsyncReplayGuard:
    """Consumes tokens exactly once (gateway side, ``redis.asyncio``, pipelined)."""

    def __init__(self, client: redis.asyncio.Redis, *, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        # The GETDELs of one loop turn go to Redis in one pipeline.
        self._batcher = LoopBatcher(client)

    async def consume(self, claims: Claims, *, also_get: tuple[str, ...] = ()) -> list[Any]:
        """Delete the jti; succeed only if it was there and belonged to ``sub``.

        ``also_get``: keys to ``GET`` in the same pipeline, right after the
        ``GETDEL`` (the gateway reads the revocation records this way: no
        extra round trip). Returns their values, in order (None: no such key).

        Raises:
            Replayed: already used, expired from Redis, or never issued here.
            Unavailable: Redis did not answer in time (fail closed).
        """
        owner, *values = await self._batcher.send(
            ("GETDEL", jti_key(self._prefix, claims.jti)), *(("GET", key) for key in also_get)
        )
        if owner is None:
            raise Replayed()
        expected = claims.sub.encode("utf-8")
        got = owner if isinstance(owner, bytes) else str(owner).encode("utf-8")
        if not hmac.compare_digest(got, expected):
            raise Replayed("jti belongs to another subject")
        return list(values)

    async def ping(self) -> bool:
        try:
            return bool(await self._client.ping())
        except (redis.RedisError, OSError):
            return False

    async def close(self) -> None:
        """Answer what is still queued (fail closed), then release the connections."""
        await self._batcher.close()
        await self._client.aclose()
