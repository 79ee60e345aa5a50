"""The Tornado application of the gateway: ``GET /ws``, ``/healthz``, ``/readyz``, ``/metrics``.

The handlers are thin adapters around :class:`wsauth.ws.gateway.Gateway`.
:class:`GatewaySocket` is the public handler mixin of host applications,
:class:`wsauth.ws.handler.WsAuthMixin` (one code path): it authenticates
*before* the upgrade in ``get()``: a refused request gets an HTTP answer
(``{"error": code}``, JSON) and no upgrade; an accepted one goes on to
Tornado's own upgrade. The node's state is a :class:`wsauth.ws.node.GatewayNode`.

After the upgrade the gateway registers the connection under its ``sub``
(and ``sid``) and sends one text message, ``{"type": "welcome", "sub":
<sub>, "resume": <ticket>, "resume_ttl": <seconds>}`` (plus ``expires_in`` when
``max_connection_age`` is set; ``resume`` only while tickets are on and Redis
took the ticket; ``"resumed": true`` when the connection resumed with a
ticket, :mod:`wsauth.shared.state.tickets`); pushes
then arrive as ``{"type": "push", "data": ...}``. What the client sends is
protocol v1 (docs/reference/protocol.md): :class:`wsauth.ws.session.Session`
runs each command, and every frame also counts as a sign of life; anything
larger than ``max_message_size`` closes the connection (1009). The other
close codes — 4001 revoked, 4002 reauthenticate (``max_connection_age``, or
``refresh`` in band), 4003 idle, 4004 too slow (``max_pending_bytes``), 1001
shutdown, 1011 internal error — are in :mod:`wsauth.ws.lifetime`.

An application built by :func:`make_app` must be started on its loop with
``await app.gateway.start()`` (pub/sub and heartbeats; ``app.node.start()`` is the
same) and stopped with ``await app.gateway.close()``;
:class:`wsauth.ws.server.GatewayServer` does both.

Logging (logger ``wsauth.gateway``): one line per request (event
``request``) with method, path (never the query string), status, duration,
client IP, request id and, for a refusal, ``reason=<code>``. No line ever
holds a token: Tornado's own request summary (which prints the URI) is
replaced. Every answer carries ``X-Request-ID``: the request's own when it is
harmless (:func:`wsauth.shared.logs.request_id_from`), else a fresh one.

``/healthz`` is liveness (the process works), ``/readyz`` readiness (Redis,
keys, events subscription), ``/metrics`` the Prometheus metrics of
:mod:`wsauth.ws.metrics` — restrict it to the scraper at the proxy.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import tornado.ioloop
import tornado.web
import tornado.websocket

from wsauth.shared.core.config import Settings
from wsauth.shared.core.errors import Unavailable
from wsauth.shared.core.tokens import Claims
from wsauth.shared.state.history import Entry, Position, Seam, catch_up, position_fields, push_frame
from wsauth.shared.state.replay import AsyncReplayGuard
from wsauth.ws.gateway import Admission, Gateway
from wsauth.ws.handler import (
    JsonAnswers,
    RedactMalformedRequests,
    WsAuthMixin,
    access_log,
    install_log_redaction,
)
from wsauth.ws.keys import KeysetSource
from wsauth.ws.lifetime import INTERNAL_ERROR, REASONS, max_age_delay
from wsauth.ws.node import GatewayNode
from wsauth.ws.protocol import welcome
from wsauth.ws.registry import ConnectionRegistry
from wsauth.ws.session import Limits, OnSend, Session

# Moved to wsauth.ws.handler (the public mixin's module); still importable from here.
__all__ = [
    "GatewayApplication",
    "GatewaySocket",
    "RedactMalformedRequests",
    "access_log",
    "application_settings",
    "install_log_redaction",
    "make_app",
    "server_options",
]

log = logging.getLogger("wsauth.gateway")

MAX_HEADER_SIZE = 16 * 1024
MAX_BODY_SIZE = 16 * 1024
BODY_TIMEOUT = 10.0


class GatewayApplication(tornado.web.Application):
    """A Tornado application that carries its :class:`GatewayNode` (and its :class:`Gateway`)."""

    node: GatewayNode
    gateway: Gateway


class _JsonHandler(JsonAnswers, tornado.web.RequestHandler):
    """Answers errors as ``{"error": code}`` and never logs the request URI."""

    @property
    def gateway(self) -> Gateway:
        application = self.application
        assert isinstance(application, GatewayApplication)
        return application.gateway


class NotFoundHandler(_JsonHandler):
    def prepare(self) -> None:
        super().prepare()
        raise tornado.web.HTTPError(404)


class _ProbeHandler(_JsonHandler):
    def answer(self, document: dict[str, Any]) -> None:
        self.set_status(200 if document["status"] == "ok" else 503)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(document))


class HealthHandler(_ProbeHandler):
    """``GET /healthz`` (liveness): 200 while the process works, 503 once a background task died."""

    def get(self) -> None:
        self.answer(self.gateway.liveness())


class ReadyHandler(_ProbeHandler):
    """``GET /readyz`` (readiness): 200 when Redis answers, a keyset is loaded and the
    events subscription is up, else 503; the body says which check failed."""

    async def get(self) -> None:
        self.answer(await self.gateway.readiness())


class MetricsHandler(_JsonHandler):
    """``GET /metrics``: the Prometheus text format (OpenMetrics when the scraper asks)."""

    def get(self) -> None:
        body, content_type = self.gateway.metrics.render(self.request.headers.get("Accept"))
        self.set_header("Content-Type", content_type)
        self.set_header("Cache-Control", "no-store")
        self.finish(body)


class GatewaySocket(WsAuthMixin, tornado.websocket.WebSocketHandler):
    """``GET /ws``: authenticate, then upgrade; one connection of one ``sub``.

    The built-in gateway's handler is the public mixin (:mod:`wsauth.ws.handler`)
    plus protocol v1 (:mod:`wsauth.ws.session`): the welcome message (with a
    resume ticket, :mod:`wsauth.shared.state.tickets`), then each client frame
    is a command (docs/reference/protocol.md). A host handler that wants
    protocol v1 subclasses this class (``wsauth.tornado.ProtocolHandler``) and
    may set ``send_handler`` to take ``send`` messages itself.
    """

    # Protocol v1 (wsauth.ws.session): set in open() once the connection is registered.
    session: Session | None = None
    # The hook of a host handler that takes `send` messages itself instead of the inbox
    # stream: a method taking an InboxMessage, returning None or an awaitable.
    send_handler: OnSend | None = None
    # Frames (pushes, messages) that arrive between the registration and the welcome
    # wait here, so the welcome is always the first frame (None: none waits).
    _before_welcome: list[str] | None = None
    # With WSAUTH_HISTORY_USERS: the seam of the user's pushes, which holds them from
    # the registration until the welcome's read of the user's stream (Gateway.deliver).
    push_seam: Seam | None = None

    def _register(self) -> bool:
        if self._admitted is None:
            self._before_welcome = []
            history = self.gateway.history
            if history is not None and history.covers_user(self.claims.sub):
                self.push_seam = Seam()  # before the user's topic delivers anything
        return super()._register()

    async def open(self, *args: Any, **kwargs: Any) -> None:
        # Runs once the mixin registered the connection and the node's topic
        # subscriptions include the user's (so a push after the welcome arrives).
        try:
            self.session = Session(
                self,
                self.gateway,
                claims=self.claims,
                limits=Limits.from_settings(self.gateway.settings),
                now=_loop_time,
                on_refreshed=self._refreshed,
                on_send=self.send_handler,
            )
        except Exception:
            log.exception("opening a connection failed")
            self.close(INTERNAL_ERROR, REASONS[INTERNAL_ERROR])
            return
        extra: dict[str, Any] = {}
        resumed = self.admission.resumed if self.admission is not None else None
        if resumed is not None:
            # The channels without history come back before the welcome (and so are in
            # the new ticket); the others wait for the client's subscribe with since.
            extra["subscriptions"] = self.session.restore(resumed.subscriptions)
            if extra["subscriptions"]:
                await self.gateway.synced()
                if self.client_gone:
                    return
        if self.gateway.tickets is not None:
            # The welcome waits for the ticket's SET (batched with the others of this
            # loop turn), so a ticket the client holds is always one Redis knows.
            # Tornado reads no frame before open returns.
            ticket = await self.gateway.issue_ticket(self)
            if self.client_gone:
                return
            if ticket is not None:
                extra["resume"] = ticket
                extra["resume_ttl"] = self.gateway.settings.resume_ttl
        if resumed is not None:
            extra["resumed"] = True
        since = self.admission.push_since if self.admission is not None else None
        pushes: dict[str, Any] | None = None
        recovered: list[Entry] = []
        if self.push_seam is not None:
            pushes, recovered = await self._recover_pushes(self.push_seam, since)
            if self.client_gone:
                return
        elif since is not None:
            pushes = {"recovered": False, "reason": "no_history"}
        if pushes is not None:
            extra["push"] = pushes
        waiting, self._before_welcome = self._before_welcome, None
        self.send(welcome(self.claims.sub, expires_in=self.expires_in, **extra))
        for message in waiting or ():
            self.send(message)
        for entry in recovered:
            self.send(push_frame(entry))

    async def _recover_pushes(
        self, seam: Seam, since: Position | None
    ) -> tuple[dict[str, Any], list[Entry]]:
        """Read the user's stream: the welcome's ``push`` member, and the pushes to send
        after it — the missed ones, then those the seam held (by offset, none twice)."""
        gateway, history = self.gateway, self.gateway.history
        assert history is not None  # a push seam exists only with it
        try:
            stream = await history.read_pushes_since(
                gateway.redis, self.claims.sub, since.offset if since is not None else 2**53
            )
        except Unavailable:
            log.warning("push history unreadable sub=%s: Redis did not answer", self.claims.sub)
            held = seam.start((), epoch=None, after=0)  # live pushes flow; nothing recovered
            if since is None:
                return {}, held
            return {"recovered": False, "reason": "redis_unavailable"}, held
        plan = catch_up(since, stream)
        entries = seam.start(plan.entries, epoch=stream.epoch, after=plan.after)
        return {**plan.fields, **position_fields(seam, stream)}, entries

    def send(self, message: str) -> None:
        if self._before_welcome is not None:
            self._before_welcome.append(message)
            return
        super().send(message)

    def _refreshed(self, claims: Claims) -> float | None:
        """A ``refresh`` was accepted: the connection now runs on ``claims``."""
        assert self.admission is not None
        self.admission = Admission(claims, self.admission.source)
        if self.client_gone:
            return None
        now = self.gateway.clock()
        max_age = self.gateway.settings.max_connection_age
        deadline = now + max_age_delay(max_age) if max_age else None
        self.expires_in = self._schedule_max_age(
            tornado.ioloop.IOLoop.current(), deadline=deadline, now=now
        )
        self.gateway.rewrite_ticket(self)  # its new scope and deadline, at once
        return self.expires_in

    def on_message(self, message: str | bytes) -> Awaitable[None] | None:
        """A protocol v1 command; Tornado awaits what it returns before it reads the
        next frame, so a connection's commands run in order."""
        if self.session is None:
            return None
        return self.session.receive(message)

    def on_close(self) -> None:
        if self.session is not None:
            self.session.closed()


def _loop_time() -> float:
    """The clock of the command rate limit (asyncio's monotonic loop time)."""
    return asyncio.get_running_loop().time()


def application_settings(settings: Settings) -> dict[str, Any]:
    """Tornado application settings that follow from wsauth settings."""
    return {
        "websocket_max_message_size": settings.max_message_size,
        # Heartbeats are the gateway's own sweep (wsauth.ws.lifetime): Tornado's would
        # close a silent connection with 1000 instead of 4003.
        "websocket_ping_interval": None,
        "log_function": access_log,
        "default_handler_class": NotFoundHandler,
        "compress_response": False,
    }


def server_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``tornado.httpserver.HTTPServer``."""
    return {
        "idle_connection_timeout": float(settings.idle_timeout),
        "max_header_size": MAX_HEADER_SIZE,
        "max_body_size": MAX_BODY_SIZE,
        "body_timeout": BODY_TIMEOUT,
        "xheaders": False,
    }


def make_app(
    settings: Settings,
    *,
    keyset_source: KeysetSource | None = None,
    replay: AsyncReplayGuard | None = None,
    registry: ConnectionRegistry[Any] | None = None,
    clock: Callable[[], float] = time.time,
) -> GatewayApplication:
    """Build the gateway application; defaults come from ``settings``.

    Raises:
        ConfigError: ``keyset_source`` trusts keys for an issuer other than ``settings.issuer``.
    """
    node = GatewayNode.from_settings(
        settings, keyset_source=keyset_source, replay=replay, registry=registry, clock=clock
    )
    application = GatewayApplication(
        [
            (r"/ws", GatewaySocket, {"node": node}),
            (r"/healthz", HealthHandler),
            (r"/readyz", ReadyHandler),
            (r"/metrics", MetricsHandler),
        ],
        **application_settings(settings),
    )
    application.node = node
    application.gateway = node.gateway
    return application
