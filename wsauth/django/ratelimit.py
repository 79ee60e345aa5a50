"""``WSAUTH_RATE_LIMIT_TOKENS`` for the Django app: tokens per user, counted in Redis.

The same limit, scope and bucket as the built-in issuer's (``tokens-principal``,
``user:<sub>``, fixed windows of the `limits` library), so a user's budget is one
whichever app mints. Counted after the user is known and before anything is
signed; Redis down is a 503 (fail closed), as for the token itself.
"""

from __future__ import annotations

import math
import time
from typing import Any

from limits import RateLimitItem, parse_many
from limits.errors import StorageError
from limits.storage import RedisStorage, Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter

from wsauth.shared.core.config import Settings
from wsauth.shared.core.errors import RateLimited, Unavailable
from wsauth.shared.state.redis_conn import limits_storage_uri, parse_redis_url

SCOPE = "tokens-principal"


class TokenLimit:
    """The per-user token limit of ``settings``; :meth:`from_settings` gives None when off."""

    def __init__(self, items: list[RateLimitItem], storage: Storage) -> None:
        self.items = items
        self.strategy = FixedWindowRateLimiter(storage)

    @classmethod
    def from_settings(cls, settings: Settings, *, redis_client: Any) -> TokenLimit | None:
        """Share ``redis_client``'s pool (a plain server), else let `limits` connect."""
        if not settings.rate_limit_tokens:
            return None
        url = settings.effective_redis_url
        options: dict[str, Any] = {
            "key_prefix": f"{settings.redis_prefix}ratelimit",
            "wrap_exceptions": True,
        }
        storage: Storage
        if parse_redis_url(url).kind == "server":
            storage = RedisStorage(
                "redis://", connection_pool=redis_client.connection_pool, **options
            )
        else:  # Sentinel and Cluster clients have no one pool
            options["socket_timeout"] = options["socket_connect_timeout"] = settings.redis_timeout
            found = storage_from_string(limits_storage_uri(url), **options)
            assert isinstance(found, Storage)  # a scheme without async+ gives the sync class
            storage = found
        return cls(parse_many(settings.rate_limit_tokens), storage)

    def check(self, sub: str) -> None:
        """Count one token for ``sub``.

        Raises:
            RateLimited: a limit is exceeded (``retry_after``: the window's end).
            Unavailable: Redis did not answer.
        """
        bucket = f"user:{sub}"
        try:
            for item in self.items:
                if not self.strategy.hit(item, bucket, SCOPE):
                    reset, _remaining = self.strategy.get_window_stats(item, bucket, SCOPE)
                    raise RateLimited(
                        f"{SCOPE} limit {item} exceeded",
                        retry_after=max(1, math.ceil(reset - time.time())),
                    )
        except StorageError as error:
            raise Unavailable(f"rate limit storage: {type(error.storage_error).__name__}") from None
