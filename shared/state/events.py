"""Events from backends to live connections: push to a user, a message to a channel, revoke.

Where an event travels (Redis pub/sub), DESIGN.md "Delivery across nodes":

- a **push** to user ``sub`` on the user's topic ``{prefix}user:<sub>``;
- a **message** to channel ``name`` on the channel's topic ``{prefix}channel:<name>``;
- a **revocation** on the one broadcast channel ``{prefix}events``, which
  every gateway process reads.

A gateway process subscribes to a topic only while it holds a connection of
that user or a member of that channel (:mod:`wsauth.ws.fanout`), so a node
does no work for users and channels it does not hold. ``PUBLISH`` answers how
many gateway processes received the event — for a topic, the ones holding
that user or channel; not how many connections. On a Redis Cluster whose
servers have sharded pub/sub (Redis >= 7), topics use ``SPUBLISH``
(:func:`wsauth.shared.state.redis_conn.sharded_pubsub`): a message then goes
to the one master of its hash slot rather than to every node of the Cluster.

Gateways still deliver a push or message that arrives on the broadcast
channel (what publishers before per-topic fan-out sent), so during an upgrade,
upgrade the gateways first, then the publishers.

Wire format (JSON, UTF-8, at most :data:`MAX_EVENT_BYTES`)::

    {"type": "push",    "sub": "alice", "data": <any JSON value>}
    {"type": "message", "channel": "chat:lobby", "data": <any JSON value>}
    {"type": "revoke",  "sub": "alice", "at": 1700000000.5}
    {"type": "revoke",  "sid": "Qm9...", "at": 1700000000.5}
    {"type": "revoke",  "kid": "NzbL...", "at": 1700000000.5}   (a signing key: wsauth revoke --kid)
    {"type": "report_keyset", "id": "Yx3..."}   (wsauth keys gateways: every process reports)

A push goes to the socket as ``{"type": "push", "data": ...}``, a message as
``{"type": "message", "channel": ..., "data": ...}`` (both with ``offset`` and
``epoch`` when kept in history: :mod:`wsauth.shared.state.history`). Pub/sub is
at-most-once: a push to a user with no live connection, or published while
a gateway is reconnecting to Redis, is dropped (a no-op, not an error).
Revocations do not depend on it alone: :mod:`wsauth.shared.state.sessions` also records
them in Redis, and a gateway re-checks its connections against those
records after it resubscribes.

The encoding and decoding here are pure; :func:`publish` and friends are the
one I/O step (sync redis-py for the issuer and the CLI, plus
:func:`apublish` for asyncio code).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis
import redis.asyncio

from wsauth.shared.core.channels import check_channel
from wsauth.shared.core.errors import BadEvent, EventTooLarge, Unavailable, WsAuthError
from wsauth.shared.core.tokens import MAX_SID_LENGTH, MAX_SUB_LENGTH
from wsauth.shared.state.redis_conn import ready, sharded_pubsub

if TYPE_CHECKING:
    from wsauth.shared.state.history import History

MAX_EVENT_BYTES = 64 * 1024
CHANNEL_SUFFIX = "events"


def channel(prefix: str) -> str:
    """The broadcast pub/sub channel every gateway reads: ``{prefix}events``."""
    return f"{prefix}{CHANNEL_SUFFIX}"


def user_topic(prefix: str, sub: str) -> str:
    """The pub/sub topic of the pushes to user ``sub``: ``{prefix}user:<sub>``."""
    return f"{prefix}user:{sub}"


def channel_topic(prefix: str, name: str) -> str:
    """The pub/sub topic of the messages of channel ``name``: ``{prefix}channel:<name>``."""
    return f"{prefix}channel:{name}"


@dataclass(frozen=True)
class Push:
    """Deliver ``data`` (any JSON value) to every live connection of ``sub``."""

    sub: str
    data: Any
    # Set with WSAUTH_HISTORY_USERS (wsauth.shared.state.history): the push's place in
    # the user's stream, a decimal string, and the stream's epoch.
    offset: str | None = None
    epoch: str | None = None


@dataclass(frozen=True)
class Revoke:
    """Close (4001) the connections of ``sub`` or of issuer session ``sid`` opened before
    ``at``, or every connection authenticated with signing key ``kid`` (then refuse its tokens).
    """

    sub: str | None = None
    sid: str | None = None
    at: float = 0.0
    kid: str | None = None


MAX_KID_LENGTH = 128


def _one_target(sub: object, sid: object, kid: object) -> None:
    if sum(value is not None for value in (sub, sid, kid)) != 1:
        raise BadEvent("a revoke event names exactly one of sub, sid and kid")


@dataclass(frozen=True)
class Message:
    """Deliver ``data`` (any JSON value) to every connection that joined ``channel``."""

    channel: str
    data: Any
    # Set on a channel with history (wsauth.shared.state.history): the message's place
    # in the channel's stream, a decimal string, and the stream's epoch.
    offset: str | None = None
    epoch: str | None = None


@dataclass(frozen=True)
class ReportKeyset:
    """Ask every gateway process to write its keyset report under request ``id``
    (:mod:`wsauth.shared.state.keyset_reports`)."""

    id: str


Event = Push | Revoke | Message | ReportKeyset
MAX_REPORT_ID_LENGTH = 64


def _check_id(value: object, name: str, limit: int) -> str:
    if not isinstance(value, str) or not value or len(value) > limit or not value.isprintable():
        raise BadEvent(f"{name} must be 1 to {limit} printable characters")
    return value


def encode(event: Event) -> bytes:
    """The wire form of ``event``.

    Raises:
        BadEvent: a field is invalid (empty sub, both or neither of sub/sid, data not JSON).
        EventTooLarge: the encoded event is over :data:`MAX_EVENT_BYTES`.
    """
    document: dict[str, Any]
    if isinstance(event, Push):
        document = {"type": "push", "sub": _check_id(event.sub, "sub", MAX_SUB_LENGTH)}
        document["data"] = event.data
    elif isinstance(event, ReportKeyset):
        document = {"type": "report_keyset", "id": _check_report_id(event.id)}
    elif isinstance(event, Message):
        document = {"type": "message", "channel": _channel(event.channel), "data": event.data}
    else:
        _one_target(event.sub, event.sid, event.kid)
        document = {"type": "revoke"}
        if event.sub is not None:
            document["sub"] = _check_id(event.sub, "sub", MAX_SUB_LENGTH)
        if event.sid is not None:
            document["sid"] = _check_id(event.sid, "sid", MAX_SID_LENGTH)
        if event.kid is not None:
            document["kid"] = _check_id(event.kid, "kid", MAX_KID_LENGTH)
        if not math.isfinite(event.at):
            raise BadEvent("at must be a finite number")
        document["at"] = event.at
    try:
        raw = json.dumps(document, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        raise BadEvent("data must be a JSON value") from None
    body = raw.encode("utf-8")
    if len(body) > MAX_EVENT_BYTES:
        raise EventTooLarge(length=len(body))
    return body


def decode(raw: bytes | str) -> Event:
    """Parse an event read from the channel.

    Raises:
        EventTooLarge: over :data:`MAX_EVENT_BYTES`.
        BadEvent: not JSON, or not one of the event shapes.
    """
    body = raw.encode("utf-8") if isinstance(raw, str) else raw
    if len(body) > MAX_EVENT_BYTES:
        raise EventTooLarge(length=len(body))
    try:
        document = json.loads(body)
    except ValueError:
        raise BadEvent("not JSON") from None
    if not isinstance(document, dict):
        raise BadEvent("not a JSON object")
    kind = document.get("type")
    if kind == "push":
        if "data" not in document:
            raise BadEvent("a push event has data")
        offset, epoch = _position(document)
        to = _check_id(document.get("sub"), "sub", MAX_SUB_LENGTH)
        return Push(to, document["data"], offset, epoch)
    if kind == "revoke":
        sub, sid, at = document.get("sub"), document.get("sid"), document.get("at")
        kid = document.get("kid")
        _one_target(sub, sid, kid)
        if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at):
            raise BadEvent("at must be a number")
        return Revoke(
            sub=None if sub is None else _check_id(sub, "sub", MAX_SUB_LENGTH),
            sid=None if sid is None else _check_id(sid, "sid", MAX_SID_LENGTH),
            at=float(at),
            kid=None if kid is None else _check_id(kid, "kid", MAX_KID_LENGTH),
        )
    if kind == "report_keyset":
        return ReportKeyset(_check_report_id(document.get("id")))
    if kind == "message":
        if "data" not in document:
            raise BadEvent("a message event has data")
        offset, epoch = _position(document)
        return Message(_channel(document.get("channel")), document["data"], offset, epoch)
    raise BadEvent("unknown event type")


def _position(document: dict[str, Any]) -> tuple[str | None, str | None]:
    """The ``offset`` and ``epoch`` of a push or message kept in history (or neither)."""
    offset, epoch = document.get("offset"), document.get("epoch")
    if (offset is None) != (epoch is None) or not all(
        value is None or (isinstance(value, str) and 0 < len(value) <= 32)
        for value in (offset, epoch)
    ):
        raise BadEvent("offset and epoch are strings, both or neither")
    return offset, epoch


def _check_report_id(value: object) -> str:
    allowed = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    if (
        not isinstance(value, str)
        or not 16 <= len(value) <= MAX_REPORT_ID_LENGTH
        or not set(value) <= allowed
    ):
        raise BadEvent("a report id is 16 to 64 base64url characters")
    return value


def _channel(name: object) -> str:
    try:
        return check_channel(name)
    except WsAuthError as error:
        raise BadEvent(str(error)) from None


def socket_message(event: Push | Message) -> str:
    """What a connection receives: ``{"type": "push", "data": ...}`` for a push,
    ``{"type": "message", "channel": <name>, "data": ...}`` for a channel message."""
    document: dict[str, Any] = (
        {"type": "push", "data": event.data}
        if isinstance(event, Push)
        else {"type": "message", "channel": event.channel, "data": event.data}
    )
    if event.offset is not None:
        document["offset"], document["epoch"] = event.offset, event.epoch
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


def topic_of(prefix: str, event: Event) -> str:
    """Where ``event`` is published: its user's or channel's topic, or (a revocation)
    the broadcast channel."""
    if isinstance(event, Push):
        return user_topic(prefix, event.sub)
    if isinstance(event, Message):
        return channel_topic(prefix, event.channel)
    return channel(prefix)


def _sharded(client: object, event: Event) -> bool:
    """``SPUBLISH`` for a topic on a Cluster with sharded pub/sub, else ``PUBLISH``."""
    return not isinstance(event, Revoke | ReportKeyset) and sharded_pubsub(client)[0]


def publish(client: redis.Redis, prefix: str, event: Event) -> int:
    """Publish ``event`` where it travels (module docstring); return how many gateway
    processes received it.

    Raises:
        BadEvent, EventTooLarge: see :func:`encode` (nothing is published).
        Unavailable: Redis did not answer in time.
    """
    body, topic = encode(event), topic_of(prefix, event)
    try:
        if _sharded(client, event):
            return int(client.spublish(topic, body))
        return int(client.publish(topic, body))
    except redis.RedisError as error:
        raise Unavailable(type(error).__name__) from None


async def apublish(client: redis.asyncio.Redis, prefix: str, event: Event) -> int:
    """:func:`publish` for ``redis.asyncio`` clients (a Cluster client: after its first
    command, or :func:`wsauth.shared.state.redis_conn.ready`, it knows whether to shard)."""
    body, topic = encode(event), topic_of(prefix, event)
    try:
        await ready(client)  # a Cluster client loads its slot map and command table
        if _sharded(client, event):
            return int(await client.spublish(topic, body))
        return int(await client.publish(topic, body))
    except (redis.RedisError, OSError) as error:
        raise Unavailable(type(error).__name__) from None


def publish_push(
    client: redis.Redis, prefix: str, sub: str, data: Any, *, history: History | None = None
) -> int:
    """Deliver ``data`` to every live connection of ``sub`` on every gateway node.

    With ``history`` (:meth:`History.from_settings`) keeping users' pushes
    (``WSAUTH_HISTORY_USERS``), the push is also appended to the user's stream, in the
    same atomic step, so a client that comes back recovers it.

    Returns the number of gateway processes holding a connection of ``sub`` (0 when
    none does). A user with no live connection is not an error: the message is dropped
    (or only kept in the user's history).

    Raises:
        BadEvent: ``sub`` is empty or too long, or ``data`` is not JSON-serialisable.
        EventTooLarge: the event is over :data:`MAX_EVENT_BYTES`.
        Unavailable: Redis did not answer in time.
    """
    return _publish_kept(client, prefix, Push(sub, data), history)


def publish_revoke(
    client: redis.Redis,
    prefix: str,
    *,
    sub: str | None = None,
    sid: str | None = None,
    kid: str | None = None,
    now: float | None = None,
) -> int:
    """Close (4001) the live connections of ``sub``, ``sid`` or signing key ``kid`` on every node.

    This is the live half of a revocation; :func:`wsauth.shared.state.sessions.revoke_session`
    and :func:`wsauth.shared.state.sessions.revoke_subject` also record it in Redis. A ``kid``
    is not recorded: remove the key from the JWKS too (``wsauth keys revoke``).

    Raises:
        BadEvent: not exactly one of ``sub``, ``sid`` and ``kid``.
        Unavailable: Redis did not answer in time.
    """
    at = time.time() if now is None else now
    return publish(client, prefix, Revoke(sub=sub, sid=sid, at=at, kid=kid))


def publish_message(
    client: redis.Redis, prefix: str, channel: str, data: Any, *, history: History | None = None
) -> int:
    """Deliver ``data`` to every connection that joined ``channel``, on every gateway node.

    With ``history`` (:meth:`History.from_settings`) and a channel it covers, the
    message is also appended to the channel's stream, in the same atomic step.

    Returns how many gateway processes hold a member of ``channel`` (0: none; not an error).

    Raises:
        BadChannel: ``channel`` is outside the channel grammar (nothing is published).
        BadEvent: ``data`` is not JSON-serialisable.
        EventTooLarge: the event is over :data:`MAX_EVENT_BYTES`.
        Unavailable: Redis did not answer in time.
    """
    return _publish_kept(client, prefix, Message(check_channel(channel), data), history)


async def apublish_message(
    client: redis.asyncio.Redis,
    prefix: str,
    channel: str,
    data: Any,
    *,
    history: History | None = None,
) -> int:
    """:func:`publish_message` for asyncio code (``redis.asyncio``); same answer and errors."""
    return await _apublish_kept(client, prefix, Message(check_channel(channel), data), history)


def _publish_kept(
    client: redis.Redis, prefix: str, event: Push | Message, history: History | None
) -> int:
    """Publish ``event``; through its stream when ``history`` keeps it (one atomic step)."""
    if history is not None and history.keeps(event):
        return history.append_event(client, event, sharded=_sharded(client, event)).receivers
    return publish(client, prefix, event)


async def _apublish_kept(
    client: redis.asyncio.Redis, prefix: str, event: Push | Message, history: History | None
) -> int:
    """:func:`_publish_kept` for asyncio code."""
    if history is None or not history.keeps(event):
        return await apublish(client, prefix, event)
    try:
        await ready(client)  # a Cluster client loads its slot map and command table
    except (redis.RedisError, OSError) as error:
        raise Unavailable(type(error).__name__) from None
    appended = await history.aappend_event(client, event, sharded=_sharded(client, event))
    return appended.receivers


async def apublish_push(
    client: redis.asyncio.Redis,
    prefix: str,
    sub: str,
    data: Any,
    *,
    history: History | None = None,
) -> int:
    """:func:`publish_push` for asyncio code (``redis.asyncio``); same answer and errors."""
    return await _apublish_kept(client, prefix, Push(sub, data), history)
