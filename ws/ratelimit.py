"""The gateway's per-IP limit on refused handshakes (``WSAUTH_RATE_LIMIT_HANDSHAKES``).

What is counted, and when, is chosen for cost:

- **Checked first, locally.** Before anything else in a handshake — before
  the token is even looked for, before any crypto or Redis — the client's
  bucket is looked up in this process's table of blocked buckets (a dict
  lookup). A blocked client gets 429 ``rate_limited`` with ``Retry-After``
  and costs nothing more, however fast it sends.
- **Counted only on a 401, in Redis.** A handshake refused as 401 (missing,
  forged, expired, replayed token...) counts one hit in a fixed window of
  ``limits`` (the engine of flask-limiter; ``async+redis``, ``redis.asyncio``
  underneath), shared by every gateway process. The hit over the limit is
  itself answered 429 and blocks the bucket here until the window ends; other
  processes learn it on their next refusal from that client.

So an accepted handshake pays nothing for the limit (no extra Redis round
trip: every accepted handshake spends a token, and tokens are limited where
they are issued), a refused one pays one ``EVALSHA`` (``INCRBY`` + ``EXPIRE``
on the first hit, so every counter has a TTL of one window), and a blocked
client pays nothing. bench/abuse.py measures both sides.

Buckets are :func:`wsauth.shared.core.proxies.rate_key` of the client address
(``WSAUTH_TRUSTED_PROXIES`` rule; IPv6 by /64). If Redis cannot count, the
refusal stays a 401 and the failure is logged: nothing is ever let in by the
limiter being down, since the handshake's own ``GETDEL`` then fails closed.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import redis
import redis.asyncio
from limits import RateLimitItem, parse_many
from limits.aio.storage import RedisStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string

from wsauth.shared.core.config import Settings
from wsauth.shared.core.errors import RateLimited
from wsauth.shared.state.redis_conn import limits_storage_uri, parse_redis_url

log = logging.getLogger("wsauth.gateway")

__all__ = ["HandshakeLimiter"]

SCOPE = "handshake-refusals"
# Blocked buckets remembered by one process; past this the oldest is forgotten
# (it is then counted in Redis again, which blocks it again: nothing is lost).
MAX_BLOCKED = 10_000


class HandshakeLimiter:
    """Refused handshakes per client bucket: counted in Redis, enforced from a local table."""

    def __init__(
        self,
        items: list[RateLimitItem],
        storage: Storage,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.items = items
        self.storage = storage
        self.owns_client = False  # True when limits built its own client (Sentinel, Cluster)
        self.strategy = FixedWindowRateLimiter(storage)
        self.clock = clock
        self._blocked: dict[str, float] = {}

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        redis_client: redis.asyncio.Redis,
        clock: Callable[[], float] = time.time,
    ) -> HandshakeLimiter | None:
        """The limiter ``settings`` ask for, sharing ``redis_client``'s pool; None when off."""
        if not settings.rate_limit_handshakes:
            return None
        url = settings.effective_redis_url
        storage: Storage
        if parse_redis_url(url).kind == "server":
            storage = RedisStorage(
                "async+redis://",  # the pool below decides where and how to connect
                implementation="redispy",
                key_prefix=f"{settings.redis_prefix}ratelimit",
                wrap_exceptions=True,
                connection_pool=redis_client.connection_pool,  # type: ignore[arg-type]
            )
        else:  # Sentinel and Cluster clients have no one pool: limits builds its own
            async_storage = storage_from_string(
                "async+" + limits_storage_uri(url),
                implementation="redispy",
                key_prefix=f"{settings.redis_prefix}ratelimit",
                wrap_exceptions=True,
                socket_timeout=settings.redis_timeout,
                socket_connect_timeout=settings.redis_timeout,
            )
            assert isinstance(async_storage, Storage)  # the async+ scheme gives the aio class
            limiter = cls(parse_many(settings.rate_limit_handshakes), async_storage, clock=clock)
            limiter.owns_client = True
            return limiter
        return cls(parse_many(settings.rate_limit_handshakes), storage, clock=clock)

    async def close(self) -> None:
        """Release the client that `limits` built for itself (a shared pool is the gateway's)."""
        client = getattr(getattr(self.storage, "bridge", None), "storage", None)
        if self.owns_client and client is not None:
            await client.aclose()

    def check(self, bucket: str) -> None:
        """Refuse a blocked bucket (local: no Redis).

        Raises:
            RateLimited: the bucket is over its limit until the window ends.
        """
        until = self._blocked.get(bucket)
        if until is None:
            return
        left = until - self.clock()
        if left <= 0:
            del self._blocked[bucket]
            return
        raise RateLimited("blocked after too many refused handshakes", retry_after=math.ceil(left))

    async def count_refusal(self, bucket: str) -> None:
        """Count one refused (401) handshake of ``bucket`` in Redis.

        Raises:
            RateLimited: this refusal was over the limit; the bucket is now blocked.
        """
        try:
            for item in self.items:
                if not await self.strategy.hit(item, bucket, SCOPE):
                    reset, _remaining = await self.strategy.get_window_stats(item, bucket, SCOPE)
                    self._block(bucket, reset)
                    raise RateLimited(
                        f"over {item} refused handshakes",
                        retry_after=math.ceil(reset - self.clock()),
                    )
        except (StorageError, redis.RedisError, OSError) as error:
            log.warning("rate limit not counted: %s", type(error).__name__)

    def _block(self, bucket: str, until: float) -> None:
        if len(self._blocked) >= MAX_BLOCKED:
            now = self.clock()
            for key in [key for key, end in self._blocked.items() if end <= now]:
                del self._blocked[key]
            while len(self._blocked) >= MAX_BLOCKED:
                del self._blocked[next(iter(self._blocked))]
        self._blocked[bucket] = until
