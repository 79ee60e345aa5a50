"""One gateway node: its keys, its replay guard, its live connections, and the handshake.

:meth:`Gateway.authenticate` is the whole admission decision of ``GET /ws``,
with the request passed in as plain values (:class:`HandshakeRequest`), so the
Tornado handler in :mod:`ws.app` only copies headers in and translates the
outcome. The steps, in order; a request refused at one step never reaches the
next, so a refused request leaves the token's ``jti`` in Redis::

    1. Origin allowlist                      403 origin_not_allowed
    2. well-formed WebSocket handshake       400 bad_request
    3. exactly one token source              400 bad_request / multiple_tokens, 401 token_missing
    4. size cap (MAX_TOKEN_BYTES)            401 token_too_large
    5. signature and claims (offline)        401 <code of the failure>
    6. GETDEL of the jti in Redis            401 token_replayed, 503 redis_unavailable
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.config import MAX_TOKEN_TTL, Settings
from shared.errors import TokenTooLarge
from shared.replay import AsyncReplayGuard
from shared.tokens import MAX_TOKEN_BYTES, Claims, verify
from ws.handshake import TokenSource, check_origin, check_websocket_request, extract_token
from ws.keys import KeysetSource
from ws.registry import ConnectionRegistry

GOING_AWAY = 1001


class Connection(Protocol):
    """What the gateway needs of a live WebSocket connection."""

    def close(self, code: int | None = None, reason: str | None = None) -> None: ...


@dataclass(frozen=True)
class HandshakeRequest:
    """The parts of an opening handshake that admission looks at."""

    method: str
    host: str | None
    origin: str | None
    sec_fetch_site: str | None
    upgrade: str | None
    connection: str | None
    version: str | None
    key: str | None
    subprotocol_headers: list[str] = field(default_factory=list)
    authorization_headers: list[str] = field(default_factory=list, repr=False)
    query_tokens: list[str] = field(default_factory=list, repr=False)


@dataclass(frozen=True)
class Admission:
    """An accepted handshake: whose connection it is, and where the token came from."""

    claims: Claims
    source: str


class Gateway:
    """The state of one gateway node; the Tornado application holds one."""

    def __init__(
        self,
        settings: Settings,
        *,
        keys: KeysetSource,
        replay: AsyncReplayGuard,
        registry: ConnectionRegistry[Any] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.keys = keys
        self.replay = replay
        self.registry: ConnectionRegistry[Any] = registry or ConnectionRegistry()
        self.clock = clock

    def check_request(self, request: HandshakeRequest) -> TokenSource:
        """Steps 1 to 4: everything that needs neither keys nor Redis.

        Raises:
            OriginNotAllowed, BadRequest, MultipleTokens, TokenMissing, TokenTooLarge.
        """
        check_origin(
            request.origin, self.settings.allowed_origins, sec_fetch_site=request.sec_fetch_site
        )
        check_websocket_request(
            method=request.method,
            upgrade=request.upgrade,
            connection=request.connection,
            version=request.version,
            key=request.key,
            host=request.host,
        )
        found = extract_token(
            subprotocol_headers=request.subprotocol_headers,
            authorization_headers=request.authorization_headers,
            query_tokens=request.query_tokens,
            query_token_enabled=self.settings.query_token,
        )
        if len(found.token) > MAX_TOKEN_BYTES:
            raise TokenTooLarge(length=len(found.token))
        return found

    def verify(self, token: str) -> Claims:
        """Step 5: the offline token check against the current keyset.

        Raises:
            InvalidToken: a subclass naming the failure.
        """
        now = self.clock()
        self.keys.refresh(now)
        return verify(
            token,
            keyset=self.keys.keyset,
            issuer=self.settings.issuer,
            audience=self.settings.audience,
            now=now,
            leeway=self.settings.leeway,
            max_ttl=MAX_TOKEN_TTL,
        )

    async def authenticate(self, request: HandshakeRequest) -> Admission:
        """Steps 1 to 6; on success the token is spent.

        Raises:
            WsAuthError: a subclass whose ``status`` and ``code`` are the answer.
        """
        found = self.check_request(request)
        claims = self.verify(found.token)
        await self.replay.consume(claims)
        return Admission(claims, found.source)

    async def health(self) -> dict[str, Any]:
        """The ``/healthz`` document: degraded without Redis or without any key."""
        self.keys.refresh(self.clock())
        redis_ok = await self.replay.ping()
        keyset = self.keys.status()
        healthy = redis_ok and keyset["keys"] > 0
        return {
            "status": "ok" if healthy else "degraded",
            "redis": redis_ok,
            "keyset": keyset,
            "connections": len(self.registry),
        }

    async def close_connections(
        self, *, code: int = GOING_AWAY, reason: str = "going away", timeout: float = 5.0
    ) -> int:
        """Close every live connection with ``code`` and wait (up to ``timeout``) for them.

        Returns how many connections were still open after the wait.
        """
        for connection in self.registry:
            connection.close(code, reason)
        deadline = time.monotonic() + timeout
        while len(self.registry) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return len(self.registry)

    async def close(self) -> None:
        """Release the Redis connection pool."""
        await self.replay.close()
