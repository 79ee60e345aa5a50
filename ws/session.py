"""The protocol state of one open connection: its claims and scope, channels, limits.

:class:`Session` runs the commands of docs/reference/protocol.md for one
connection; the Tornado handler only feeds it (three small hooks in
:mod:`wsauth.ws.app`: create it in ``open``, hand every frame to
:meth:`Session.receive` in ``on_message``, call :meth:`Session.closed` in
``on_close``) and counts what it queues in an :class:`Outbox`. The
decisions are pure functions of the session's state and the clock: whether a
command is within the rate (:class:`CommandBucket`), whether the scope
grants a channel (:mod:`wsauth.shared.core.scopes`), which channels a new
scope takes away (:func:`wsauth.shared.core.scopes.lost_channels`). The I/O —
joining channels on this node, Redis for ``publish``, ``send`` and the
``refresh`` replay check — goes through the gateway.

``refresh`` is admission again, in band: the token is verified offline
(:meth:`wsauth.ws.gateway.Gateway.verify`), must be for the same ``sub`` and
``sid`` (else ``subject_mismatch``, the token unspent), and is consumed in
Redis (GETDEL, as a handshake). Then the new claims replace the old: the
channels the new scope no longer grants are left at once (an
``unsubscribed`` frame with reason ``scope_changed`` each, before the
reply), and the connection's deadline starts again (``expires_in`` in the
reply).

On a channel with history (``WSAUTH_HISTORY_CHANNELS``,
:mod:`wsauth.shared.state.history`) ``subscribe`` recovers: the connection
joins the channel with a :class:`~wsauth.shared.state.history.Seam` that
holds its live messages, reads the stream after ``since`` once this node
receives the channel, delivers what was missed and then the held messages
(by offset: no gap, no duplicate), and replies ``ok`` with ``recovered``
(``true``, or ``false`` and a ``reason``) and the channel's position
(``offset``, ``epoch``) — also without ``since``, so a client always knows
where it is. ``since`` on a channel without history: ``recovered: false``,
``reason: "no_history"``.

A host application may take ``send`` messages itself instead of the inbox
stream: pass ``on_send`` (a callable taking an
:class:`~wsauth.shared.state.inbox.InboxMessage`, returning None or an
awaitable); the command is answered ``ok`` once it returns.
"""

from __future__ import annotations

import inspect
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from wsauth.shared.core.channels import is_channel
from wsauth.shared.core.config import Settings
from wsauth.shared.core.errors import (
    CommandError,
    NotGranted,
    RateLimited,
    SubjectMismatch,
    TooManySubscriptions,
    WsAuthError,
)
from wsauth.shared.core.scopes import Scope, lost_channels, scope_of_claim
from wsauth.shared.core.tokens import Claims
from wsauth.shared.state.events import apublish_message
from wsauth.shared.state.history import (
    Position,
    Seam,
    catch_up,
    message_frame,
    position_fields,
)
from wsauth.shared.state.inbox import InboxMessage, aappend
from wsauth.ws import protocol
from wsauth.ws.lifetime import REASONS, REVOKED
from wsauth.ws.protocol import Command, Publish, Refresh, Send, Subscribe, Unsubscribe

log = logging.getLogger("wsauth.gateway")

SCOPE_CHANGED = "scope_changed"

__all__ = ["CommandBucket", "Limits", "Outbox", "Session"]


@dataclass(frozen=True, slots=True)
class Limits:
    """The per-connection limits (docs/reference/protocol.md, "Limits")."""

    command_rate: float
    command_burst: int
    max_subscriptions: int
    max_pending_bytes: int
    inbox_max_length: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            command_rate=float(settings.command_rate),
            command_burst=settings.command_burst,
            max_subscriptions=settings.max_subscriptions,
            max_pending_bytes=settings.max_pending_bytes,
            inbox_max_length=settings.inbox_max_length,
        )


class CommandBucket:
    """A token bucket: ``burst`` commands at once, refilled at ``rate`` per second. Pure."""

    __slots__ = ("_burst", "_last", "_level", "_rate")

    def __init__(self, *, rate: float, burst: int, now: float) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._level = float(burst)
        self._last = now

    def take(self, now: float) -> bool:
        """Spend one command; False (nothing spent) when the bucket is empty."""
        elapsed = max(0.0, now - self._last)
        self._last = now
        self._level = min(self._burst, self._level + elapsed * self._rate)
        if self._level < 1.0:
            return False
        self._level -= 1.0
        return True

    def retry_after(self) -> float:
        """Seconds until the next command would be accepted."""
        return max(0.0, (1.0 - self._level) / self._rate)


class Outbox:
    """Bytes queued to a connection and not yet written to its socket (the slow-reader cap)."""

    __slots__ = ("limit", "pending")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.pending = 0

    def queued(self, size: int) -> bool:
        """Count ``size`` more bytes; False once the connection is over its limit."""
        self.pending += size
        return self.pending <= self.limit

    def written(self, size: int) -> None:
        self.pending = max(0, self.pending - size)


class Channels(Protocol):
    """What a session needs of its gateway node (:class:`wsauth.ws.gateway.Gateway`)."""

    settings: Settings
    redis: Any
    replay: Any
    revocations: Any
    history: Any

    def join(self, connection: Any, channel: str) -> None: ...

    def leave(self, connection: Any, channel: str) -> None: ...

    def verify(self, token: str) -> Claims: ...

    async def synced(self) -> None: ...

    def clock(self) -> float: ...


class SessionConnection(Protocol):
    def send(self, message: str) -> None: ...

    def close(self, code: int | None = None, reason: str | None = None) -> None: ...


OnSend = Callable[[InboxMessage], Awaitable[None] | None]


class Session:
    """Protocol v1 for one connection."""

    def __init__(
        self,
        connection: SessionConnection,
        gateway: Channels,
        *,
        claims: Claims,
        limits: Limits,
        now: Callable[[], float],
        on_refreshed: Callable[[Claims], float | None],
        on_send: OnSend | None = None,
    ) -> None:
        """``now`` is a monotonic clock (rate limits); ``on_refreshed`` is called with the
        new claims of a ``refresh`` and answers the new ``expires_in`` (None: no deadline)."""
        self.connection = connection
        self.gateway = gateway
        self.claims = claims
        self.scope: Scope = scope_of_claim(claims.scope)
        self.limits = limits
        self.subscriptions: set[str] = set()
        # History channels being (or having been) recovered: the seam of each.
        self.seams: dict[str, Seam] = {}
        self.connection_id = secrets.token_urlsafe(12)
        self._now = now
        self._bucket = CommandBucket(
            rate=limits.command_rate, burst=limits.command_burst, now=now()
        )
        self._on_refreshed = on_refreshed
        self._on_send = on_send
        self._closed = False

    # --- hooks of the handler ------------------------------------------------------

    def receive(self, frame: str | bytes) -> Awaitable[None] | None:
        """Run one client frame; None when it is done, else an awaitable to await
        (Tornado then reads the connection's next frame only after it: commands run in order).

        Never raises: every refusal is a reply.
        """
        # Every frame counts, a malformed one too: else garbage would be a free flood.
        allowed = self._bucket.take(self._now())
        try:
            command = protocol.parse_command(frame)
        except WsAuthError as error:
            if allowed:
                self._refuse(None, protocol.command_id_of(error), error.code)
            else:
                self._rate_limited(None, protocol.command_id_of(error))
            return None
        if not allowed:
            self._rate_limited(command, command.id)
            return None
        try:
            return self._run(command)
        except WsAuthError as error:
            self._refuse(command, command.id, error.code)
        except Exception:
            log.exception("a %s command failed", type(command).__name__.lower())
            self._refuse(command, command.id, "internal_error")
        return None

    def closed(self) -> None:
        """The connection is gone (the gateway leaves its channels when it unregisters it)."""
        self._closed = True
        self.subscriptions.clear()
        self.seams.clear()

    # --- commands ----------------------------------------------------------------

    def _run(self, command: Command) -> Awaitable[None] | None:
        if isinstance(command, Subscribe):
            if self._subscribe(command):
                return self._guarded(command, self._synced(command))
            # Held already (idempotent); a since on a channel without history says so.
            history = self.gateway.history
            if command.since is not None and not (history and history.covers(command.channel)):
                self._ok(command, recovered=False, reason="no_history")
            else:
                self._ok(command)
            return None
        if isinstance(command, Unsubscribe):
            self._unsubscribe(command)
            return None
        if isinstance(command, Publish):
            if not self.scope.may_publish(command.channel):
                raise NotGranted(channel=command.channel)
            return self._guarded(command, self._publish(command))
        if isinstance(command, Send):
            return self._guarded(command, self._send(command))
        return self._guarded(command, self._refresh(command))

    def _subscribe(self, command: Subscribe) -> bool:
        """Join the channel; True when it was not joined before."""
        channel = command.channel
        if not self.scope.may_subscribe(channel):
            raise NotGranted(channel=channel)
        if channel in self.subscriptions:
            return False
        if len(self.subscriptions) >= self.limits.max_subscriptions:
            raise TooManySubscriptions(limit=self.limits.max_subscriptions)
        history = self.gateway.history
        if history is not None and history.covers(channel):
            if command.since is not None:
                _position(command)  # refused before anything is joined
            self.seams[channel] = Seam()  # before the join: it holds the first live messages
        self.gateway.join(self.connection, channel)
        self.subscriptions.add(channel)
        return True

    async def _synced(self, command: Subscribe) -> None:
        """Reply once this node receives the channel: a message published after the
        ``ok`` reaches the subscriber."""
        await self.gateway.synced()
        fields: dict[str, Any] = {}
        if command.channel in self.seams:
            try:
                fields = await self._recover(command, self.seams[command.channel])
            except BaseException:
                self._drop(command.channel)  # the client may subscribe again
                raise
        elif command.since is not None:
            fields = {"recovered": False, "reason": "no_history"}
        self._ok(command, **fields)

    async def _recover(self, command: Subscribe, seam: Seam) -> dict[str, Any]:
        """Read the channel's stream, deliver what ``since`` missed and the held live
        messages; return the reply's fields."""
        gateway, channel = self.gateway, command.channel
        since = _position(command) if command.since is not None else None
        read_after = since.offset if since is not None else 2**53
        stream = await gateway.history.read_since(gateway.redis, channel, read_after)
        plan = catch_up(since, stream)
        if self._closed or channel not in self.subscriptions:
            return plan.fields
        for entry in seam.start(plan.entries, epoch=stream.epoch, after=plan.after):
            self.connection.send(message_frame(channel, entry))
        return {**plan.fields, **position_fields(seam, stream)}

    def restore(self, channels: Iterable[str]) -> list[str]:
        """Join again, on a resumed connection, the channels of its ticket that keep no
        history and that the scope still grants (within the subscription limit); return
        them. A history channel waits for the client's ``subscribe`` with ``since``: only
        the client knows the last message it received."""
        history = self.gateway.history
        restored: list[str] = []
        for channel in channels:
            if (
                not is_channel(channel)
                or channel in self.subscriptions
                or not self.scope.may_subscribe(channel)
                or (history is not None and history.covers(channel))
                or len(self.subscriptions) >= self.limits.max_subscriptions
            ):
                continue
            self.gateway.join(self.connection, channel)
            self.subscriptions.add(channel)
            restored.append(channel)
        return restored

    def _drop(self, channel: str) -> None:
        self.seams.pop(channel, None)
        if channel in self.subscriptions:
            self.subscriptions.discard(channel)
            self.gateway.leave(self.connection, channel)

    def _unsubscribe(self, command: Unsubscribe) -> None:
        self._drop(command.channel)
        self._ok(command)

    async def _publish(self, command: Publish) -> None:
        await apublish_message(
            self.gateway.redis,
            self.gateway.settings.redis_prefix,
            command.channel,
            command.data,
            history=self.gateway.history,
        )
        self._ok(command)

    async def _send(self, command: Send) -> None:
        claims = self.claims
        if self._on_send is not None:
            taken = self._on_send(
                InboxMessage(
                    id="",
                    sub=claims.sub,
                    sid=claims.sid,
                    connection=self.connection_id,
                    data=command.data,
                    at=self.gateway.clock(),
                )
            )
            if inspect.isawaitable(taken):
                await taken
        else:
            await aappend(
                self.gateway.redis,
                self.gateway.settings.redis_prefix,
                sub=claims.sub,
                sid=claims.sid,
                connection=self.connection_id,
                data=command.data,
                max_length=self.limits.inbox_max_length,
                now=self.gateway.clock(),
            )
        self._ok(command)

    async def _refresh(self, command: Refresh) -> None:
        gateway = self.gateway
        try:
            claims = gateway.verify(command.token)
            if claims.sub != self.claims.sub or claims.sid != self.claims.sid:
                raise SubjectMismatch()
            await gateway.replay.consume(claims)
        except WsAuthError as error:
            log.info("refresh refused sub=%s reason=%s", self.claims.sub, error.code)
            raise
        if self._closed:
            return
        if gateway.revocations.revoked(
            sub=claims.sub, sid=claims.sid, iat=claims.iat, now=gateway.clock()
        ):
            self.connection.close(REVOKED, REASONS[REVOKED])
            return
        self.claims = claims
        self.scope = scope_of_claim(claims.scope)
        for channel in sorted(lost_channels(self.subscriptions, self.scope)):
            self.subscriptions.discard(channel)
            self.seams.pop(channel, None)
            gateway.leave(self.connection, channel)
            self.connection.send(protocol.unsubscribed(channel, SCOPE_CHANGED))
        expires_in = self._on_refreshed(claims)
        self._ok(command, expires_in=expires_in)

    async def _guarded(self, command: Command, work: Awaitable[None]) -> None:
        """Await ``work``; a refusal or a failure becomes the command's error reply."""
        try:
            await work
        except WsAuthError as error:
            self._refuse(command, command.id, error.code)
        except Exception:
            log.exception("a %s command failed", type(command).__name__.lower())
            self._refuse(command, command.id, "internal_error")

    def _count(self, command: str, outcome: str) -> None:
        metrics = getattr(self.gateway, "metrics", None)
        if metrics is not None:
            metrics.command(command, outcome)

    def _ok(self, command: Command, **fields: Any) -> None:
        self._count(_COMMAND_NAMES[type(command)], "ok")
        self.connection.send(protocol.reply_ok(command.id, **fields))

    def _rate_limited(self, command: Command | None, command_id: protocol.CommandId | None) -> None:
        retry_after = round(self._bucket.retry_after(), 3)
        self._refuse(command, command_id, RateLimited.code, retry_after=retry_after)

    def _refuse(
        self,
        command: Command | None,
        command_id: protocol.CommandId | None,
        code: str,
        **fields: Any,
    ) -> None:
        self._count("invalid" if command is None else _COMMAND_NAMES[type(command)], code)
        self.connection.send(protocol.reply_error(command_id, code, **fields))


_COMMAND_NAMES: dict[type, str] = {
    Subscribe: "subscribe",
    Unsubscribe: "unsubscribe",
    Publish: "publish",
    Send: "send",
    Refresh: "refresh",
}


def _position(command: Subscribe) -> Position:
    """Raises: CommandError: ``since`` is not a position this gateway hands out."""
    assert command.since is not None
    try:
        return Position.parse(command.since.offset, command.since.epoch)
    except ValueError as error:
        raise CommandError(str(error), id=command.id) from None
