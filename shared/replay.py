"""The replay guard: each token's ``jti`` is recorded at issue and consumed once.

Redis keys (all with a TTL, single-key commands only so Redis Cluster works)::

    {prefix}jti:{jti} = {sub}     SET NX EX (token ttl + leeway)   at issue
                                  GETDEL                          at connect

A connect is accepted only when ``GETDEL`` returns the token's own ``sub``:
``GETDEL`` is atomic, so of any number of racing uses exactly one sees the
value. Any Redis error or timeout is :class:`~shared.errors.Unavailable`:
the caller answers 503 and never accepts unchecked (fail closed).

:class:`ReplayGuard` is synchronous (the Flask issuer);
:class:`AsyncReplayGuard` uses ``redis.asyncio`` (the Tornado gateway), so
nothing blocks the IOLoop.
"""

from __future__ import annotations

import hmac
from typing import Any

import redis
import redis.asyncio

from shared.errors import Replayed, Unavailable, WsAuthError
from shared.tokens import Claims, Jti


class JtiCollision(WsAuthError):
    """A freshly drawn 128-bit jti already exists: never expected; refuse to issue."""

    code = "jti_collision"
    status = 503


def jti_key(prefix: str, jti: Jti) -> str:
    return f"{prefix}jti:{jti}"


def _client_options(timeout: float) -> dict[str, Any]:
    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "health_check_interval": 0,
        # A failed command is reported, never retried behind our back: a retried
        # GETDEL after a lost reply would turn a success into a refusal.
        "retry_on_timeout": False,
    }


def sync_client(url: str, *, timeout: float) -> redis.Redis:
    """A redis-py client whose every command fails within ``timeout`` seconds."""
    return redis.Redis.from_url(url, **_client_options(timeout))


def async_client(url: str, *, timeout: float) -> redis.asyncio.Redis:
    return redis.asyncio.Redis.from_url(url, **_client_options(timeout))


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
    """Consumes tokens exactly once (gateway side, ``redis.asyncio``)."""

    def __init__(self, client: redis.asyncio.Redis, *, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    async def consume(self, claims: Claims) -> None:
        """Delete the jti; succeed only if it was there and belonged to ``sub``.

        Raises:
            Replayed: already used, expired from Redis, or never issued here.
            Unavailable: Redis did not answer in time (fail closed).
        """
        try:
            owner = await self._client.getdel(jti_key(self._prefix, claims.jti))
        except (redis.RedisError, OSError) as error:
            raise Unavailable(type(error).__name__) from None
        if owner is None:
            raise Replayed()
        expected = claims.sub.encode("utf-8")
        got = owner if isinstance(owner, bytes) else str(owner).encode("utf-8")
        if not hmac.compare_digest(got, expected):
            raise Replayed("jti belongs to another subject")

    async def ping(self) -> bool:
        try:
            return bool(await self._client.ping())
        except (redis.RedisError, OSError):
            return False

    async def close(self) -> None:
        await self._client.aclose()
