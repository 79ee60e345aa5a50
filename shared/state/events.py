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
    {"type": "revoke", "kid": "NzbL...", "at": 1700000000.5}   (a signing key: wsauth revoke --kid)
    {"type": "report_keyset", "id": "Yx3..."}   (wsauth keys gateways: every process reports)

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

from wsauth.shared.core.errors import BadEvent, EventTooLarge, Unavailable
from wsauth.shared.core.tokens import MAX_SID_LENGTH, MAX_SUB_LENGTH

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
class ReportKeyset:
    """Ask every gateway process to write its keyset report under request ``id``
    (:mod:`wsauth.shared.state.keyset_reports`)."""

    id: str


Event = Push | Revoke | ReportKeyset
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
        return Push(_check_id(document.get("sub"), "sub", MAX_SUB_LENGTH), document["data"])
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
    raise BadEvent("unknown event type")


def _check_report_id(value: object) -> str:
    allowed = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    if (
        not isinstance(value, str)
        or not 16 <= len(value) <= MAX_REPORT_ID_LENGTH
        or not set(value) <= allowed
    ):
        raise BadEvent("a report id is 16 to 64 base64url characters")
    return value


def socket_message(push: Push) -> str:
    """What a connection receives for ``push``: ``{"type": "push", "data": ...}``."""
    return json.dumps(
        {"type": "push", "data": push.data}, separators=(",", ":"), ensure_ascii=False
    )


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


async def apublish_push(client: redis.asyncio.Redis, prefix: str, sub: str, data: Any) -> int:
    """:func:`publish_push` for asyncio code (``redis.asyncio``); same answer and errors."""
    return await apublish(client, prefix, Push(sub, data))
