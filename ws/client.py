"""A small Python client for non-browser users: get a token, connect, read messages.

Most programs want :class:`ReconnectingClient`: one async iterator over the
messages of a connection that is re-opened, with a fresh token from the
issuer every time, whenever the gateway closes it::

    client = ReconnectingClient.for_api_client("http://127.0.0.1:8000", "c_...", secret)
    async with client:
        async for message in client:     # str: welcome, then {"type": "push", ...}
            print(message)

It follows the close codes of docs/reference/close-codes.md, as the browser
module does:

- 4002 (reauthenticate): reconnect at once with a fresh token, no delay;
- 1001, 1009, 1011, 4003, a lost connection, a 5xx/429 or an unreachable
  issuer or gateway: reconnect after exponential backoff with full jitter
  (:class:`wsauth.ws.backoff.Backoff`, capped), again with a fresh token;
- 4001 (revoked): stop — the iteration raises :class:`Revoked`;
- the token endpoint answers 401 or 403 (credentials wrong or removed):
  stop — the iteration raises that :class:`ClientError`;
- the issuer was never reached: with ``give_up_after=N``, stop after N
  attempts (``wsauth connect`` gives up after 5 unless ``--retry-forever``);
- 1000 (normal close): the iteration ends.

Channels and messages to backends (protocol v1, docs/reference/protocol.md)
are methods of the client; each returns the gateway's reply or raises
:class:`CommandRefused` with its code::

    async with client:
        await client.subscribe("chat:lobby")     # remembered: subscribed on every (re)connect
        async for message in client:              # replies are not in the iteration
            if json.loads(message)["type"] == "welcome":   # connected: commands work now
                await client.publish("chat:lobby", {"text": "hi"})
                await client.send({"order": 42})  # to the backends' inbox

When the welcome frame carries ``expires_in`` (the gateway's
``WSAUTH_MAX_CONNECTION_AGE``), the client re-authenticates in band at
``refresh_at`` (80 %) of it: a fresh token from ``fetch``, sent as
``refresh``. A channel the gateway leaves on its own (``unsubscribed``, e.g.
``scope_changed``) or refuses when re-subscribing is dropped and reported
to ``on_unsubscribed(channel, reason)``.

On a history channel the client keeps the last ``offset``/``epoch`` it saw
(``positions``) and subscribes with ``since`` after every reconnect, so the
gateway delivers what it missed, in order and once; each such reply
(``recovered``, ``reason``) is kept in ``recoveries``.

Pushes to the user get the same when the gateway keeps their history
(``WSAUTH_HISTORY_USERS``): the client keeps the user's position
(``push_position``, ``(offset, epoch)``) from the welcome's ``push`` and from
each ``push`` frame's ``offset``/``epoch``, and offers it on every reconnect
(ticket or fresh token) as the subprotocol ``wsauth.since.<offset>.<epoch>``;
the gateway then sends the welcome, the missed pushes in order, then live
ones. Each welcome whose ``push`` says whether the gap was recovered
(``recovered``, ``reason``) is kept in ``push_recoveries``.

Resume tickets: the gateway's welcome carries one (``resume``); the client
keeps it (and removes it from the welcome it yields: it is a credential) and
reconnects with it — ``Authorization: Resume <ticket>``, no issuer request —
after any close but 1000, 4001 and 4002, within ``resume_ttl`` seconds of the
close. A refused ticket (401) falls back to a fresh token in the same
attempt; an unreachable or overloaded gateway (no answer, 5xx, 429) keeps it
for the next attempt, after the backoff; 4002 always takes a fresh token.

The single steps are there too: :func:`fetch_token` and :func:`connect`.
The token travels in ``Authorization: Bearer`` (never in the URL). Both
raise :class:`ClientError` with the server's machine code when refused.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import tornado.httpclient
import tornado.websocket

from wsauth.shared.core.errors import WsAuthError
from wsauth.shared.state.history import HISTORY_TRIMMED, Position
from wsauth.ws.backoff import Backoff
from wsauth.ws.handshake import SINCE_SUBPROTOCOL_PREFIX, SUBPROTOCOL
from wsauth.ws.lifetime import NORMAL, REAUTHENTICATE, REVOKED

DEFAULT_TIMEOUT = 10.0
MAX_RESPONSE_BYTES = 64 * 1024
# A welcome's push result that leaves the position as it was: the gateway could not tell.
KEEP_POSITION_REASONS = frozenset({"no_history", "redis_unavailable"})


class ClientError(WsAuthError):
    """A request of the client was refused or failed.

    ``http_status`` is the server's status (None when no answer came) and
    ``error`` its ``{"error": code}`` (or a local reason such as ``unreachable``).
    """

    code = "client_error"

    def __init__(self, detail: str, *, http_status: int | None, error: str) -> None:
        super().__init__(detail, http_status=http_status, error=error)
        self.http_status = http_status
        self.error = error


def fetch_token(
    issuer_url: str, client_id: str, client_secret: str, *, timeout: float = DEFAULT_TIMEOUT
) -> dict[str, Any]:
    """POST ``{issuer}/api/tokens`` with HTTP Basic credentials; return the JSON answer.

    Raises:
        ClientError: not an http(s) URL, no answer, a refusal, or not a JSON object.
    """
    if urlsplit(issuer_url).scheme not in ("http", "https"):
        raise ClientError("issuer URL must be http or https", http_status=None, error="bad_url")
    credentials = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode("ascii")
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        issuer_url.rstrip("/") + "/api/tokens",
        data=b"",
        method="POST",
        headers={"Authorization": f"Basic {credentials}", "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            body = response.read(MAX_RESPONSE_BYTES)
    except urllib.error.HTTPError as error:
        with error:
            code = _error_code(error.read(MAX_RESPONSE_BYTES))
        raise ClientError(
            f"issuer refused the token request: {error.code} {code}",
            http_status=error.code,
            error=code,
        ) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        reason = getattr(reason, "strerror", None) or reason
        raise ClientError(
            f"issuer unreachable at {issuer_url}: {reason}", http_status=None, error="unreachable"
        ) from None
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if not isinstance(document, dict) or not isinstance(document.get("token"), str):
        raise ClientError("issuer answer has no token", http_status=200, error="bad_response")
    return document


class GatewayConnection:
    """An open connection to the gateway; iterate it for the messages, in order."""

    def __init__(self, connection: tornado.websocket.WebSocketClientConnection) -> None:
        self._connection = connection

    @property
    def subprotocol(self) -> str | None:
        return self._connection.selected_subprotocol

    @property
    def close_code(self) -> int | None:
        return self._connection.close_code

    @property
    def close_reason(self) -> str | None:
        return self._connection.close_reason

    async def receive(self) -> str | bytes | None:
        """The next message, or None once the connection is closed."""
        return await self._connection.read_message()

    async def send(self, message: str) -> None:
        """Send one text frame.

        Raises:
            tornado.websocket.WebSocketClosedError: the connection is closed.
        """
        await self._connection.write_message(message)

    def __aiter__(self) -> GatewayConnection:
        return self

    async def __anext__(self) -> str | bytes:
        message = await self.receive()
        if message is None:
            raise StopAsyncIteration
        return message

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake (see :meth:`aclose` to wait for its end)."""
        self._connection.close(code, reason)

    async def aclose(self, code: int = 1000, reason: str = "", *, timeout: float = 5.0) -> None:
        """Close, and wait (up to ``timeout``) for the gateway's answer; then the socket is shut."""
        protocol = self._connection.protocol  # close() forgets it
        stream = protocol.stream if protocol is not None else None
        self.close(code, reason)
        try:
            async with asyncio.timeout(timeout):
                while await self._connection.read_message() is not None:
                    pass  # messages after our close are dropped
        except TimeoutError:
            if stream is not None:
                stream.close()

    async def __aenter__(self) -> GatewayConnection:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


async def connect(
    url: str,
    token: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    max_message_size: int = 16 * 1024 * 1024,
    resume: bool = False,
    since: tuple[str, str] | None = None,
) -> GatewayConnection:
    """Open a WebSocket to the gateway at ``url`` (ws:// or wss://) with ``token``
    (with ``resume``: ``token`` is a resume ticket of an earlier welcome). With
    ``since`` (the user's last push position, ``(offset, epoch)``), the gateway
    sends the pushes missed since then right after the welcome.

    Raises:
        ClientError: not a ws(s) URL, no answer, or the gateway refused the
            handshake (``error`` is its reason code, e.g. ``token_replayed``).
        ValueError: ``since`` is not a position the gateway could have sent.
    """
    if urlsplit(url).scheme not in ("ws", "wss"):
        raise ClientError("gateway URL must be ws or wss", http_status=None, error="bad_url")
    subprotocols = None if since is None else [SUBPROTOCOL, since_subprotocol(since)]
    request = tornado.httpclient.HTTPRequest(
        url,
        headers={"Authorization": f"{'Resume' if resume else 'Bearer'} {token}"},
        connect_timeout=timeout,
        request_timeout=timeout,
    )
    try:
        connection = await tornado.websocket.websocket_connect(
            request, max_message_size=max_message_size, subprotocols=subprotocols
        )
    except tornado.httpclient.HTTPClientError as error:
        if error.code == 599:  # Tornado's code for a timeout or a lost connection
            raise ClientError(
                f"gateway unreachable at {url}: {error.message}",
                http_status=None,
                error="unreachable",
            ) from None
        body = error.response.body if error.response is not None else b""
        code = _error_code(body)
        raise ClientError(
            f"gateway refused the connection: {error.code} {code}",
            http_status=error.code,
            error=code,
        ) from None
    except (OSError, tornado.websocket.WebSocketError) as error:
        reason = getattr(error, "strerror", None) or type(error).__name__
        raise ClientError(
            f"gateway unreachable at {url}: {reason}", http_status=None, error="unreachable"
        ) from None
    return GatewayConnection(connection)


def since_subprotocol(position: tuple[str, str]) -> str:
    """The subprotocol value that offers the user's push position ``(offset, epoch)``.

    Raises:
        ValueError: not a position the gateway could have sent.
    """
    checked = Position.parse(*position)
    return f"{SINCE_SUBPROTOCOL_PREFIX}{checked.offset}.{checked.epoch}"


def push_position_of(frame: Any) -> tuple[str, str] | None:
    """``(offset, epoch)`` of a ``push`` frame or of a welcome's ``push``; None when it
    has none, or one the gateway would refuse in a handshake (never offered back)."""
    if not isinstance(frame, dict):
        return None
    offset, epoch = frame.get("offset"), frame.get("epoch")
    try:
        checked = Position.parse(offset, epoch)
    except ValueError:
        return None
    return (str(checked.offset), checked.epoch)


def later_position(
    known: tuple[str, str] | None, seen: tuple[str, str] | None
) -> tuple[str, str] | None:
    """The position to keep after ``seen``: the later offset in the same epoch; a new
    epoch replaces the old (pure)."""
    if seen is None:
        return known
    if known is None or known[1] != seen[1] or int(known[0]) < int(seen[0]):
        return seen
    return known


def welcome_position(known: tuple[str, str] | None, push: dict[str, Any]) -> tuple[str, str] | None:
    """The user's push position to keep after a welcome's ``push`` (pure).

    While missed pushes follow the welcome (``recovered`` true, or
    ``history_trimmed``: what is left of them), the offered position stays
    until their frames move it, so a connection lost half-way through them
    offers the same position again. Otherwise the gateway's position replaces
    ours: the first one of a connection that offered none, a new epoch, or the
    true position after ``unknown_position``; a history lost with no new
    position forgets ours; a gateway that cannot tell (``no_history``,
    ``redis_unavailable``) leaves it as it was.
    """
    recovered, reason = push.get("recovered"), push.get("reason")
    if recovered is True or reason == HISTORY_TRIMMED or reason in KEEP_POSITION_REASONS:
        return known
    position = push_position_of(push)
    if position is not None:
        return position
    return None if recovered is False else known


def _error_code(body: bytes | None) -> str:
    try:
        document = json.loads(body or b"")
    except ValueError:
        return "unknown"
    error = document.get("error") if isinstance(document, dict) else None
    return error if isinstance(error, str) else "unknown"


# --- reconnecting client -------------------------------------------------------------

RECONNECT_BACKOFF = Backoff(base=0.5, cap=30.0)
# A connection that stayed open this long resets the backoff: a gateway that
# accepts and then closes at once is not hammered at the shortest delay.
STABLE_AFTER = 10.0
# The token endpoint's answers that mean "you will not get a token": stop.
TERMINAL_TOKEN_STATUSES = frozenset({401, 403})
# Gateway refusals that a new token cannot fix (a malformed request, a refused Origin).
TERMINAL_HANDSHAKE_STATUSES = frozenset({400, 403})

TokenFetcher = Callable[[], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class _Ticket:
    """A resume ticket of the last connection, good until ``until`` (monotonic)."""

    value: str = field(repr=False)
    url: str
    until: float


def _take_ticket(message: str | bytes) -> tuple[str | bytes, tuple[str, int] | None]:
    """Split a welcome into the welcome without its ticket, and ``(ticket, ttl)``."""
    if not isinstance(message, str) or '"resume"' not in message:
        return message, None
    try:
        document = json.loads(message)
    except ValueError:
        return message, None
    if not isinstance(document, dict) or document.get("type") != "welcome":
        return message, None
    ticket = document.pop("resume", None)
    ttl = document.pop("resume_ttl", None)
    if not isinstance(ticket, str) or not isinstance(ttl, int):
        return message, None
    return json.dumps(document), (ticket, ttl)


class Revoked(ClientError):
    """The gateway closed the connection with 4001: the session or user was revoked."""

    def __init__(self, reason: str | None) -> None:
        shown = f"{REVOKED} {reason}" if reason else str(REVOKED)
        super().__init__(f"connection revoked ({shown})", http_status=None, error="revoked")
        self.close_code = REVOKED


class CommandRefused(ClientError):
    """The gateway answered a command with an error (``error`` is its code), or the
    connection went away first (``connection_closed``, ``not_connected``)."""

    def __init__(self, error: str, reply: dict[str, Any] | None = None) -> None:
        super().__init__(f"command refused: {error}", http_status=None, error=error)
        self.reply = reply or {}


COMMAND_TIMEOUT = 10.0
LOST = frozenset({"connection_closed", "not_connected"})


class _Stop(Exception):
    """Internal: a refusal that no retry can fix; carries the error to raise."""

    def __init__(self, error: ClientError) -> None:
        super().__init__(error.error)
        self.error = error


@dataclass(frozen=True)
class Status:
    """A change of the client's state, for ``on_status``.

    ``state`` is ``connecting``, ``connected``, ``closed`` (``close_code``,
    ``reason``), ``retrying`` (``delay`` seconds; when a step failed, ``error``
    is its code and ``detail`` its one-line description, which names the URL)
    or ``stopped``.
    """

    state: str
    close_code: int | None = None
    reason: str | None = None
    delay: float | None = None
    error: str | None = None
    detail: str | None = None


class ReconnectingClient:
    """Messages of one logical connection, re-opened with a fresh token after every close."""

    def __init__(
        self,
        fetch: TokenFetcher,
        *,
        url: str | None = None,
        backoff: Backoff = RECONNECT_BACKOFF,
        on_status: Callable[[Status], None] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        stable_after: float = STABLE_AFTER,
        draw: Callable[[], float] = random.random,
        give_up_after: int | None = None,
        refresh_at: float | None = 0.8,
        on_unsubscribed: Callable[[str, str], None] | None = None,
        channels: Iterable[str] = (),
    ) -> None:
        """``fetch`` returns the issuer's token answer (``{"token", "url", ...}``);
        ``url`` overrides the answer's gateway URL; ``refresh_at`` is the share of a
        welcome's ``expires_in`` after which the client refreshes in band (None: never,
        the gateway's 4002 close then makes it reconnect); ``channels`` are subscribed
        on every connection, as :meth:`subscribe` does.

        ``give_up_after``: while the issuer has never answered (a wrong URL, a
        stack not started), stop after this many failed attempts and raise the
        last :class:`ClientError` (``error`` ``unreachable``). None (the
        default) retries for ever; once the issuer has answered, the client
        always retries.
        """
        if give_up_after is not None and give_up_after < 1:
            raise ValueError("give_up_after must be at least 1")
        self._fetch = fetch
        self._url = url
        self._backoff = backoff
        self._on_status = on_status
        self._timeout = timeout
        self._stable_after = stable_after
        self._draw = draw
        self._give_up_after = give_up_after
        self._issuer_answered = False
        self._connection: GatewayConnection | None = None
        self._iterator: AsyncGenerator[str | bytes, None] | None = None
        self._closed = False
        self._stopping = asyncio.Event()
        self.connections = 0
        self._refresh_at = refresh_at
        self._on_unsubscribed = on_unsubscribed
        # subscribed (or to subscribe), in order
        self.channels: dict[str, None] = dict.fromkeys(channels)
        # Issuer requests made, and connections opened with a resume ticket.
        self.token_fetches = 0
        self.resumes = 0
        self._ticket: _Ticket | None = None
        self._welcome_ticket: tuple[str, int] | None = None
        self._last_url: str | None = None
        # channel -> (offset, epoch) of the last message seen (history channels).
        self.positions: dict[str, tuple[str, str]] = {}
        # The last subscribe replies that said whether a gap was recovered.
        self.recoveries: collections.deque[dict[str, Any]] = collections.deque(maxlen=100)
        # (offset, epoch) of the user's last push (WSAUTH_HISTORY_USERS), offered on reconnect;
        # the last welcomes' ``push`` that said whether the missed pushes were recovered.
        self.push_position: tuple[str, str] | None = None
        self.push_recoveries: collections.deque[dict[str, Any]] = collections.deque(maxlen=100)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next_id = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._refresh_timer: asyncio.TimerHandle | None = None
        self.refreshes = 0
        self._reader: asyncio.Future[None] | None = None  # reads the current connection

    # --- protocol v1 ---------------------------------------------------------------

    async def subscribe(self, channel: str) -> dict[str, Any]:
        """Subscribe to ``channel`` now (when connected) and after every reconnect.

        Raises:
            CommandRefused: the gateway refused (e.g. ``not_granted``; then the channel
                is forgotten). While not connected, it is only remembered.
        """
        self.channels[channel] = None
        if self._connection is None:
            return {"pending": True}
        try:
            return await self._subscribe_now(channel)
        except CommandRefused as refused:
            if refused.error not in LOST:
                self.channels.pop(channel, None)
            raise

    async def unsubscribe(self, channel: str) -> dict[str, Any]:
        """Leave ``channel`` (and do not subscribe to it again after a reconnect)."""
        known = channel in self.channels
        self.channels.pop(channel, None)
        if not known or self._connection is None:
            return {"ok": True}
        return await self._command({"type": "unsubscribe", "channel": channel})

    async def publish(self, channel: str, data: Any) -> dict[str, Any]:
        """Publish ``data`` (any JSON value) to ``channel``; the scope must grant ``pub:``."""
        return await self._command({"type": "publish", "channel": channel, "data": data})

    async def send(self, data: Any) -> dict[str, Any]:
        """Send ``data`` (any JSON value) to the backends (the inbox stream)."""
        return await self._command({"type": "send", "data": data})

    async def refresh(self) -> dict[str, Any]:
        """Re-authenticate in band now with a fresh token; return the reply (``expires_in``).

        Raises:
            CommandRefused: refused (a token code, ``subject_mismatch``) or not connected.
            ClientError: no token could be fetched.
        """
        connection = self._connection
        if connection is None:
            raise CommandRefused("not_connected")
        self.token_fetches += 1
        document = await self._fetch()
        if self._connection is not connection:
            raise CommandRefused("not_connected")
        reply = await self._command({"type": "refresh", "token": document["token"]})
        self.refreshes += 1
        self._schedule_refresh(reply.get("expires_in"))
        return reply

    async def _command(self, frame: dict[str, Any]) -> dict[str, Any]:
        connection = self._connection
        if connection is None:
            raise CommandRefused("not_connected")
        self._next_id += 1
        command_id = self._next_id
        reply: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[command_id] = reply
        try:
            await connection.send(json.dumps({**frame, "id": command_id}))
            answer = await asyncio.wait_for(reply, COMMAND_TIMEOUT)
        except tornado.websocket.WebSocketClosedError:
            raise CommandRefused("connection_closed") from None
        except TimeoutError:
            raise CommandRefused("timeout") from None
        finally:
            self._pending.pop(command_id, None)
        if "error" in answer:
            raise CommandRefused(str(answer["error"]), answer)
        return answer

    def _handle(self, message: str | bytes) -> bool:
        """Act on a gateway frame; True when it was a reply to a command (not yielded)."""
        try:
            frame = json.loads(message)
        except ValueError:
            return False
        if not isinstance(frame, dict):
            return False
        kind = frame.get("type")
        if kind == "message":
            self._track(frame.get("channel"), frame)
        elif kind == "push":
            self.push_position = later_position(self.push_position, push_position_of(frame))
        elif kind == "reply":
            waiting = self._pending.get(frame.get("id"))  # type: ignore[arg-type]
            if waiting is not None and not waiting.done():
                waiting.set_result(frame)
                return True
        elif kind == "welcome":
            self._welcome_push(frame.get("push"))
            self._schedule_refresh(frame.get("expires_in"))
            if self.channels:
                self._spawn(self._resubscribe())
        elif kind == "unsubscribed" and isinstance(frame.get("channel"), str):
            self.channels.pop(frame["channel"], None)
            self._unsubscribed(frame["channel"], str(frame.get("reason")))
        return False

    async def _subscribe_now(self, channel: str) -> dict[str, Any]:
        """``subscribe``, with ``since`` when a position of the channel is known."""
        frame: dict[str, Any] = {"type": "subscribe", "channel": channel}
        position = self.positions.get(channel)
        if position is not None:
            frame["since"] = {"offset": position[0], "epoch": position[1]}
        reply = await self._command(frame)
        self._track(channel, reply)
        if "recovered" in reply:
            self.recoveries.append({"channel": channel, **reply})
        return reply

    def _welcome_push(self, push: Any) -> None:
        """Take the user's position from a welcome's ``push`` (see :func:`welcome_position`)."""
        if not isinstance(push, dict):
            return
        if "recovered" in push:
            self.push_recoveries.append(push)
        self.push_position = welcome_position(self.push_position, push)

    def _last_welcome_ticket(self) -> tuple[str, int] | None:
        """``(ticket, ttl)`` of the last connection's welcome (set while its frames were read)."""
        return self._welcome_ticket

    def _track(self, channel: Any, frame: dict[str, Any]) -> None:
        """Keep the last position of ``channel`` from a message frame or a subscribe reply."""
        offset, epoch = frame.get("offset"), frame.get("epoch")
        if not (isinstance(channel, str) and isinstance(offset, str) and offset.isdigit()):
            return
        if not isinstance(epoch, str):
            return
        known = self.positions.get(channel)
        if known is None or known[1] != epoch or int(known[0]) < int(offset):
            self.positions[channel] = (offset, epoch)

    def _unsubscribed(self, channel: str, reason: str) -> None:
        if self._on_unsubscribed is not None:
            self._on_unsubscribed(channel, reason)

    async def _resubscribe(self) -> None:
        for channel in list(self.channels):
            try:
                await self._subscribe_now(channel)
            except CommandRefused as refused:
                if refused.error in LOST:
                    return
                self.channels.pop(channel, None)
                self._unsubscribed(channel, refused.error)

    def _schedule_refresh(self, expires_in: Any) -> None:
        if self._refresh_timer is not None:
            self._refresh_timer.cancel()
            self._refresh_timer = None
        if isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
            return
        share = self._refresh_at
        if share is not None and expires_in > 0:
            self._refresh_timer = asyncio.get_running_loop().call_later(
                expires_in * share, lambda: self._spawn(self._auto_refresh())
            )

    async def _auto_refresh(self) -> None:
        self._refresh_timer = None
        with contextlib.suppress(ClientError):  # else the gateway closes with 4002: reconnect
            await self.refresh()

    def _spawn(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _frames(self, connection: GatewayConnection) -> AsyncGenerator[str | bytes, None]:
        """The frames of one connection but the replies, read by a task of their own so
        that a command awaited between two messages gets its reply."""
        queue: asyncio.Queue[str | bytes | None] = asyncio.Queue()

        async def pump() -> None:
            first = True
            try:
                async for message in connection:
                    if first:  # the welcome: its ticket stays inside the client
                        first = False
                        message, self._welcome_ticket = _take_ticket(message)
                    if not self._handle(message):
                        queue.put_nowait(message)
            finally:
                queue.put_nowait(None)

        reader = self._reader = asyncio.ensure_future(pump())
        try:
            while (message := await queue.get()) is not None:
                yield message
        finally:
            if self._refresh_timer is not None:
                self._refresh_timer.cancel()
                self._refresh_timer = None
            for waiting in self._pending.values():
                if not waiting.done():
                    waiting.set_result({"error": "connection_closed"})
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader

    @classmethod
    def for_api_client(
        cls, issuer_url: str, client_id: str, client_secret: str, **options: Any
    ) -> ReconnectingClient:
        """Tokens from ``POST {issuer}/api/tokens`` with these client credentials."""
        timeout = float(options.get("timeout", DEFAULT_TIMEOUT))

        async def fetch() -> dict[str, Any]:
            return await asyncio.to_thread(
                fetch_token, issuer_url, client_id, client_secret, timeout=timeout
            )

        return cls(fetch, **options)

    def __aiter__(self) -> AsyncGenerator[str | bytes, None]:
        if self._iterator is None:
            self._iterator = self._messages()
        return self._iterator

    async def aclose(self) -> None:
        """Stop: close the current connection (1000) and end the iteration."""
        self._closed = True
        self._stopping.set()
        if self._refresh_timer is not None:
            self._refresh_timer.cancel()
            self._refresh_timer = None
        for task in list(self._tasks):  # a re-subscribe or an automatic refresh under way
            if task is not asyncio.current_task():
                task.cancel()
        if self._reader is not None:
            # It would take the end of the connection that aclose() below waits for.
            self._reader.cancel()
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.aclose()
        iterator, self._iterator = self._iterator, None
        if iterator is not None and not getattr(iterator, "ag_running", False):
            await iterator.aclose()

    async def __aenter__(self) -> ReconnectingClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _status(self, state: str, **details: Any) -> None:
        if self._on_status is not None:
            self._on_status(Status(state, **details))

    async def _wait(self, attempt: int, error: ClientError | None = None) -> None:
        delay = self._backoff.delay(attempt, draw=self._draw)
        if error is None:
            self._status("retrying", delay=delay)
        else:
            self._status("retrying", delay=delay, error=error.error, detail=str(error))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay)  # aclose() cuts it short

    async def _open(self) -> GatewayConnection:
        """One attempt: a fresh token, then the handshake.

        Raises:
            _Stop: a refusal that no retry can fix.
            ClientError: anything else (worth another attempt).
        """
        ticket, self._ticket = self._ticket, None
        if ticket is not None and time.monotonic() < ticket.until:
            try:
                connection = await connect(
                    ticket.url,
                    ticket.value,
                    timeout=self._timeout,
                    resume=True,
                    since=self.push_position,
                )
            except ClientError as error:
                status = error.http_status
                if status is None or status >= 500 or status == 429:
                    # Unreachable or overloaded: the ticket may still be good; back off.
                    self._ticket = ticket
                    raise
                # Refused (used, expired, revoked, Redis lost it): a fresh token now.
            else:
                self.resumes += 1
                return connection
        try:
            self.token_fetches += 1
            document = await self._fetch()
        except ClientError as error:
            if error.http_status is not None:
                self._issuer_answered = True
            if error.http_status in TERMINAL_TOKEN_STATUSES or error.error == "bad_url":
                raise _Stop(error) from None
            raise
        self._issuer_answered = True
        url = self._url or document.get("url")
        if not isinstance(url, str):
            raise _Stop(ClientError("no gateway URL", http_status=None, error="bad_url"))
        self._last_url = url
        try:
            return await connect(
                url, document["token"], timeout=self._timeout, since=self.push_position
            )
        except ClientError as error:
            if error.http_status in TERMINAL_HANDSHAKE_STATUSES or error.error == "bad_url":
                raise _Stop(error) from None
            raise

    async def _messages(self) -> AsyncGenerator[str | bytes, None]:
        attempt = 0
        never_answered = 0  # failed attempts before the issuer first answered
        try:
            while not self._closed:
                self._status("connecting")
                try:
                    connection = await self._open()
                except _Stop as stop:
                    self._status("stopped", error=stop.error.error)
                    raise stop.error from None
                except ClientError as error:
                    never_answered += 0 if self._issuer_answered else 1
                    if self._give_up_after is not None and never_answered >= self._give_up_after:
                        self._status("stopped", error=error.error, detail=str(error))
                        plural = "" if never_answered == 1 else "s"
                        raise ClientError(
                            f"{error} (gave up after {never_answered} attempt{plural})",
                            http_status=error.http_status,
                            error=error.error,
                        ) from None
                    await self._wait(attempt, error)
                    attempt += 1
                    continue
                self._connection = connection
                self.connections += 1
                opened = time.monotonic()
                self._status("connected")
                self._welcome_ticket = None
                async for message in self._frames(connection):
                    yield message
                self._connection = None
                code, reason = connection.close_code, connection.close_reason
                ticket = self._last_welcome_ticket()
                if ticket is not None and code not in (NORMAL, REVOKED, REAUTHENTICATE):
                    value, ttl = ticket
                    until = time.monotonic() + ttl
                    self._ticket = _Ticket(value, self._last_url or "", until)
                connection.close()  # releases the socket (the gateway closed first)
                self._status("closed", close_code=code, reason=reason)
                if self._closed or code == NORMAL:
                    break
                if code == REVOKED:
                    self._status("stopped", close_code=code)
                    raise Revoked(reason)
                if code == REAUTHENTICATE:
                    attempt = 0
                    continue  # at once, with a fresh token
                if time.monotonic() - opened >= self._stable_after:
                    attempt = 0
                await self._wait(attempt)
                attempt += 1
        finally:
            connection_left, self._connection = self._connection, None
            if connection_left is not None:
                await connection_left.aclose()
