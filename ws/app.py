"""The Tornado application of the gateway: ``GET /ws``, ``/healthz``, ``/readyz``, ``/metrics``.

The handlers are thin adapters around :class:`wsauth.ws.gateway.Gateway`:
:class:`GatewaySocket` authenticates *before* the upgrade by overriding
``get()``: a refused request gets an HTTP answer (``{"error": code}``, JSON)
and no upgrade; an accepted one goes on to Tornado's own upgrade.

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
``await app.gateway.start()`` (pub/sub and heartbeats) and stopped with
``await app.gateway.close()``; :class:`wsauth.ws.server.GatewayServer` does both.

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
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

import tornado.ioloop
import tornado.web
import tornado.websocket

from wsauth.shared.core.config import Settings
from wsauth.shared.core.errors import (
    ConfigError,
    InvalidToken,
    RateLimited,
    TokenMissing,
    WsAuthError,
)
from wsauth.shared.core.tokens import Claims
from wsauth.shared.logs import (
    REQUEST_ID_HEADER,
    current_request_id,
    event_fields,
    printable,
    request_id_from,
)
from wsauth.shared.state.replay import AsyncReplayGuard, async_client
from wsauth.ws.gateway import Admission, Gateway, HandshakeRequest
from wsauth.ws.handshake import QUERY_PARAMETER, check_origin, select_subprotocol
from wsauth.ws.jwks_url import MIN_INTERVAL, UrlKeysetSource
from wsauth.ws.keys import FileKeysetSource, KeysetSource
from wsauth.ws.lifetime import (
    INTERNAL_ERROR,
    REASONS,
    REAUTHENTICATE,
    TOO_SLOW,
    Liveness,
    max_age_delay,
)
from wsauth.ws.protocol import welcome
from wsauth.ws.registry import ConnectionRegistry
from wsauth.ws.session import Limits, OnSend, Outbox, Session

log = logging.getLogger("wsauth.gateway")

MAX_HEADER_SIZE = 16 * 1024
MAX_BODY_SIZE = 16 * 1024
BODY_TIMEOUT = 10.0


class GatewayApplication(tornado.web.Application):
    """A Tornado application that carries its :class:`Gateway`."""

    gateway: Gateway


class _JsonHandler(tornado.web.RequestHandler):
    """Answers errors as ``{"error": code}`` and never logs the request URI."""

    # Set by a refusal; read by the access log line.
    wsauth_reason: str | None = None
    wsauth_detail: str | None = None
    request_id: str | None = None

    @property
    def gateway(self) -> Gateway:
        application = self.application
        assert isinstance(application, GatewayApplication)
        return application.gateway

    def prepare(self) -> None:
        self.request_id = request_id_from(self.request.headers.get(REQUEST_ID_HEADER))
        current_request_id.set(self.request_id)  # this request's task only
        self.set_header(REQUEST_ID_HEADER, self.request_id)

    def refuse(self, error: WsAuthError) -> None:
        """Answer ``error`` as HTTP: its status, ``{"error": code}``, no upgrade."""
        self.wsauth_reason = error.code
        self.wsauth_detail = error.detail or None
        self.set_status(error.status)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        if isinstance(error, InvalidToken):
            # RFC 6750 §3.1: no error code when the request had no credentials.
            challenge = (
                "Bearer" if isinstance(error, TokenMissing) else 'Bearer error="invalid_token"'
            )
            self.set_header("WWW-Authenticate", challenge)
        if error.status == 503:
            self.set_header("Retry-After", "1")
        if isinstance(error, RateLimited):
            self.set_header("Retry-After", str(error.retry_after))
        self.finish(json.dumps({"error": error.code}))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        code = {404: "not_found", 405: "method_not_allowed"}.get(
            status_code, "bad_request" if status_code < 500 else "internal_error"
        )
        self.wsauth_reason = code
        self.set_header("Content-Type", "application/json")
        if self.request_id is not None:  # send_error cleared the headers
            self.set_header(REQUEST_ID_HEADER, self.request_id)
        self.finish(json.dumps({"error": code}))

    def _request_summary(self) -> str:
        return f"{self.request.method} {printable(self.request.path)} ({self.request.remote_ip})"

    def log_exception(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Tornado's version logs repr(request), which holds the URI (and so a
        # ?ws_token=). HTTPErrors are expected answers: their status is in the
        # access line already.
        if isinstance(value, tornado.web.HTTPError):
            return
        log.error("uncaught exception %s", self._request_summary(), exc_info=(typ, value, tb))  # type: ignore[arg-type]


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


class GatewaySocket(_JsonHandler, tornado.websocket.WebSocketHandler):
    """``GET /ws``: authenticate, then upgrade; one connection of one ``sub``."""

    admission: Admission | None = None
    # Set once the client is gone, even before the upgrade: Tornado calls
    # on_close at most once, so a connection that closed while Redis was
    # being asked must never be registered afterwards.
    client_gone: bool = False
    liveness: Liveness
    _max_age_timer: object | None = None
    # Wall-clock time by which the connection must re-authenticate (None: never).
    deadline: float | None = None
    # Messages that arrived while the welcome waited for its ticket (None: none waits).
    _before_welcome: list[str] | None = None
    _expires_in: float | None = None
    # For wsauth_gateway_connections_closed_total: counted once per registered connection.
    _registered: bool = False
    _close_sent: int | None = None
    # Protocol v1 (wsauth.ws.session): set in open() once the connection is registered.
    session: Session | None = None
    outbox: Outbox | None = None
    # The hook of a host handler that takes `send` messages itself instead of the inbox
    # stream: a method taking an InboxMessage, returning None or an awaitable.
    send_handler: OnSend | None = None

    async def get(self, *args: Any, **kwargs: Any) -> None:
        try:
            self.admission = await self.gateway.authenticate(self._handshake_request())
        except WsAuthError as error:
            self.refuse(error)
            return
        if self.client_gone:
            self.wsauth_reason = "client_closed"
            self.set_status(499, "Client Closed Request")
            return
        await super().get(*args, **kwargs)

    def _handshake_request(self) -> HandshakeRequest:
        headers = self.request.headers
        return HandshakeRequest(
            method=self.request.method or "",
            host=headers.get("Host"),
            origin=headers.get("Origin"),
            sec_fetch_site=headers.get("Sec-Fetch-Site"),
            upgrade=headers.get("Upgrade"),
            connection=headers.get("Connection"),
            version=headers.get("Sec-WebSocket-Version"),
            key=headers.get("Sec-WebSocket-Key"),
            subprotocol_headers=headers.get_list("Sec-WebSocket-Protocol"),
            authorization_headers=headers.get_list("Authorization"),
            # Decoded here rather than with get_query_arguments, whose error
            # for bad UTF-8 quotes the value (the token) into a log line.
            query_tokens=[
                value.decode("latin-1")
                for value in self.request.query_arguments.get(QUERY_PARAMETER, [])
            ],
            peer=self.request.remote_ip,
            forwarded_for=headers.get_list("X-Forwarded-For"),
        )

    def check_origin(self, origin: str) -> bool:
        # Already enforced in get() (before the token is spent); Tornado asks
        # again during the upgrade and must get the same answer.
        try:
            check_origin(origin, self.gateway.settings.allowed_origins)
        except WsAuthError:
            return False
        return True

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        return select_subprotocol(subprotocols)

    @property
    def claims(self) -> Claims:
        assert self.admission is not None
        return self.admission.claims

    def open(self, *args: Any, **kwargs: Any) -> None:
        assert self.admission is not None
        if self.client_gone:
            return
        loop = tornado.ioloop.IOLoop.current()
        try:
            self.liveness = Liveness(last_heard=_loop_time())
            if not self.gateway.admit(self):
                return  # revoked a moment ago: closed with 4001
            self._registered = True
            self.gateway.metrics.connection_count(len(self.gateway.registry))
            now = self.gateway.clock()
            max_age = self.gateway.settings.max_connection_age
            deadline = self.admission.deadline(now=now, max_age=max_age)
            self._expires_in = self._schedule_max_age(loop, deadline=deadline, now=now)
            self._open_session()
        except Exception:
            log.exception("opening a connection failed")
            self.close(INTERNAL_ERROR, REASONS[INTERNAL_ERROR])
            return
        # Frames for the connection (replies to early commands) wait behind the welcome.
        self._before_welcome = []
        if self.gateway.tickets is None:
            self._welcome(None)
        else:
            # The welcome waits for the ticket's SET (batched with the others of this
            # loop turn), so a ticket the client holds is always one Redis knows.
            welcome = asyncio.ensure_future(self._welcome_with_ticket())
            welcome.add_done_callback(_log_failure)

    async def _welcome_with_ticket(self) -> None:
        ticket = await self.gateway.issue_ticket(self)
        if not self.client_gone:
            self._welcome(ticket)

    def _welcome(self, ticket: str | None) -> None:
        # Not awaited (nothing waits on it); if the client left at once, on_close
        # unregisters it and send() drops the message. Sent once this node's topic
        # subscriptions include the user's, so a push after the welcome arrives.
        extra: dict[str, Any] = {}
        if ticket is not None:
            extra["resume"] = ticket
            extra["resume_ttl"] = self.gateway.settings.resume_ttl
        if self.admission is not None and self.admission.resumed is not None:
            extra["resumed"] = True
        frame = welcome(self.claims.sub, expires_in=self._expires_in, **extra)
        self.gateway.when_synced(lambda: self._send_welcome(frame))

    def _send_welcome(self, frame: str) -> None:
        waiting, self._before_welcome = self._before_welcome, None
        self.send(frame)
        for message in waiting or ():
            self.send(message)

    def _schedule_max_age(
        self, loop: tornado.ioloop.IOLoop, *, deadline: float | None, now: float
    ) -> float | None:
        """(Re)start the 4002 deadline (wall clock); return its delay in seconds (None:
        no maximum age)."""
        if self._max_age_timer is not None:
            loop.remove_timeout(self._max_age_timer)
            self._max_age_timer = None
        self.deadline = deadline
        if deadline is None:
            return None
        delay = max(0.0, deadline - now)
        self._max_age_timer = loop.call_later(delay, self._expire)
        return round(delay, 3)

    # --- protocol v1 hooks (wsauth.ws.session) ------------------------------------

    def _open_session(self) -> None:
        limits = Limits.from_settings(self.gateway.settings)
        self.outbox = Outbox(limits.max_pending_bytes)
        self.session = Session(
            self,
            self.gateway,
            claims=self.claims,
            limits=limits,
            now=_loop_time,
            on_refreshed=self._refreshed,
            on_send=self.send_handler,
        )

    def _refreshed(self, claims: Claims) -> float | None:
        """A ``refresh`` was accepted: the connection now runs on ``claims``."""
        assert self.admission is not None
        self.admission = Admission(claims, self.admission.source)
        if self.client_gone:
            return None
        now = self.gateway.clock()
        max_age = self.gateway.settings.max_connection_age
        deadline = now + max_age_delay(max_age) if max_age else None
        expires_in = self._schedule_max_age(
            tornado.ioloop.IOLoop.current(), deadline=deadline, now=now
        )
        self.gateway.rewrite_ticket(self)  # its new scope and deadline, at once
        return expires_in

    def _expire(self) -> None:
        self._max_age_timer = None
        self.close(REAUTHENTICATE, REASONS[REAUTHENTICATE])

    def on_message(self, message: str | bytes) -> Awaitable[None] | None:
        """A protocol v1 command (wsauth.ws.session); Tornado awaits what it returns
        before it reads the next frame, so a connection's commands run in order."""
        self.liveness.heard(_loop_time())
        if self.session is None:
            return None
        return self.session.receive(message)

    def on_ping(self, data: bytes) -> None:
        self.liveness.heard(_loop_time())

    def on_pong(self, data: bytes) -> None:
        self.liveness.heard(_loop_time())

    def send(self, message: str) -> None:
        """Queue ``message``; dropped when the connection is closing.

        A connection with more than ``max_pending_bytes`` queued and not yet
        written to its socket (a slow reader) is closed with 4004.
        """
        if self._before_welcome is not None:
            self._before_welcome.append(message)
            return
        try:
            sent = self.write_message(message)
        except tornado.websocket.WebSocketClosedError:
            return
        outbox = self.outbox
        if outbox is None:
            sent.add_done_callback(_ignore_closed)
            return
        size = len(message)
        if not outbox.queued(size):
            self.close(TOO_SLOW, REASONS[TOO_SLOW])
        sent.add_done_callback(lambda done: _written(outbox, size, done))

    def send_ping(self) -> None:
        with contextlib.suppress(tornado.websocket.WebSocketClosedError):
            self.ping()

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        if self._close_sent is None:
            self._close_sent = code
        super().close(code, reason)

    def on_close(self) -> None:
        self.client_gone = True
        if self.session is not None:
            self.session.closed()
        if self._max_age_timer is not None:
            tornado.ioloop.IOLoop.current().remove_timeout(self._max_age_timer)
            self._max_age_timer = None
        self.gateway.registry.remove(self)
        if self._registered:
            self._registered = False
            metrics = self.gateway.metrics
            metrics.connection_count(len(self.gateway.registry))
            metrics.connection_closed(
                self._close_sent if self._close_sent is not None else self.close_code
            )


def _loop_time() -> float:
    """The clock of the heartbeat sweep (asyncio's monotonic loop time, not IOLoop.time())."""
    return asyncio.get_running_loop().time()


def _written(outbox: Outbox, size: int, sent: Any) -> None:
    outbox.written(size)
    _ignore_closed(sent)


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("sending the welcome failed", exc_info=task.exception())


def _ignore_closed(sent: Any) -> None:
    """A message to a connection that closed meanwhile is lost, not an error to log."""
    if not sent.cancelled():
        sent.exception()


def access_log(handler: tornado.web.RequestHandler) -> None:
    """The application's ``log_function``: one line per request, never the query string.

    A request to ``/ws`` is also counted in ``wsauth_gateway_handshakes_total``.
    """
    status = handler.get_status()
    request = handler.request
    reason = getattr(handler, "wsauth_reason", None)
    detail = getattr(handler, "wsauth_detail", None)
    admission = getattr(handler, "admission", None)
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    path = printable(request.path)
    duration_ms = round(1000.0 * request.request_time(), 1)
    fields: dict[str, Any] = {
        "method": request.method,
        "path": path,
        "status": status,
        "duration_ms": duration_ms,
        "ip": request.remote_ip,
    }
    parts = [f"{request.method} {path} {status}", f"{duration_ms:.1f}ms", f"ip={request.remote_ip}"]
    if reason:
        parts.append(f"reason={reason}")
    if detail:
        fields["detail"] = printable(detail)
        parts.append(f"detail={fields['detail']!r}")
    if admission is not None and status == 101:
        fields["source"] = admission.source
        parts.append(f"source={admission.source}")
    extra = event_fields(
        "request", reason=reason, request_id=getattr(handler, "request_id", None), **fields
    )
    log.log(level, " ".join(parts), extra=extra)
    if isinstance(handler, GatewaySocket):
        outcome = (
            "accepted"
            if status == 101
            else reason or ("internal_error" if status >= 500 else "bad_request")
        )
        handler.gateway.metrics.handshake(outcome)


class RedactMalformedRequests(logging.Filter):
    """Tornado's HTTP layer logs why it refused a request before any handler ran
    (``Malformed HTTP message from <ip>: <error>``), and the error quotes the bad
    header line — which can hold a token. Keep the line, drop the quote."""

    PREFIX = "Malformed HTTP message from"

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg
        if isinstance(message, str) and message.startswith(self.PREFIX):
            peer = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg = "Malformed HTTP message from %s (details withheld: may hold a token)"
            record.args = (peer,)
        return True


def install_log_redaction() -> None:
    """Add :class:`RedactMalformedRequests` to ``tornado.general`` (once per process)."""
    logger = logging.getLogger("tornado.general")
    if not any(isinstance(known, RedactMalformedRequests) for known in logger.filters):
        logger.addFilter(RedactMalformedRequests())


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
    # Keys come from WSAUTH_JWKS_URL when set (fetched in the background, see
    # wsauth.ws.jwks_url), else from {keys dir}/jwks.json. Either way the keys are
    # trusted for settings.issuer only: verify() requires iss == settings.issuer.
    if keyset_source is None:
        if settings.jwks_url:
            url_source = UrlKeysetSource(
                settings.jwks_url,
                issuer=settings.issuer,
                min_interval=min(MIN_INTERVAL, settings.jwks_cache),
                default_max_age=settings.jwks_cache,
                clock=clock,
            )
            url_source.start()
            keyset_source = url_source
        else:
            keyset_source = FileKeysetSource(settings.keys_dir / "jwks.json", now=clock())
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
    application = GatewayApplication(
        [
            (r"/ws", GatewaySocket),
            (r"/healthz", HealthHandler),
            (r"/readyz", ReadyHandler),
            (r"/metrics", MetricsHandler),
        ],
        **application_settings(settings),
    )
    application.gateway = Gateway(
        settings, keys=keyset_source, replay=replay, registry=registry, clock=clock
    )
    return application
