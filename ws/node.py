"""One gateway node's state for any Tornado application: keys, Redis, subscription, connections.

:class:`GatewayNode` is what a handler built on :class:`wsauth.ws.handler.WsAuthMixin`
needs. It is built once per process from settings and started and stopped on
the event loop that serves the handlers::

    node = GatewayNode.from_settings()      # the WSAUTH_* environment
    app = tornado.web.Application([(r"/chat", ChatHandler, dict(node=node))])
    await node.start()       # subscribe to the events, start the heartbeat sweep
    ...
    await node.close()       # close every connection with 1001, stop, release Redis

The built-in gateway (:func:`wsauth.ws.app.make_app`) builds its node the same way.
Keys come from ``WSAUTH_JWKS_URL`` when set (fetched in the background, see
:mod:`wsauth.ws.jwks_url`), else from ``{keys dir}/jwks.json``; either way they
are trusted for ``settings.issuer`` only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from wsauth.shared.core.config import Settings, load_settings
from wsauth.shared.core.errors import ConfigError
from wsauth.shared.state.replay import AsyncReplayGuard, async_client
from wsauth.ws.gateway import GOING_AWAY, Gateway
from wsauth.ws.handler import install_log_redaction
from wsauth.ws.jwks_url import MIN_INTERVAL, UrlKeysetSource
from wsauth.ws.keys import FileKeysetSource, KeysetSource
from wsauth.ws.lifetime import REASONS
from wsauth.ws.metrics import GatewayMetrics
from wsauth.ws.registry import ConnectionRegistry

__all__ = ["GatewayNode"]

SHUTDOWN_TIMEOUT = 5.0


class GatewayNode:
    """The per-process state behind every :class:`~wsauth.ws.handler.WsAuthMixin` handler.

    One node per process (its pub/sub subscription and heartbeat sweep serve every
    route that mounts the mixin with it). ``gateway`` is the
    :class:`wsauth.ws.gateway.Gateway` that does the work.
    """

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    @classmethod
    def from_settings(
        cls,
        settings: Settings | None = None,
        *,
        keyset_source: KeysetSource | None = None,
        replay: AsyncReplayGuard | None = None,
        registry: ConnectionRegistry[Any] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> GatewayNode:
        """Build a node; every part defaults to what ``settings`` say (default: the
        ``WSAUTH_*`` environment variables, :func:`wsauth.shared.core.config.load_settings`).

        Opens no connection yet: Redis is reached lazily and by :meth:`start`.

        Raises:
            ConfigError: a setting is invalid (the message names it), or
                ``keyset_source`` trusts keys for an issuer other than ``settings.issuer``.
        """
        if settings is None:
            settings = load_settings()
        if keyset_source is None:
            if settings.jwks_url:
                url_source = UrlKeysetSource(
                    settings.jwks_url,
                    issuer=settings.issuer,
                    min_interval=min(MIN_INTERVAL, settings.jwks_cache),
                    default_max_age=settings.jwks_cache,
                    clock=clock,
                )
                url_source.start()  # only once a loop runs; else the first refresh() starts it
                keyset_source = url_source
            else:
                keyset_source = FileKeysetSource(settings.keys_dir / "jwks.json", now=clock())
        # verify() requires iss == settings.issuer: keys fetched for another issuer
        # would accept nothing, or worse, be trusted for the wrong issuer.
        source_issuer = getattr(keyset_source, "issuer", settings.issuer)
        if source_issuer != settings.issuer:
            raise ConfigError(
                "WSAUTH_ISSUER", f"the keyset source trusts keys for {source_issuer!r} only"
            )
        if replay is None:
            replay = AsyncReplayGuard(
                async_client(settings.effective_redis_url, timeout=settings.redis_timeout),
                prefix=settings.redis_prefix,
            )
        install_log_redaction()
        return cls(
            Gateway(settings, keys=keyset_source, replay=replay, registry=registry, clock=clock)
        )

    @property
    def settings(self) -> Settings:
        return self.gateway.settings

    @property
    def metrics(self) -> GatewayMetrics:
        """The node's Prometheus metrics (``metrics.render(accept)`` gives the text format)."""
        return self.gateway.metrics

    def __len__(self) -> int:
        """How many connections this node holds."""
        return len(self.gateway.registry)

    async def start(self) -> None:
        """Subscribe to the events channel and start the heartbeat sweep; call it on the
        loop that serves the handlers, before accepting connections."""
        if isinstance(self.gateway.keys, UrlKeysetSource):
            self.gateway.keys.start()
        await self.gateway.start()

    async def close_connections(
        self, *, code: int = GOING_AWAY, timeout: float = SHUTDOWN_TIMEOUT
    ) -> int:
        """Close every connection (default 1001, going away) and wait up to ``timeout``
        seconds for them; return how many were still open."""
        return await self.gateway.close_connections(
            code=code, reason=REASONS.get(code, ""), timeout=timeout
        )

    async def close(self, *, timeout: float = SHUTDOWN_TIMEOUT) -> None:
        """Close every connection with 1001, then stop the subscription and the sweep and
        release the Redis pools. Stop accepting (``HTTPServer.stop()``) first."""
        await self.close_connections(timeout=timeout)
        await self.gateway.close()

    def liveness(self) -> dict[str, Any]:
        """The ``/healthz`` document (see :meth:`wsauth.ws.gateway.Gateway.liveness`)."""
        return self.gateway.liveness()

    async def readiness(self) -> dict[str, Any]:
        """The ``/readyz`` document (see :meth:`wsauth.ws.gateway.Gateway.readiness`)."""
        return await self.gateway.readiness()
