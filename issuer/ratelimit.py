"""Rate limits of the issuer: flask-limiter, counting in the issuer's own Redis.

========================  =====================================  ===============================
setting                   counted per                            where
========================  =====================================  ===============================
``rate_limit_tokens_per_ip``  client IP (IPv6: /64)              ``POST /ws-token``,
                                                                 ``POST /api/tokens`` (one shared
                                                                 bucket), before authentication
``rate_limit_tokens``     principal: ``user:<name>`` or          the same two, after authentication
                          ``client:<client id>``                 (:func:`limit_principal`)
``rate_limit_login``      client IP, and the username tried      ``POST /login`` (the username check
                          (hashed)                               runs before the password check)
``rate_limit_push``       principal: ``user:<name>`` or          ``POST /push-self``,
                          ``client:<client id>``                 ``POST /api/push``,
                                                                 ``POST /api/publish``, after
                                                                 authentication (:func:`limit_push`)
``rate_limit_per_ip``     client IP (IPv6: /64)                  ``POST /logout``,
                                                                 ``POST /push-self``,
                                                                 ``POST /api/push``,
                                                                 ``POST /api/publish``,
                                                                 ``GET /readyz`` (one bucket)
========================  =====================================  ===============================

So every endpoint that makes the issuer do work per request (sign, write
or publish in Redis, ask Redis) can be limited; ``/healthz``, the JWKS (a
cached file) and the pages cost no Redis command (the index page mints
through ``ws_token()``, which is counted as a token).

Per-IP limits are flask-limiter decorators put on the app's view functions
by :func:`install`; per-principal ones are checked in the view once the
principal is known (:func:`limit_principal`, :func:`limit_login_name`), with
the same limiter: flask-limiter's strategy and storage do all the counting.
A principal limit runs only after the credentials were checked, so nobody can
spend someone else's budget by sending wrong credentials under their name.

Counters are fixed windows (``limits``' ``incr_expire`` Lua script: ``INCRBY``,
then ``EXPIRE`` on the first hit), so every key has a TTL of the window;
keys are ``{prefix}ratelimit:LIMITER/<bucket>/<scope>/<amount>/<multiples>/<unit>``.
A fixed window lets a client send up to twice the limit around a window's
edge; the cost is one Redis command per check.

Refusals are 429 ``{"error": "rate_limited"}`` with ``Retry-After`` (seconds
until the window ends). If Redis cannot answer, the limiter fails closed like
the rest of the issuer: 503 ``redis_unavailable``.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from typing import Any, cast

from flask import Flask, Response, current_app, request
from flask_limiter import Limiter, RateLimitExceeded
from limits import RateLimitItem, parse_many
from limits.errors import StorageError

from wsauth.issuer import errors
from wsauth.shared.core.config import Settings
from wsauth.shared.core.errors import RateLimited, Unavailable
from wsauth.shared.core.proxies import client_address, rate_key
from wsauth.shared.state.redis_conn import limits_storage_uri, parse_redis_url

__all__ = ["EXTENSION", "install", "limit_login_name", "limit_principal", "limit_push"]

EXTENSION = "wsauth.ratelimit"
TOKENS_IP_SCOPE = "tokens-ip"
LOGIN_IP_SCOPE = "login-ip"
REQUESTS_IP_SCOPE = "requests-ip"
# Endpoints under rate_limit_per_ip (those under another per-IP limit are not repeated).
PER_IP_ENDPOINTS = (
    "issuer.logout",
    "issuer.push_self",
    "issuer.api_push",
    "issuer.api_publish",
    "issuer.readyz",
)


class IssuerLimits:
    """The app's :class:`~flask_limiter.Limiter` and the limits the views check themselves."""

    def __init__(self, limiter: Limiter, settings: Settings) -> None:
        self.limiter = limiter
        self.settings = settings
        self.tokens = _items(settings.rate_limit_tokens)
        self.login = _items(settings.rate_limit_login)
        self.push = _items(settings.rate_limit_push)

    def check(self, items: list[RateLimitItem], bucket: str, scope: str) -> None:
        """Count one hit of ``bucket`` against each of ``items``.

        Raises:
            RateLimited: a limit is exceeded (its ``retry_after`` is the window's end).
            Unavailable: Redis did not answer (fail closed).
        """
        strategy = self.limiter.limiter
        try:
            for item in items:
                if not strategy.hit(item, bucket, scope):
                    reset, _remaining = strategy.get_window_stats(item, bucket, scope)
                    raise RateLimited(
                        f"{scope} limit {item} exceeded", retry_after=_seconds_until(reset)
                    )
        except StorageError as error:
            raise Unavailable(f"rate limit storage: {type(error.storage_error).__name__}") from None


def _items(value: str | None) -> list[RateLimitItem]:
    return parse_many(value) if value else []


def _seconds_until(reset: float) -> int:
    return max(1, math.ceil(reset - time.time()))


def _limits(app: Flask | None = None) -> IssuerLimits | None:
    """The limits of ``app`` (default: this request's); None in an app built without
    :func:`install`."""
    found: IssuerLimits | None = (app or current_app).extensions.get(EXTENSION)
    return found


def client_bucket() -> str:
    """The rate-limit bucket of this request's client (``WSAUTH_TRUSTED_PROXIES`` rule)."""
    limits = _limits()
    assert limits is not None
    client = client_address(
        request.remote_addr,
        request.headers.getlist("X-Forwarded-For"),
        limits.settings.trusted_proxies,
    )
    return rate_key(client)


def limit_principal(kind: str, name: str, *, app: Flask) -> None:
    """Count a token for an authenticated principal (``kind`` ``user`` or ``client``) of
    ``app``, the app handling this request (the views look it up once).

    Raises:
        RateLimited, Unavailable: see :meth:`IssuerLimits.check`.
    """
    limits = _limits(app)
    if limits is not None and limits.tokens:
        limits.check(limits.tokens, f"{kind}:{name}", "tokens-principal")


def limit_push(kind: str, name: str) -> None:
    """Count a push by an authenticated principal (``kind`` ``user`` or ``client``).

    Raises:
        RateLimited, Unavailable: see :meth:`IssuerLimits.check`.
    """
    limits = _limits()
    if limits is not None and limits.push:
        limits.check(limits.push, f"{kind}:{name}", "push-principal")


def limit_login_name(username: str) -> None:
    """Count a login attempt for ``username`` (hashed: any string a client sends is bounded).

    Raises:
        RateLimited, Unavailable: see :meth:`IssuerLimits.check`.
    """
    limits = _limits()
    if limits is not None and limits.login:
        digest = hashlib.sha256(username.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        limits.check(limits.login, f"name:{digest}", "login-name")


def _on_exceeded(error: RateLimitExceeded) -> Response:
    """flask-limiter's breach → our 429 with ``Retry-After``."""
    limits = _limits()
    current = limits.limiter.current_limit if limits is not None else None
    retry_after = _seconds_until(current.reset_at) if current is not None else 1
    return on_rate_limited(
        RateLimited(f"limit {error.limit.limit} exceeded", retry_after=retry_after)
    )


def on_rate_limited(error: RateLimited) -> Response:
    response = errors.handle_wsauth_error(error)
    response.headers["Retry-After"] = str(error.retry_after)
    return response


def _on_storage_error(error: StorageError) -> Response:
    return errors.handle_wsauth_error(
        Unavailable(f"rate limit storage: {type(error.storage_error).__name__}")
    )


storage_uri = limits_storage_uri


def install(app: Flask, settings: Settings, *, redis_client: Any) -> None:
    """Put the per-IP limits on the views and register the 429/503 translations.

    ``redis_client`` is the issuer's Redis client: the limiter shares its
    connection pool, so the same timeouts apply (fail closed within
    ``WSAUTH_REDIS_TIMEOUT``).

    With every limit off, nothing is installed: flask-limiter's per-request
    hook costs about 170 µs even when it has no limit to check
    (docs/performance.md). Called once per app, after every blueprint is
    registered (the Flask extension's ``init_app`` does it).
    """
    if not (
        settings.rate_limit_tokens
        or settings.rate_limit_tokens_per_ip
        or settings.rate_limit_login
        or settings.rate_limit_push
        or settings.rate_limit_per_ip
    ):
        return
    options: dict[str, Any] = {
        "key_prefix": f"{settings.redis_prefix}ratelimit",
        "wrap_exceptions": True,
    }
    if parse_redis_url(settings.effective_redis_url).kind == "server":
        options["connection_pool"] = redis_client.connection_pool
    else:  # Sentinel and Cluster clients have no one pool: limits builds its own from the URL
        options["socket_timeout"] = options["socket_connect_timeout"] = settings.redis_timeout
    limiter = Limiter(
        client_bucket,
        app=app,
        storage_uri=storage_uri(settings.effective_redis_url),
        storage_options=cast(dict[str, str | int], options),
        strategy="fixed-window",
        headers_enabled=False,  # X-RateLimit-* would cost two more Redis commands per request
        swallow_errors=False,
        in_memory_fallback_enabled=False,
    )
    app.extensions[EXTENSION] = IssuerLimits(limiter, settings)
    if settings.rate_limit_tokens_per_ip:
        per_ip = limiter.shared_limit(settings.rate_limit_tokens_per_ip, scope=TOKENS_IP_SCOPE)
        _decorate(app, "wsauth.ws_token", per_ip)
        _decorate(app, "issuer.api_tokens", per_ip)
    if settings.rate_limit_login:
        _decorate(
            app, "issuer.login", limiter.limit(settings.rate_limit_login, scope=LOGIN_IP_SCOPE)
        )
    if settings.rate_limit_per_ip:
        requests_ip = limiter.shared_limit(settings.rate_limit_per_ip, scope=REQUESTS_IP_SCOPE)
        for endpoint in PER_IP_ENDPOINTS:
            if endpoint in app.view_functions:
                _decorate(app, endpoint, requests_ip)
    app.register_error_handler(RateLimitExceeded, _on_exceeded)
    app.register_error_handler(RateLimited, on_rate_limited)
    app.register_error_handler(StorageError, _on_storage_error)


def _decorate(app: Flask, endpoint: str, decorator: Callable[[Any], Any]) -> None:
    # A host app with the Flask extension has /ws-token only.
    if endpoint in app.view_functions:
        app.view_functions[endpoint] = decorator(app.view_functions[endpoint])
