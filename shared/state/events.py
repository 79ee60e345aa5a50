"""Events from backends to live connections: push a message to a user, revoke connections.

Every event travels on ONE Redis pub/sub channel, ``{prefix}events``; each
gateway process holds one subscription to it (:mod:`wsauth.ws.fanout`) and
delivers to its own connections. One channel keeps the Redis side trivial
(a gateway needs no per-user subscriptions) at the cost of every node
seeing every event; a node drops events for users it does not hold, which
is a dictionary lookup. ``PUBLISH`` answers how many gateway processes
received the event — not how many connections.

Wire format (JSON, UTF-8, at most :data:`MAX_EVENT_BYTES`)::

    {"type": "push",   "sub": "alice", "data": <any JSON value>}
    {"type": "revoke", "sub": "alice", "at": 1700000000.5}
    {"type": "revoke", "sid": "Qm9...", "at": 1700000000.5}

A push goes to the socket as ``{"type": "push", "data": ...}``. Pub/sub is
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
from typing import Any

import redis
import redis.asyncio

from wsauth.shared.core.channels import check_channel
from wsauth.shared.core.errors import BadEvent, EventTooLarge, Unavailable, WsAuthError
from wsauth.shared.core.tokens import MAX_SID_LENGTH, MAX_SUB_LENGTH
from wsauth.shared.state.history import History

MAX_EVENT_BYTES = 64 * 1024
CHANNEL_SUFFIX = "events"


def channel(prefix: str) -> str:
    """The one pub/sub channel of all events: ``{prefix}events``."""
    return f"{prefix}{CHANNEL_SUFFIX}"


@dataclass(frozen=True)
class Push:
    """Deliver ``data`` (any JSON value) to every live connection of ``sub``."""

    sub: str
    data: Any


@dataclass(frozen=True)
class Revoke:
    """Close (4001) the connections of ``sub`` or of issuer session ``sid`` opened before ``at``."""

    sub: str | None = None
    sid: str | None = None
    at: float = 0.0


@dataclass(frozen=True)
class Message:
    """Deliver ``data`` (any JSON value) to every connection that joined ``channel``."""

    channel: str
    data: Any
    # Set on a channel with history (wsauth.shared.state.history): the message's place
    # in the channel's stream, a decimal string, and the stream's epoch.
    offset: str | None = None
    epoch: str | None = None


Event = Push | Revoke | Message


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
    elif isinstance(event, Message):
        document = {"type": "message", "channel": _channel(event.channel), "data": event.data}
    else:
        if (event.sub is None) == (event.sid is None):
            raise BadEvent("a revoke event names exactly one of sub and sid")
        document = {"type": "revoke"}
        if event.sub is not None:
            document["sub"] = _check_id(event.sub, "sub", MAX_SUB_LENGTH)
        if event.sid is not None:
            document["sid"] = _check_id(event.sid, "sid", MAX_SID_LENGTH)
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
        return Push(_check_id(document.get("sub"), "sub", MAX_SUB_LENGTH), document["data"])
    if kind == "revoke":
        sub, sid, at = document.get("sub"), document.get("sid"), document.get("at")
        if (sub is None) == (sid is None):
            raise BadEvent("a revoke event names exactly one of sub and sid")
        if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at):
            raise BadEvent("at must be a number")
        return Revoke(
            sub=None if sub is None else _check_id(sub, "sub", MAX_SUB_LENGTH),
            sid=None if sid is None else _check_id(sid, "sid", MAX_SID_LENGTH),
            at=float(at),
        )
    if kind == "message":
        if "data" not in document:
            raise BadEvent("a message event has data")
        offset, epoch = document.get("offset"), document.get("epoch")
        if (offset is None) != (epoch is None) or not all(
            value is None or (isinstance(value, str) and 0 < len(value) <= 32)
            for value in (offset, epoch)
        ):
            raise BadEvent("offset and epoch are strings, both or neither")
        return Message(_channel(document.get("channel")), document["data"], offset, epoch)
    raise BadEvent("unknown event type")


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
    if isinstance(event, Message) and event.offset is not None:
        document["offset"], document["epoch"] = event.offset, event.epoch
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


def publish(client: redis.Redis, prefix: str, event: Event) -> int:
    """Publish ``event``; return how many gateway processes received it.

    Raises:
        BadEvent, EventTooLarge: see :func:`encode` (nothing is published).
        Unavailable: Redis did not answer in time.
    """
    body = encode(event)
    try:
        return int(client.publish(channel(prefix), body))
    except redis.RedisError as error:
        raise Unavailable(type(error).__name__) from None


async def apublish(client: redis.asyncio.Redis, prefix: str, event: Event) -> int:
    """:func:`publish` for ``redis.asyncio`` clients."""
    body = encode(event)
    try:
        return int(await client.publish(channel(prefix), body))
    except (redis.RedisError, OSError) as error:
        raise Unavailable(type(error).__name__) from None


def publish_push(client: redis.Redis, prefix: str, sub: str, data: Any) -> int:
    """Deliver ``data`` to every live connection of ``sub`` on every gateway node.

    Returns the number of gateway processes subscribed (0 when none runs).
    A user with no live connection is not an error: the message is dropped.

    Raises:
        BadEvent: ``sub`` is empty or too long, or ``data`` is not JSON-serialisable.
        EventTooLarge: the event is over :data:`MAX_EVENT_BYTES`.
        Unavailable: Redis did not answer in time.
    """
    return publish(client, prefix, Push(sub, data))


def publish_revoke(
    client: redis.Redis,
    prefix: str,
    *,
    sub: str | None = None,
    sid: str | None = None,
    now: float | None = None,
) -> int:
    """Close (4001) the live connections of ``sub`` or ``sid`` on every node.

    This is the live half of a revocation; :func:`wsauth.shared.state.sessions.revoke_session`
    and :func:`wsauth.shared.state.sessions.revoke_subject` also record it in Redis.

    Raises:
        BadEvent: not exactly one of ``sub`` and ``sid``.
        Unavailable: Redis did not answer in time.
    """
    at = time.time() if now is None else now
    return publish(client, prefix, Revoke(sub=sub, sid=sid, at=at))


def publish_message(
    client: redis.Redis, prefix: str, channel: str, data: Any, *, history: History | None = None
) -> int:
    """Deliver ``data`` to every connection that joined ``channel``, on every gateway node.

    With ``history`` (:meth:`History.from_settings`) and a channel it covers, the
    message is also appended to the channel's stream, in the same atomic step.

    Returns how many gateway processes received it (0: nobody listens; not an error).

    Raises:
        BadChannel: ``channel`` is outside the channel grammar (nothing is published).
        BadEvent: ``data`` is not JSON-serialisable.
        EventTooLarge: the event is over :data:`MAX_EVENT_BYTES`.
        Unavailable: Redis did not answer in time.
    """
    message = Message(check_channel(channel), data)
    if history is not None and history.covers(channel):
        body = encode(message).decode("utf-8")
        return history.append(
            client, channel, data=_data_json(data), topic=_topic(prefix), body=body
        ).receivers
    return publish(client, prefix, message)


async def apublish_message(
    client: redis.asyncio.Redis,
    prefix: str,
    channel: str,
    data: Any,
    *,
    history: History | None = None,
) -> int:
    """:func:`publish_message` for asyncio code (``redis.asyncio``); same answer and errors."""
    message = Message(check_channel(channel), data)
    if history is not None and history.covers(channel):
        body = encode(message).decode("utf-8")
        appended = await history.aappend(
            client, channel, data=_data_json(data), topic=_topic(prefix), body=body
        )
        return appended.receivers
    return await apublish(client, prefix, message)


def _topic(prefix: str) -> str:
    return channel(prefix)


def _data_json(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


async def apublish_push(client: redis.asyncio.Redis, prefix: str, sub: str, data: Any) -> int:
    """:func:`publish_push` for asyncio code (``redis.asyncio``); same answer and errors."""
    return await apublish(client, prefix, Push(sub, data))
