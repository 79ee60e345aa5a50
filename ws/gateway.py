"""One gateway node: its keys, its replay guard, its live connections, and the handshake.

:meth:`Gateway.authenticate` is the whole admission decision of ``GET /ws``,
with the request passed in as plain values (:class:`HandshakeRequest`), so the
Tornado handler in :mod:`wsauth.ws.app` only copies headers in and translates the
outcome. The steps, in order; a request refused at one step never reaches the
next, so a refused request leaves the token's ``jti`` in Redis::

    0. client not blocked (local table)      429 rate_limited (wsauth.ws.ratelimit)
    1. Origin allowlist (exact match)        403 origin_not_allowed
    2. well-formed WebSocket handshake       400 bad_request
       (GET, HTTP/1.1, no body, ASCII values read as Tornado reads them)
    3. exactly one token source              400 bad_request / multiple_tokens, 401 token_missing
    4. size cap (MAX_TOKEN_BYTES)            401 token_too_large
    5. signature and claims (offline)        401 <code of the failure>
    6. jti consumed on this node already     401 token_replayed (wsauth.ws.consumed, no Redis)
    7. GETDEL of the jti in Redis, and in    401 token_replayed, 503 redis_unavailable
       the same pipeline GET of the records  401 token_revoked
       revoked_sub:{sub} and revoked_sid:{sid}

Steps 1 to 6 are every refusal wsauth or Tornado can make before the upgrade
(Tornado's own checks in ``WebSocketHandler.get`` are a subset of step 2's,
read the same way): nothing refused reaches step 7, so it keeps its ``jti``.
Step 7's revocation read makes a revocation hold on every node for new
handshakes, also on a node that started after the revoke event or missed it
while unsubscribed; a token it refuses is spent (it was revoked anyway).

A resume ticket (:mod:`wsauth.shared.state.tickets`) instead of a token takes steps
0 to 3, then its own: shape (``ticket_malformed``), ``GETDEL`` of its record
(``ticket_replayed``), deadline (``ticket_expired``), key and revocation
records (``ticket_revoked``); 503 when Redis fails. A resumed connection keeps
the identity, scope and re-authentication deadline of the one it resumes.

After the upgrade the gateway owns the connection's lifetime (the close codes
are in :mod:`wsauth.ws.lifetime`): events from pub/sub (:mod:`wsauth.ws.fanout`:
the broadcast channel, plus the topics of the users and channels this node
holds, which the registry reports as held and released) are delivered by
:meth:`Gateway.dispatch` — a push to the user's connections on this node, a
channel message to the members (:meth:`Gateway.join`), a revocation closes the
matching ones with 4001 — and one heartbeat sweep per node pings silent
connections and closes idle ones with 4003.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis.asyncio

from wsauth.shared.core.channels import check_channel
from wsauth.shared.core.config import MAX_TOKEN_TTL, Settings
from wsauth.shared.core.errors import (
    InvalidToken,
    KeyRevoked,
    KeysetStale,
    Replayed,
    Revoked,
    TicketReplayed,
    TokenTooLarge,
    Unavailable,
)
from wsauth.shared.core.proxies import client_address, rate_key
from wsauth.shared.core.tokens import MAX_TOKEN_BYTES, Claims, Jti, verify
from wsauth.shared.state import keyset_reports
from wsauth.shared.state.events import (
    Event,
    Message,
    Push,
    ReportKeyset,
    Revoke,
    channel_topic,
    socket_message,
    user_topic,
)
from wsauth.shared.state.history import Entry, History, Position, Seam, message_frame, push_frame
from wsauth.shared.state.replay import AsyncReplayGuard, async_client
from wsauth.shared.state.sessions import revoked_session_key, revoked_subject_key
from wsauth.shared.state.tickets import (
    Resumable,
    Ticket,
    TicketStore,
    check_resumable,
    parse_ticket,
    ticket_ttl,
)
from wsauth.ws.consumed import ConsumedJtis
from wsauth.ws.fanout import Fanout, subscriber_client
from wsauth.ws.handshake import (
    TokenSource,
    check_origin,
    check_websocket_request,
    extract_token,
    push_since,
)
from wsauth.ws.keys import KeysetSource
from wsauth.ws.lifetime import (
    GOING_AWAY,
    IDLE,
    REASONS,
    REVOKED,
    Heartbeat,
    Liveness,
    RecentRevocations,
    heartbeat,
    max_age_delay,
    sweep_period,
)
from wsauth.ws.metrics import GatewayMetrics
from wsauth.ws.ratelimit import HandshakeLimiter
from wsauth.ws.registry import ConnectionRegistry, Kind

log = logging.getLogger("wsauth.gateway")

RESYNC_BATCH = 500
# A cap on the revoked kids remembered (a compromise is rare; a flood of events is not).
MAX_REVOKED_KIDS = 1000

__all__ = ["GOING_AWAY", "Admission", "Connection", "Gateway", "HandshakeRequest"]


class Connection(Protocol):
    """What the gateway needs of a live WebSocket connection."""

    liveness: Liveness

    @property
    def claims(self) -> Claims: ...

    def close(self, code: int | None = None, reason: str | None = None) -> None: ...

    def send(self, message: str) -> None:
        """Queue a text message; a connection that is closing drops it."""

    def send_ping(self) -> None:
        """Queue a ping frame; a connection that is closing ignores it."""


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
    # The socket peer and the X-Forwarded-For lines (wsauth.shared.core.proxies decides
    # who the client is).
    peer: str | None = None
    forwarded_for: list[str] = field(default_factory=list)
    # The request line's version and the body headers (a handshake has no body).
    http_version: str = "HTTP/1.1"
    content_length: str | None = None
    transfer_encoding: str | None = None
    extensions: str | None = None


@dataclass(frozen=True)
class Admission:
    """An accepted handshake: whose connection it is, and where the token came from.

    ``resumed`` holds the ticket's record when the connection resumes another;
    ``push_since`` the push position the client offered (``wsauth.since.*``).
    """

    claims: Claims
    source: str
    resumed: Resumable | None = None
    push_since: Position | None = None

    def deadline(self, *, now: float, max_age: int) -> float | None:
        """The wall-clock time by which the connection must re-authenticate (None: never).

        A resumed connection keeps the deadline of the one it resumes: a chain of
        resumes never postpones re-authentication.
        """
        if self.resumed is not None:
            return self.resumed.deadline
        return now + max_age_delay(max_age) if max_age else None


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
        redis_client: redis.asyncio.Redis | None = None,
        subscribe: bool = True,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.keys = keys
        self.replay = replay
        self.metrics = metrics or GatewayMetrics(keyset_status=self._keyset_status, clock=clock)
        self.registry: ConnectionRegistry[Any] = registry or ConnectionRegistry()
        self.registry.listener = self  # held / released: the topics to subscribe to
        self.clock = clock
        self.redis = redis_client or async_client(
            settings.effective_redis_url, timeout=settings.redis_timeout
        )
        self.handshake_limits = HandshakeLimiter.from_settings(
            settings, redis_client=self.redis, clock=clock
        )
        self.revocations = RecentRevocations(horizon=MAX_TOKEN_TTL + settings.leeway)
        # Signing keys revoked with `wsauth revoke --kid` since this process started.
        self.revoked_kids: set[str] = set()
        self.consumed = ConsumedJtis()
        self.fanout: Fanout | None = None
        if subscribe:
            self.fanout = Fanout(
                lambda: subscriber_client(
                    settings.effective_redis_url, connect_timeout=settings.redis_timeout
                ),
                prefix=settings.redis_prefix,
                confirm_timeout=max(1.0, settings.redis_timeout * 4),
                handle=self.dispatch,
                resubscribed=self.resync,
                on_state=self.metrics.subscribed,
            )
        self._sweeper: asyncio.Task[None] | None = None
        self.tickets = (
            TicketStore(self.redis, prefix=settings.redis_prefix) if settings.resume_ttl else None
        )
        self.history = History.from_settings(settings)
        self._renewer: asyncio.Task[None] | None = None
        # This process in the keyset reports (wsauth.shared.state.keyset_reports).
        self.host = socket.gethostname()
        self.node = f"{self.host}:{os.getpid()}:{secrets.token_hex(3)}"
        self._reports: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Subscribe to the events channel, start the heartbeat and ticket sweeps (once)."""
        if self.fanout is not None:
            await self.fanout.start()
        if self.settings.ping_interval and self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="wsauth-heartbeat")
        if self.tickets is not None and self._renewer is None:
            self._renewer = asyncio.create_task(self._renew_forever(), name="wsauth-tickets")

    def report_keyset(self, request_id: str) -> None:
        """Write this process's keyset report for ``wsauth keys gateways`` (in the background)."""
        document = keyset_reports.report(
            node=self.node,
            host=self.host,
            pid=os.getpid(),
            status=self._keyset_status(),
            revoked_kids=self.revoked_kids,
            now=self.clock(),
        )
        task = asyncio.get_running_loop().create_task(self._write_report(request_id, document))
        self._reports.add(task)
        task.add_done_callback(self._reports.discard)

    async def _write_report(self, request_id: str, document: dict[str, Any]) -> None:
        try:
            await keyset_reports.write_report(
                self.redis, self.settings.redis_prefix, request_id, document
            )
        except Exception as error:  # Redis down: the check counts this process as silent
            log.warning("keyset report not written: %s", type(error).__name__)

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
            http_version=request.http_version,
            content_length=request.content_length,
            transfer_encoding=request.transfer_encoding,
            extensions=request.extensions,
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
            KeysetStale: the keyset could not be refreshed for WSAUTH_JWKS_MAX_STALENESS (503).
        """
        now = self.clock()
        keys = self.keys
        keys.refresh(now)
        if self.keyset_stale(now):
            raise KeysetStale(f"keyset not refreshed since {keys.refreshed_at}")
        claims = verify(
            token,
            keyset=self.keys.keyset,
            issuer=self.settings.issuer,
            audience=self.settings.audience,
            now=now,
            leeway=self.settings.leeway,
            max_ttl=MAX_TOKEN_TTL,
        )
        if self.revoked_kids and claims.kid in self.revoked_kids:
            raise KeyRevoked(kid=claims.kid)
        return claims

    def authenticate(self, request: HandshakeRequest) -> Coroutine[Any, Any, Admission]:
        """Step 0 (:mod:`wsauth.ws.ratelimit`: a blocked client is refused first, and a 401 is
        counted against its client), then steps 1 to 6. Await the result.

        Raises (when awaited):
            WsAuthError: a subclass whose ``status`` and ``code`` are the answer.
        """
        limits = self.handshake_limits
        if limits is None:
            # Not a coroutine itself: the caller awaits steps 1 to 6 directly,
            # one coroutine frame fewer to resume after the GETDEL.
            return self._authenticate(request)
        return self._authenticate_limited(request, limits)

    async def _authenticate_limited(
        self, request: HandshakeRequest, limits: HandshakeLimiter
    ) -> Admission:
        client = client_address(request.peer, request.forwarded_for, self.settings.trusted_proxies)
        bucket = rate_key(client)
        limits.check(bucket)
        try:
            return await self._authenticate(request)
        except InvalidToken:
            await limits.count_refusal(bucket)
            raise

    async def _authenticate(self, request: HandshakeRequest) -> Admission:
        """Steps 1 to 7; on success the token is spent.

        Raises:
            WsAuthError: a subclass whose ``status`` and ``code`` are the answer.
        """
        found = self.check_request(request)
        since = push_since(request.subprotocol_headers)  # refused before anything is spent
        if found.is_ticket:
            return await self._resume(found.token, found.source, since)
        claims = self.verify(found.token)
        now = self.clock()
        if self.consumed.seen(claims.jti, now=now):
            raise Replayed("jti consumed on this node before")
        prefix = self.settings.redis_prefix
        records: tuple[str, ...] = (revoked_subject_key(prefix, claims.sub),)
        if claims.sid is not None:
            records += (revoked_session_key(prefix, claims.sid),)
        started = time.perf_counter()
        try:
            revoked = await self.replay.consume(claims, also_get=records)
        finally:
            self.metrics.redis("getdel", time.perf_counter() - started)
        self.consumed.add(claims.jti, until=claims.exp + self.settings.leeway, now=now)
        sub_at = revoked[0]
        if sub_at is not None and claims.iat < _as_time(sub_at):
            raise Revoked("sub revoked after the token was minted")
        if len(revoked) > 1 and revoked[1] is not None:
            raise Revoked("session revoked")
        return Admission(claims, found.source, push_since=since)

    async def _resume(self, value: str, source: str, since: Position | None) -> Admission:
        """The ticket steps of the module docstring; on success the ticket is spent.

        Raises:
            InvalidTicket: a subclass naming the failure.
            Unavailable: Redis did not answer in time (fail closed).
        """
        ticket = parse_ticket(value)
        if self.tickets is None:
            # Tickets off: none can exist (no Redis lookup for a guess).
            raise TicketReplayed("resume tickets are switched off")
        started = time.perf_counter()
        try:
            record = await self.tickets.consume(ticket)
            revocations = await self.tickets.revocations(record)
        finally:
            self.metrics.redis("getdel", time.perf_counter() - started)
        now = self.clock()
        self.keys.refresh(now)
        # A kid revoked with `wsauth revoke --kid` is no longer trusted for tickets either.
        trusted = self.keys.keyset.keys() - self.revoked_kids
        check_resumable(record, now=now, revocations=revocations, trusted_kids=trusted)
        return Admission(self._resumed_claims(record), source, resumed=record, push_since=since)

    def _resumed_claims(self, record: Resumable) -> Claims:
        """The claims a resumed connection goes by: those of its original token."""
        return Claims(
            iss=self.settings.issuer,
            aud=self.settings.audience,
            sub=record.sub,
            iat=record.iat,
            nbf=record.iat,
            exp=record.exp,
            jti=Jti("resumed"),
            kid=record.kid,  # type: ignore[arg-type]
            sid=record.sid,
            scope=record.scope,
        )

    def _record_of(self, connection: Connection) -> Resumable:
        """What a ticket of ``connection`` resumes now: its claims (after any refresh),
        its deadline and its subscriptions."""
        claims = connection.claims
        session = getattr(connection, "session", None)
        subscriptions = getattr(session, "subscriptions", None) or ()
        return Resumable(
            sub=claims.sub,
            sid=claims.sid,
            scope=claims.scope,
            kid=claims.kid,
            iat=claims.iat,
            exp=claims.exp,
            deadline=getattr(connection, "deadline", None),
            subscriptions=tuple(sorted(subscriptions)),
        )

    async def issue_ticket(self, connection: Connection) -> Ticket | None:
        """Record a resume ticket for an open connection; None when tickets are off, the
        deadline is too close, or Redis failed (the client then reconnects with a token).

        The connection's ``resume_key`` is set, so the renewal sweep keeps the ticket alive.
        """
        if self.tickets is None:
            return None
        record = self._record_of(connection)
        ttl = ticket_ttl(
            resume_ttl=self.settings.resume_ttl, deadline=record.deadline, now=self.clock()
        )
        if ttl <= 0:
            return None
        try:
            ticket, key = await self.tickets.issue(record, ttl=ttl)
        except Unavailable as error:
            log.warning("no resume ticket: %s", error.detail or error.code)
            return None
        connection.resume_key = key  # type: ignore[attr-defined]
        connection.resume_record = record  # type: ignore[attr-defined]
        return ticket

    def rewrite_ticket(self, connection: Connection) -> None:
        """Rewrite the ticket's record now (after a ``refresh``: new scope and deadline)."""
        key = getattr(connection, "resume_key", None)
        if self.tickets is None or key is None:
            return
        record = self._record_of(connection)
        ttl = ticket_ttl(
            resume_ttl=self.settings.resume_ttl, deadline=record.deadline, now=self.clock()
        )
        connection.resume_record = record  # type: ignore[attr-defined]
        task = asyncio.ensure_future(self.tickets.renew([(key, ttl, record)]))
        task.add_done_callback(_ignore_failure)

    async def renew_tickets(self, now: float) -> int:
        """One renewal pass over every live connection's ticket, pipelined: ``EXPIRE``,
        or ``SET XX`` when what it resumes changed (subscriptions, a refresh).

        Returns how many tickets were still in Redis.

        Raises:
            redis.RedisError, OSError: Redis failed (the caller logs it).
        """
        if self.tickets is None:
            return 0
        renewals: list[tuple[str, int, Resumable | None]] = []
        for connection in self.registry:
            key = getattr(connection, "resume_key", None)
            if key is None:
                continue
            record = self._record_of(connection)
            changed = record != getattr(connection, "resume_record", None)
            if changed:
                connection.resume_record = record
            ttl = ticket_ttl(resume_ttl=self.settings.resume_ttl, deadline=record.deadline, now=now)
            renewals.append((key, ttl, record if changed else None))
        return await self.tickets.renew(renewals) if renewals else 0

    async def _renew_forever(self) -> None:
        period = max(1.0, self.settings.resume_ttl / 3)
        while True:
            await asyncio.sleep(period)
            try:
                await self.renew_tickets(self.clock())
            except Exception as error:  # Redis down: tickets expire, clients use tokens
                log.warning("renewing resume tickets failed: %s", type(error).__name__)

    def liveness(self) -> dict[str, Any]:
        """The ``/healthz`` document: ``broken`` only when a background task that must
        run forever (heartbeat sweep, events subscription) has died — a restart helps
        then; Redis being down is a readiness matter, not a reason to restart."""
        broken = []
        if self._sweeper is not None and self._sweeper.done():
            broken.append("heartbeat")
        if self.fanout is not None and not self.fanout.running:
            broken.append("pubsub")
        return {"status": "broken", "broken": broken} if broken else {"status": "ok"}

    async def readiness(self) -> dict[str, Any]:
        """The ``/readyz`` document: degraded without Redis, without any key, or
        without the events subscription (then pushes and revocations would be lost)."""
        started = time.perf_counter()
        redis_ok = await self.replay.ping()
        self.metrics.redis("ping", time.perf_counter() - started)
        keyset = self._keyset_status()
        checks = {
            "redis": redis_ok,
            "keyset": keyset["keys"] > 0 and not keyset["stale"],
            "pubsub": self.fanout is None or self.fanout.subscribed,
        }
        document = {
            "status": "ok" if all(checks.values()) else "degraded",
            "checks": checks,
            "keyset": keyset,
            "connections": len(self.registry),
        }
        if self.fanout is not None:
            # Classic or sharded topics (wsauth.ws.fanout), and why: a Cluster of
            # Redis < 7 has no sharded pub/sub and falls back to classic.
            document["pubsub_mode"] = self.fanout.mode
            document["pubsub_mode_reason"] = self.fanout.mode_reason
            document["topics"] = len(self.fanout.topics)
        return document

    def keyset_stale(self, now: float) -> bool:
        """True once the keyset in force was last confirmed more than
        ``jwks_max_staleness`` ago (a keyset never confirmed counts as fresh until then
        after start: there are no keys in it, and every token is refused anyway)."""
        refreshed = self.keys.refreshed_at
        if refreshed is None:
            return False
        return now - refreshed > self.settings.jwks_max_staleness

    def _keyset_status(self) -> dict[str, Any]:
        now = self.clock()
        self.keys.refresh(now)
        status = self.keys.status()
        status["stale"] = self.keyset_stale(now)
        status["node"] = self.node
        return status

    # --- after the upgrade --------------------------------------------------------

    def admit(self, connection: Connection) -> bool:
        """Register a just-opened connection, unless a revocation seen lately covers it.

        Closes the gap between a token consumed just before a revocation and its
        connection opening just after the revoke event went by.
        """
        claims = connection.claims
        if claims.kid in self.revoked_kids or self.revocations.revoked(
            sub=claims.sub, sid=claims.sid, iat=claims.iat, now=self.clock()
        ):
            connection.close(REVOKED, REASONS[REVOKED])
            return False
        self.registry.add(connection, sub=claims.sub, sid=claims.sid)
        return True

    def join(self, connection: Connection, channel: str) -> None:
        """From now on, send ``connection`` every message of ``channel`` (idempotent).

        A connection that is not registered (closed, or never admitted) joins
        nothing. Authorization (the scope) is the caller's decision; this only
        checks the name. A connection that closes leaves all its channels.

        Raises:
            BadChannel: ``channel`` is outside the channel grammar.
        """
        self.registry.join(connection, check_channel(channel))

    def leave(self, connection: Connection, channel: str) -> None:
        """Stop sending ``connection`` the messages of ``channel`` (idempotent).

        Raises:
            BadChannel: ``channel`` is outside the channel grammar.
        """
        self.registry.leave(connection, check_channel(channel))

    def held(self, kind: Kind, name: str) -> None:
        """The registry's first connection of a user or member of a channel: subscribe."""
        if self.fanout is not None:
            self.fanout.hold(self._topic(kind, name))

    def released(self, kind: Kind, name: str) -> None:
        """The registry's last connection of a user or member of a channel left: unsubscribe."""
        if self.fanout is not None:
            self.fanout.release(self._topic(kind, name))

    def _topic(self, kind: Kind, name: str) -> str:
        prefix = self.settings.redis_prefix
        return user_topic(prefix, name) if kind == "user" else channel_topic(prefix, name)

    def when_synced(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` once Redis has applied every join, leave, open and close made
        so far (see :meth:`synced`); at once when nothing is pending."""
        if self.fanout is None:
            callback()
        else:
            self.fanout.when_synced(callback)

    async def synced(self) -> None:
        """Return once Redis has applied every join, leave, open and close made so far:
        from then on, a message published to a channel joined (or a push to a user
        connected) before the call reaches this node. Returns at once while the
        subscription is down (nothing would)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def finish() -> None:
            if not done.done():
                done.set_result(None)

        self.when_synced(finish)
        await done

    def dispatch(self, event: Event) -> int:
        """Apply an event to this node's connections; return how many it reached."""
        if isinstance(event, Push):
            self.metrics.events.labels("push").inc()
            return self.deliver(event)
        if isinstance(event, ReportKeyset):
            self.metrics.events.labels("report_keyset").inc()
            self.report_keyset(event.id)
            return 0
        if isinstance(event, Message):
            self.metrics.events.labels("message").inc()
            return self.deliver_message(event)
        self.metrics.events.labels("revoke").inc()
        return self.revoke(event)

    def deliver(self, push: Push) -> int:
        """Send ``push`` to every live connection of its ``sub`` here (none: a no-op)."""
        connections = self.registry.connections_of(push.sub)
        if connections:
            _send_through_seams(connections, push, _push_seam_of)
            self.metrics.pushes.inc(len(connections))
        return len(connections)

    def deliver_message(self, message: Message) -> int:
        """Send ``message`` to every connection here that joined its channel."""
        members = self.registry.members(message.channel)
        if members:
            _send_through_seams(
                members, message, lambda connection: _seam_of(connection, message.channel)
            )
            self.metrics.pushes.inc(len(members))
        return len(members)

    def revoke(self, revocation: Revoke) -> int:
        """Close the connections of the revoked sub or sid with 4001; remember it a while.

        A revoked ``kid``: close every connection authenticated with that key, and
        refuse its tokens (``key_revoked``) for as long as this process runs.
        """
        if revocation.kid is not None:
            return self._revoke_kid(revocation.kid)
        self.revocations.add(
            sub=revocation.sub, sid=revocation.sid, at=revocation.at, now=self.clock()
        )
        if revocation.sid is not None:
            matched = self.registry.connections_of_session(revocation.sid)
        else:
            assert revocation.sub is not None
            matched = self.registry.connections_of(revocation.sub)
        _close_all(matched, REVOKED)
        self._discard_tickets(matched)
        if matched:
            log.info(
                "revoked %s=%s: closed %d connection(s)",
                "sid" if revocation.sid is not None else "sub",
                revocation.sid if revocation.sid is not None else revocation.sub,
                len(matched),
            )
        return len(matched)

    def _revoke_kid(self, kid: str) -> int:
        if len(self.revoked_kids) < MAX_REVOKED_KIDS:
            self.revoked_kids.add(kid)
        matched = [c for c in self.registry if c.claims.kid == kid]
        _close_all(matched, REVOKED)
        log.warning("revoked kid=%s: closed %d connection(s)", kid, len(matched))
        return len(matched)

    async def resync(self) -> int:
        """Close (4001) connections revoked while this node was not subscribed.

        Reads the revocation records of :mod:`wsauth.shared.state.sessions`, one GET per
        distinct sub and sid, pipelined. Returns how many connections it closed.

        Raises:
            redis.RedisError, OSError: Redis failed (the caller logs it).
        """
        connections = list(self.registry)
        prefix = self.settings.redis_prefix
        keys: set[str] = set()
        for connection in connections:
            claims = connection.claims
            keys.add(revoked_subject_key(prefix, claims.sub))
            if claims.sid is not None:
                keys.add(revoked_session_key(prefix, claims.sid))
        records: dict[str, float] = {}
        ordered = sorted(keys)
        for start in range(0, len(ordered), RESYNC_BATCH):
            batch = ordered[start : start + RESYNC_BATCH]
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in batch:
                    pipe.get(key)
                values = await pipe.execute()
            for key, value in zip(batch, values, strict=True):
                if value is not None:
                    records[key] = _as_time(value)
        revoked = []
        for connection in connections:
            claims = connection.claims
            sub_at = records.get(revoked_subject_key(prefix, claims.sub))
            sid_revoked = (
                claims.sid is not None and revoked_session_key(prefix, claims.sid) in records
            )
            if sid_revoked or (sub_at is not None and claims.iat < sub_at):
                revoked.append(connection)
        _close_all(revoked, REVOKED)
        self._discard_tickets(revoked)
        if revoked:
            log.info("revocations missed while unsubscribed: closed %d connection(s)", len(revoked))
        return len(revoked)

    def _discard_tickets(self, connections: Iterable[Connection]) -> None:
        """Delete the tickets of revoked connections (the revocation records refuse them
        anyway: this only frees them sooner)."""
        keys = [key for c in connections if (key := getattr(c, "resume_key", None)) is not None]
        if self.tickets is None or not keys:
            return
        task = asyncio.ensure_future(self.tickets.discard(keys))
        task.add_done_callback(_ignore_failure)

    def sweep(self, now: float) -> int:
        """One heartbeat pass over every connection; return how many were closed as idle."""
        interval, timeout = self.settings.ping_interval, self.settings.ping_timeout
        idle = 0
        for connection in self.registry:
            action = heartbeat(connection.liveness, now=now, interval=interval, timeout=timeout)
            if action is Heartbeat.PING:
                connection.liveness.ping_sent = now
                connection.send_ping()
            elif action is Heartbeat.IDLE:
                connection.close(IDLE, REASONS[IDLE])
                idle += 1
        return idle

    async def _sweep_forever(self) -> None:
        loop = asyncio.get_running_loop()
        period = sweep_period(self.settings.ping_interval, self.settings.ping_timeout)
        while True:
            await asyncio.sleep(period)
            try:
                self.sweep(loop.time())
            except Exception:  # a bug must not stop the heartbeats of every connection
                log.exception("heartbeat sweep failed")

    async def close_connections(
        self, *, code: int = GOING_AWAY, reason: str = "going away", timeout: float = 5.0
    ) -> int:
        """Close every live connection with ``code`` and wait (up to ``timeout``) for them.

        Returns how many connections were still open after the wait.
        """
        _close_all(self.registry, code, reason)
        deadline = time.monotonic() + timeout
        while len(self.registry) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return len(self.registry)

    async def close(self) -> None:
        """Stop the subscription and the sweep; release the Redis connection pools."""
        if self.fanout is not None:
            await self.fanout.stop()
        for task in (self._sweeper, self._renewer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._sweeper = self._renewer = None
        # Reports in flight end on their own within the Redis timeout (a write
        # cancelled halfway would leave its connection checked out, and aclose() waiting).
        if self._reports:
            await asyncio.wait(set(self._reports), timeout=2 * self.settings.redis_timeout + 1)
        if self.tickets is not None:
            await self.tickets.close()
        await self.keys.close()
        if self.handshake_limits is not None:
            await self.handshake_limits.close()
        await self.replay.close()
        await self.redis.aclose()


def _close_all(connections: Iterable[Connection], code: int, reason: str | None = None) -> None:
    for connection in list(connections):
        connection.close(code, reason or REASONS.get(code, ""))


def _send_through_seams(
    connections: Iterable[Connection],
    event: Push | Message,
    seam_of: Callable[[Connection], Seam | None],
) -> None:
    """Send ``event`` to each connection; through its seam where it has one, so a
    recovering (or recovered) stream is delivered by offset, never twice."""
    frame = socket_message(event)
    live: Entry | None = None
    for connection in connections:
        seam = seam_of(connection) if event.offset else None
        if seam is None or (live is None and (live := _history_entry(event)) is None):
            connection.send(frame)
            continue
        for entry in seam.live(live):
            if entry is live:
                connection.send(frame)
            elif isinstance(event, Push):
                connection.send(push_frame(entry))
            else:
                connection.send(message_frame(event.channel, entry))


def _history_entry(event: Push | Message) -> Entry | None:
    """The event as a history entry (offset, epoch, data as JSON), if it has an offset."""
    if event.offset is None or event.epoch is None or not event.offset.isdigit():
        return None
    data = json.dumps(event.data, separators=(",", ":"), ensure_ascii=False)
    return Entry(int(event.offset), event.epoch, data)


def _push_seam_of(connection: Connection) -> Seam | None:
    """The seam of a connection's pushes (:class:`wsauth.ws.app.GatewaySocket`), if any."""
    return getattr(connection, "push_seam", None)


def _seam_of(connection: Connection, channel: str) -> Seam | None:
    seams = getattr(getattr(connection, "session", None), "seams", None)
    return seams.get(channel) if seams else None


def _ignore_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("writing resume tickets failed: %s", type(task.exception()).__name__)


def _as_time(value: bytes | str) -> float:
    try:
        return float(value)
    except ValueError:
        return float("inf")  # unreadable record: treat every token as older
