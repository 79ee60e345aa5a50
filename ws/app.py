"""The Tornado application of the gateway: ``GET /ws`` and ``GET /healthz``.

The handlers are thin adapters around :class:`ws.gateway.Gateway`:
:class:`GatewaySocket` authenticates *before* the upgrade by overriding
``get()``: a refused request gets an HTTP answer (``{"error": code}``, JSON)
and no upgrade; an accepted one goes on to Tornado's own upgrade.

After the upgrade the gateway sends one text message, ``{"type": "welcome",
"sub": <sub>}``, and registers the connection under its ``sub`` (and
``sid``). Messages from the client are ignored: the channel carries messages
from backends to users; anything larger than ``max_message_size`` closes the
connection (1009).

Logging (logger ``wsauth.gateway``): one line per request with method, path
(never the query string), status, duration, client IP and, for a refusal,
``reason=<code>``. No line ever holds a token: Tornado's own request summary
(which prints the URI) is replaced.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import tornado.web
import tornado.websocket

from shared.config import Settings
from shared.errors import ConfigError, InvalidToken, TokenMissing, WsAuthError
from shared.replay import AsyncReplayGuard, async_client
from ws.gateway import Admission, Gateway, HandshakeRequest
from ws.handshake import QUERY_PARAMETER, check_origin, select_subprotocol
from ws.keys import FileKeysetSource, KeysetSource
from ws.registry import ConnectionRegistry

log = logging.getLogger("wsauth.gateway")

MAX_HEADER_SIZE = 16 * 1024
MAX_BODY_SIZE = 16 * 1024
BODY_TIMEOUT = 10.0
_MAX_LOGGED_PATH = 200


class GatewayApplication(tornado.web.Application):
    """A Tornado application that carries its :class:`Gateway`."""

    gateway: Gateway


class _JsonHandler(tornado.web.RequestHandler):
    """Answers errors as ``{"error": code}`` and never logs the request URI."""

    # Set by a refusal; read by the access log line.
    wsauth_reason: str | None = None
    wsauth_detail: str | None = None

    @property
    def gateway(self) -> Gateway:
        application = self.application
        assert isinstance(application, GatewayApplication)
        return application.gateway

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
        self.finish(json.dumps({"error": error.code}))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        code = {404: "not_found", 405: "method_not_allowed"}.get(
            status_code, "bad_request" if status_code < 500 else "internal_error"
        )
        self.wsauth_reason = code
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": code}))

    def _request_summary(self) -> str:
        return f"{self.request.method} {_printable(self.request.path)} ({self.request.remote_ip})"

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
        raise tornado.web.HTTPError(404)


class HealthHandler(_JsonHandler):
    """``GET /healthz``: 200 when Redis answers and a keyset is loaded, else 503."""

    async def get(self) -> None:
        document = await self.gateway.health()
        self.set_status(200 if document["status"] == "ok" else 503)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(document))


class GatewaySocket(_JsonHandler, tornado.websocket.WebSocketHandler):
    """``GET /ws``: authenticate, then upgrade; one connection of one ``sub``."""

    admission: Admission | None = None
    # Set once the client is gone, even before the upgrade: Tornado calls
    # on_close at most once, so a connection that closed while Redis was
    # being asked must never be registered afterwards.
    client_gone: bool = False

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

    async def open(self, *args: Any, **kwargs: Any) -> None:
        assert self.admission is not None
        if self.client_gone:
            return
        claims = self.admission.claims
        self.gateway.registry.add(self, sub=claims.sub, sid=claims.sid)
        # The client may have left at once: on_close unregisters it.
        with contextlib.suppress(tornado.websocket.WebSocketClosedError):
            await self.write_message(json.dumps({"type": "welcome", "sub": claims.sub}))

    def on_message(self, message: str | bytes) -> None:
        """Client messages are ignored: the channel carries backend → user messages."""

    def on_close(self) -> None:
        self.client_gone = True
        self.gateway.registry.remove(self)


def access_log(handler: tornado.web.RequestHandler) -> None:
    """The application's ``log_function``: one line per request, never the query string."""
    status = handler.get_status()
    request = handler.request
    reason = getattr(handler, "wsauth_reason", None)
    detail = getattr(handler, "wsauth_detail", None)
    admission = getattr(handler, "admission", None)
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    parts = [
        f"{request.method} {_printable(request.path)} {status}",
        f"{1000.0 * request.request_time():.1f}ms",
        f"ip={request.remote_ip}",
    ]
    if reason:
        parts.append(f"reason={reason}")
    if detail:
        parts.append(f"detail={_printable(detail)!r}")
    if admission is not None and status == 101:
        parts.append(f"source={admission.source}")
    log.log(level, " ".join(parts))


def _printable(text: str) -> str:
    """Client-controlled text made safe for one log line (no control characters, bounded)."""
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in text[:_MAX_LOGGED_PATH])
    return cleaned + ("..." if len(text) > _MAX_LOGGED_PATH else "")


def application_settings(settings: Settings) -> dict[str, Any]:
    """Tornado application settings that follow from wsauth settings."""
    interval = settings.ping_interval or None
    return {
        "websocket_max_message_size": settings.max_message_size,
        "websocket_ping_interval": interval,
        # A pong must come back within half the interval (at least 1 s).
        "websocket_ping_timeout": min(interval, max(1.0, interval / 2)) if interval else None,
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
        ConfigError: ``WSAUTH_JWKS_URL`` is set (the gateway reads ``jwks.json`` only).
    """
    if keyset_source is None:
        if settings.jwks_url:
            raise ConfigError(
                "WSAUTH_JWKS_URL",
                "is not supported by the gateway yet; unset it to use {keys dir}/jwks.json",
            )
        keyset_source = FileKeysetSource(settings.keys_dir / "jwks.json", now=clock())
    if replay is None:
        replay = AsyncReplayGuard(
            async_client(settings.effective_redis_url, timeout=settings.redis_timeout),
            prefix=settings.redis_prefix,
        )
    application = GatewayApplication(
        [(r"/ws", GatewaySocket), (r"/healthz", HealthHandler)],
        **application_settings(settings),
    )
    application.gateway = Gateway(
        settings, keys=keyset_source, replay=replay, registry=registry, clock=clock
    )
    return application
