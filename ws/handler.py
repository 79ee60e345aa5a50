"""wsauth's handshake authentication in front of any Tornado ``WebSocketHandler``.

A host application writes its own handler and lists :class:`WsAuthMixin` first::

    class ChatHandler(WsAuthMixin, tornado.websocket.WebSocketHandler):
        def open(self) -> None:          # runs only for an admitted, registered connection
            self.write_message(f"hello {self.current_user}")

        def on_message(self, message: str | bytes) -> None:
            self.write_message(message)

    node = GatewayNode.from_settings(load_settings())
    app = tornado.web.Application([(r"/chat", ChatHandler, dict(node=node))])

What the mixin does, step by step, and what a host may override:

``initialize(node)``
    The route's ``dict(node=node)`` (a :class:`wsauth.ws.node.GatewayNode`). A host's own
    ``initialize`` takes ``node`` too and calls ``super().initialize(node)``.
``prepare()``
    Picks the request id (``X-Request-ID``). A host override calls ``super().prepare()``.
``get()``
    The admission of :meth:`wsauth.ws.gateway.Gateway.authenticate` (rate limit, Origin,
    handshake, token source, size, signature and claims, single-use GETDEL), *before* the
    upgrade: a refusal is an HTTP answer ``{"error": code}`` with the same status, headers
    and rate-limit accounting as the built-in gateway, and the token is spent only by an
    accepted handshake. Not to be overridden: a subclass that defines ``get`` is a
    ``TypeError`` at class creation (as is one that lists ``WebSocketHandler`` first).
``current_user``, ``claims``, ``admission``
    The token's ``sub``; its :class:`~wsauth.shared.core.tokens.Claims`; the claims and the
    token source. Set before ``open`` runs.
``open()``
    Before the host's ``open`` body runs, the mixin registers the connection on the node
    (pushes to its ``sub``, revocation of its ``sub``/``sid`` (4001), the maximum age
    (4002) and the heartbeats (ping, 4003)) and waits until the node's Redis
    subscriptions include the user, so a push sent once the host's ``open`` ran reaches
    the connection. A connection revoked a moment ago is closed
    instead and the host's ``open`` never runs. No ``super().open()`` needed (harmless).
    ``expires_in`` is then the seconds until the 4002 close (None without a maximum age).
``on_message()``
    Counts as a sign of life for the heartbeats, then the host's body runs (only for a
    registered connection). No ``super()`` needed.
``on_close()``
    The mixin unregisters the connection and cancels its timers first, then the host's
    body runs if the host's ``open`` did. No ``super()`` needed.
``send(message)``, ``close(code, reason)``
    The node delivers pushes with ``send`` (``{"type": "push", "data": ...}``) and closes
    with ``close``; an override must still write and close. More than
    ``WSAUTH_MAX_PENDING_BYTES`` queued to a slow reader closes it with 4004.

The mixin wraps ``open``, ``on_message`` and ``on_close`` at class creation
(:meth:`WsAuthMixin.__init_subclass__`) so that forgetting ``super()`` cannot leave a
connection unregistered (never revoked, never re-authenticated) or registered after it
closed. It also fixes two Tornado settings for its handlers: messages over
``WSAUTH_MAX_MESSAGE_SIZE`` close the connection (1009), and Tornado's own pings are
off (the node's sweep pings and closes with 4003, not 1000).

Logging: each handshake writes one line to ``wsauth.gateway`` (:func:`access_log`:
method, path, never the query string, status, reason code) and is counted in
``wsauth_gateway_handshakes_total``, whatever the application's ``log_function``:
Tornado's default line prints the URI, which may hold a ``?ws_token=``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

import tornado.ioloop
import tornado.web
import tornado.websocket

from wsauth.shared.core.errors import InvalidToken, RateLimited, TokenMissing, WsAuthError
from wsauth.shared.core.tokens import Claims
from wsauth.shared.logs import (
    REQUEST_ID_HEADER,
    current_request_id,
    event_fields,
    printable,
    request_id_from,
)
from wsauth.ws.gateway import Admission, Gateway, HandshakeRequest
from wsauth.ws.handshake import QUERY_PARAMETER, check_origin, select_subprotocol
from wsauth.ws.lifetime import (
    INTERNAL_ERROR,
    REASONS,
    REAUTHENTICATE,
    TOO_SLOW,
    Liveness,
)
from wsauth.ws.session import Outbox

if TYPE_CHECKING:
    from wsauth.ws.node import GatewayNode

    # For the type checker the mixins are what they are mixed into; at run time
    # they derive from object, so that the host's class chooses the order.
    _RequestHandler = tornado.web.RequestHandler
    _WebSocketHandler = tornado.websocket.WebSocketHandler
else:
    _RequestHandler = _WebSocketHandler = object

__all__ = ["JsonAnswers", "WsAuthMixin", "access_log", "install_log_redaction"]

log = logging.getLogger("wsauth.gateway")


class JsonAnswers(_RequestHandler):
    """Answers errors as ``{"error": code}``, carries a request id, never logs the URI."""

    # Set by a refusal; read by the access log line.
    wsauth_reason: str | None = None
    wsauth_detail: str | None = None
    request_id: str | None = None

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


class WsAuthMixin(JsonAnswers, _WebSocketHandler):
    """Authenticates the handshake before the upgrade; holds one connection of one ``sub``.

    List it before ``tornado.websocket.WebSocketHandler``; mount the handler with
    ``dict(node=node)``. The module docstring says what each hook does.
    """

    node: GatewayNode | None = None
    admission: Admission | None = None
    # Set once the client is gone, even before the upgrade: Tornado calls
    # on_close at most once, so a connection that closed while Redis was
    # being asked must never be registered afterwards.
    client_gone: bool = False
    liveness: Liveness
    _max_age_timer: object | None = None
    # Seconds until this connection must re-authenticate (4002); None: no maximum age.
    expires_in: float | None = None
    # None until open(); then whether the connection was registered (and so
    # whether the host's open/on_message/on_close bodies run).
    _admitted: bool | None = None
    # For wsauth_gateway_connections_closed_total: counted once per registered connection.
    _registered: bool = False
    _close_sent: int | None = None
    # Wall-clock time by which the connection must re-authenticate (None: never).
    deadline: float | None = None
    # Bytes queued and not yet written (the slow-reader cap); set on registration.
    outbox: Outbox | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        mro = cls.__mro__
        if tornado.websocket.WebSocketHandler in mro and mro.index(
            tornado.websocket.WebSocketHandler
        ) < mro.index(WsAuthMixin):
            raise TypeError(
                f"{cls.__name__}: list WsAuthMixin before WebSocketHandler "
                "(else Tornado upgrades without authenticating)"
            )
        own = cls.__dict__
        if "get" in own:
            raise TypeError(
                f"{cls.__name__} must not override get(): WsAuthMixin authenticates there "
                "(use prepare() or open())"
            )
        if "open" in own:
            cls.open = _registered_first(own["open"])  # type: ignore[method-assign]
        if "on_message" in own:
            cls.on_message = _heard_first(own["on_message"])  # type: ignore[method-assign]
        if "on_close" in own:
            cls.on_close = _unregistered_first(own["on_close"])  # type: ignore[method-assign]

    def initialize(self, node: GatewayNode | None = None, **kwargs: Any) -> None:
        self.node = node
        super().initialize(**kwargs)

    @property
    def gateway(self) -> Gateway:
        node = self.node
        if node is None:
            raise RuntimeError(
                f"{type(self).__name__} has no GatewayNode: mount it with dict(node=node)"
            )
        return node.gateway

    def prepare(self) -> None:
        super().prepare()
        self.gateway  # noqa: B018 - fail (500, logged) before the upgrade, not after it

    async def get(self, *args: Any, **kwargs: Any) -> None:
        if self._connection_closed():
            # Gone before admission (a client that gave up while this loop was busy):
            # nothing is spent for a connection that could not be used.
            self.wsauth_reason = "client_closed"
            self.set_status(499, "Client Closed Request")
            return
        try:
            self.admission = await self.gateway.authenticate(self._handshake_request())
        except WsAuthError as error:
            self.refuse(error)
            return
        if self.client_gone:
            self.wsauth_reason = "client_closed"
            self.set_status(499, "Client Closed Request")
            return
        self.current_user = self.admission.claims.sub
        await super().get(*args, **kwargs)

    def _connection_closed(self) -> bool:
        stream = getattr(self.request.connection, "stream", None)
        return self.client_gone or (stream is not None and stream.closed())

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
            http_version=self.request.version,
            content_length=headers.get("Content-Length"),
            transfer_encoding=headers.get("Transfer-Encoding"),
            extensions=headers.get("Sec-WebSocket-Extensions"),
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

    def get_current_user(self) -> str | None:
        """The token's ``sub`` once the handshake was admitted, else None."""
        return self.admission.claims.sub if self.admission is not None else None

    @property
    def claims(self) -> Claims:
        """The verified claims of the token that opened this connection."""
        assert self.admission is not None
        return self.admission.claims

    @property
    def max_message_size(self) -> int:
        return self.gateway.settings.max_message_size

    @property
    def ping_interval(self) -> float | None:
        # Heartbeats are the node's own sweep (wsauth.ws.lifetime): Tornado's would
        # close a silent connection with 1000 instead of 4003.
        return None

    # --- after the upgrade --------------------------------------------------------

    def open(self, *args: Any, **kwargs: Any) -> Awaitable[None] | None:
        """Register the connection (a host's own ``open`` is wrapped to do this first;
        as in Tornado, it may be a coroutine)."""
        self._register()
        return None

    def _register(self) -> bool:
        """Register on the node once; return whether the connection is registered."""
        if self._admitted is not None:
            return self._admitted
        self._admitted = False
        assert self.admission is not None
        if self.client_gone:
            return False
        gateway = self.gateway
        try:
            self.liveness = Liveness(last_heard=_loop_time())
            self.outbox = Outbox(gateway.settings.max_pending_bytes)
            if not gateway.admit(self):
                return False  # revoked a moment ago: closed with 4001
            self._registered = True
            gateway.metrics.connection_count(len(gateway.registry))
            now = gateway.clock()
            deadline = self.admission.deadline(now=now, max_age=gateway.settings.max_connection_age)
            self.expires_in = self._schedule_max_age(
                tornado.ioloop.IOLoop.current(), deadline=deadline, now=now
            )
        except Exception:
            log.exception("opening a connection failed")
            self.close(INTERNAL_ERROR, REASONS[INTERNAL_ERROR])
            return False
        self._admitted = True
        return True

    def _schedule_max_age(
        self, loop: tornado.ioloop.IOLoop, *, deadline: float | None, now: float
    ) -> float | None:
        """(Re)start the 4002 deadline (wall clock; a resumed connection keeps the one
        it resumes); return its delay in seconds (None: no maximum age)."""
        if self._max_age_timer is not None:
            loop.remove_timeout(self._max_age_timer)
            self._max_age_timer = None
        self.deadline = deadline
        if deadline is None:
            return None
        delay = max(0.0, deadline - now)
        self._max_age_timer = loop.call_later(delay, self._expire)
        return round(delay, 3)

    def _expire(self) -> None:
        self._max_age_timer = None
        self.close(REAUTHENTICATE, REASONS[REAUTHENTICATE])

    def on_message(self, message: str | bytes) -> Awaitable[None] | None:
        """A sign of life (a host's own ``on_message`` is wrapped to count it first).

        As in Tornado, a host's ``on_message`` may return an awaitable: the next frame is
        read once it is done."""
        if self._admitted:
            self.liveness.heard(_loop_time())
        return None

    def on_ping(self, data: bytes) -> None:
        if self._admitted:
            self.liveness.heard(_loop_time())

    def on_pong(self, data: bytes) -> None:
        if self._admitted:
            self.liveness.heard(_loop_time())

    def send(self, message: str) -> None:
        """Queue ``message``; dropped when the connection is closing.

        A connection with more than ``WSAUTH_MAX_PENDING_BYTES`` queued and not yet
        written to its socket (a slow reader) is closed with 4004.
        """
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
        """Unregister (a host's own ``on_close`` is wrapped to do this first)."""
        self._unregister()

    def _unregister(self) -> None:
        self.client_gone = True
        if self._max_age_timer is not None:
            tornado.ioloop.IOLoop.current().remove_timeout(self._max_age_timer)
            self._max_age_timer = None
        node = self.node
        if node is None:
            return
        gateway = node.gateway
        gateway.registry.remove(self)
        if self._registered:
            self._registered = False
            metrics = gateway.metrics
            metrics.connection_count(len(gateway.registry))
            metrics.connection_closed(
                self._close_sent if self._close_sent is not None else self.close_code
            )

    def _log(self) -> None:
        # RequestHandler._log hands the request to the application's log_function;
        # a handshake is always logged wsauth's way (never the query string), and
        # counted, in whichever application the host mounted it.
        access_log(self)


def _registered_first(body: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(body)
    async def open(self: WsAuthMixin, *args: Any, **kwargs: Any) -> None:
        if not self._register():
            return
        # Once this node's Redis subscriptions include the user's topic, so that a push
        # sent after the host's open ran (its greeting, say) reaches the connection.
        # Tornado reads no frame before open returns.
        await self.gateway.synced()
        if self.client_gone:
            return
        result = body(self, *args, **kwargs)
        if inspect.isawaitable(result):
            await result

    return open


def _heard_first(body: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(body)
    def on_message(self: WsAuthMixin, message: str | bytes) -> Any:
        if not self._admitted:
            return None  # a frame after a refused registration, before the close
        self.liveness.heard(_loop_time())
        return body(self, message)

    return on_message


def _unregistered_first(body: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(body)
    def on_close(self: WsAuthMixin) -> Any:
        self._unregister()
        if not self._admitted:
            return None  # the host's open never ran
        return body(self)

    return on_close


def _loop_time() -> float:
    """The clock of the heartbeat sweep (asyncio's monotonic loop time, not IOLoop.time())."""
    return asyncio.get_running_loop().time()


def _written(outbox: Outbox, size: int, sent: Any) -> None:
    outbox.written(size)
    _ignore_closed(sent)


def _ignore_closed(sent: Any) -> None:
    """A message to a connection that closed meanwhile is lost, not an error to log."""
    if not sent.cancelled():
        sent.exception()


def access_log(handler: tornado.web.RequestHandler) -> None:
    """A ``log_function``: one line per request, never the query string.

    A handshake (a :class:`WsAuthMixin` handler) is also counted in
    ``wsauth_gateway_handshakes_total``.
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
    if isinstance(handler, WsAuthMixin) and handler.node is not None:
        outcome = (
            "accepted"
            if status == 101
            else reason or ("internal_error" if status >= 500 else "bad_request")
        )
        handler.node.gateway.metrics.handshake(outcome)


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
