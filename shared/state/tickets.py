"""Resume tickets: a dropped connection comes back without a trip to the issuer.

The gateway hands each connection an opaque ticket in its ``welcome`` message
(256 random bits, base64url). The ticket is recorded in Redis, bound to what
the connection was admitted as: its ``sub``, ``sid``, ``scope``, the ``kid``
and ``iat`` of the token it was first opened with, its subscriptions and its
re-authentication deadline. A client whose connection dropped offers the
ticket instead of a fresh token (``wsauth.resume.<ticket>`` or
``Authorization: Resume <ticket>``, :mod:`wsauth.ws.handshake`); any gateway
node accepts it once and the resumed connection is the same logical
connection: same identity, same deadline (never extended), a new ticket.

Redis keys (every one with a TTL; single-key commands only, so Redis Cluster works)::

    {prefix}resume:{sha256(ticket)}  = the record (JSON)  SET NX EX ttl   at welcome
                                                          EXPIRE ttl      renewed per node sweep
                                                          GETDEL          at resume

The key is a hash of the ticket, so a copy of Redis (a dump, ``MONITOR``, a
replica) holds no usable ticket. ``ttl`` is :func:`ticket_ttl`:
``WSAUTH_RESUME_TTL``, never past the deadline. While the connection lives
its node renews the TTL (one pipelined ``EXPIRE`` sweep for all of them), so a
crashed node's tickets die at most ``WSAUTH_RESUME_TTL`` seconds after it.

A resume is accepted only when, in this order (:func:`check_resumable` is the
pure part):

1. the ticket has the shape of one (43 base64url characters): a token
   offered as a ticket is refused here, before Redis (``ticket_malformed``);
2. ``GETDEL`` returns a record (``ticket_replayed``): of racing uses exactly
   one wins, and a ticket never works twice;
3. the deadline has not passed (``ticket_expired``);
4. the key of the original token is still trusted (``ticket_revoked``), and
5. neither its ``sid`` nor (for a token minted before the revocation) its
   ``sub`` is revoked — read from the revocation records of
   :mod:`wsauth.shared.state.sessions` (``ticket_revoked``).

Any Redis error or timeout is :class:`~wsauth.shared.core.errors.Unavailable`
(503): never accepted unchecked. A ticket refused at steps 3 to 5 has been
deleted by step 2: it can never become valid again.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any, NewType

import redis.asyncio

from wsauth.shared.core.errors import (
    TicketExpired,
    TicketMalformed,
    TicketReplayed,
    TicketRevoked,
    Unavailable,
)
from wsauth.shared.core.keyset import b64url
from wsauth.shared.state.batching import LoopBatcher
from wsauth.shared.state.sessions import revoked_session_key, revoked_subject_key

Ticket = NewType("Ticket", str)

TICKET_BYTES = 32
TICKET_LENGTH = 43  # base64url of 32 bytes, no padding
RECORD_VERSION = 1
# Pipelined renewals per round trip.
RENEW_BATCH = 1000

_TICKET = re.compile(r"[A-Za-z0-9_-]{43}")


def new_ticket() -> Ticket:
    """256 random bits, base64url without padding (43 characters)."""
    return Ticket(b64url(secrets.token_bytes(TICKET_BYTES)))


def parse_ticket(value: str) -> Ticket:
    """The ticket itself, checked for its shape only.

    Raises:
        TicketMalformed: not 43 base64url characters (e.g. a JWT offered as a ticket).
    """
    if not _TICKET.fullmatch(value):
        raise TicketMalformed(length=len(value))
    return Ticket(value)


def ticket_key(prefix: str, ticket: Ticket) -> str:
    """The Redis key of a ticket: a hash, so Redis never holds a usable ticket."""
    digest = hashlib.sha256(ticket.encode("ascii")).digest()
    return f"{prefix}resume:{b64url(digest)}"


@dataclass(frozen=True, slots=True)
class Resumable:
    """What a ticket resumes: the identity and limits of the original connection.

    ``iat``, ``exp`` and ``kid`` are those of the token the connection was first
    opened with (a chain of resumes keeps them); ``deadline`` is the wall-clock
    time by which it must re-authenticate with a fresh token (None: no limit).
    """

    sub: str
    sid: str | None
    scope: str | None
    kid: str
    iat: int
    exp: int
    deadline: float | None
    subscriptions: tuple[str, ...] = ()

    def encode(self) -> str:
        return json.dumps(
            {
                "v": RECORD_VERSION,
                "sub": self.sub,
                "sid": self.sid,
                "scope": self.scope,
                "kid": self.kid,
                "iat": self.iat,
                "exp": self.exp,
                "deadline": self.deadline,
                "subs": list(self.subscriptions),
            },
            separators=(",", ":"),
        )

    @classmethod
    def decode(cls, raw: bytes | str) -> Resumable:
        """Raises: TicketReplayed: not a record this version wrote (treated as no record)."""
        try:
            document = json.loads(raw)
            if not isinstance(document, dict) or document.get("v") != RECORD_VERSION:
                raise ValueError("version")
            deadline = document["deadline"]
            record = cls(
                sub=_text(document["sub"]),
                sid=_optional_text(document["sid"]),
                scope=_optional_text(document["scope"]),
                kid=_text(document["kid"]),
                iat=_integer(document["iat"]),
                exp=_integer(document["exp"]),
                deadline=None if deadline is None else float(deadline),
                subscriptions=tuple(_text(name) for name in document["subs"]),
            )
        except (ValueError, KeyError, TypeError):
            raise TicketReplayed("unreadable ticket record") from None
        return record


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return value


def _optional_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _integer(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("not an integer")
    return value


def ticket_ttl(*, resume_ttl: int, deadline: float | None, now: float) -> int:
    """Seconds a ticket may live from ``now``: ``resume_ttl``, cut at the deadline.

    0 means: issue no ticket (tickets off, or the deadline is less than a second away).
    """
    if resume_ttl <= 0:
        return 0
    if deadline is None:
        return resume_ttl
    return max(0, min(resume_ttl, math.floor(deadline - now)))


@dataclass(frozen=True, slots=True)
class Revocations:
    """The revocation records that concern one ticket (None: no record)."""

    subject_at: float | None
    session_at: float | None


def check_resumable(
    record: Resumable, *, now: float, revocations: Revocations, trusted_kids: Collection[str]
) -> None:
    """Steps 3 to 5 of the module docstring, pure.

    Raises:
        TicketExpired: the re-authentication deadline has passed.
        TicketRevoked: the key is no longer trusted, or the sid or sub was revoked.
    """
    if record.deadline is not None and now >= record.deadline:
        raise TicketExpired()
    if record.kid not in trusted_kids:
        raise TicketRevoked("the key of the original token is gone")
    if record.sid is not None and revocations.session_at is not None:
        raise TicketRevoked("session revoked")
    # As for live connections (wsauth.ws.lifetime.RecentRevocations): a revocation of
    # the sub holds for every connection opened with a token minted before it.
    if revocations.subject_at is not None and record.iat < revocations.subject_at:
        raise TicketRevoked("subject revoked")


def _as_time(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("inf")  # unreadable record: fail closed, everything is older


class TicketStore:
    """Issues, renews and consumes tickets (gateway side, ``redis.asyncio``).

    Commands asked for during one turn of the event loop go to Redis in one
    non-transactional pipeline (as :class:`wsauth.shared.state.replay.AsyncReplayGuard`
    does), so a reconnect storm costs one round trip per batch, not per client.
    Each command is still its own atomic command.
    """

    def __init__(self, client: redis.asyncio.Redis, *, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._batcher = LoopBatcher(client)

    def key(self, ticket: Ticket) -> str:
        return ticket_key(self._prefix, ticket)

    async def issue(self, record: Resumable, *, ttl: int) -> tuple[Ticket, str]:
        """Record a fresh ticket for ``record``; return it and its Redis key.

        Raises:
            Unavailable: Redis did not answer in time, or (never expected) the ticket exists.
        """
        ticket = new_ticket()
        key = self.key(ticket)
        stored = await self._command("SET", key, record.encode(), "NX", "EX", max(1, ttl))
        if not stored:
            raise Unavailable("ticket collision")
        return ticket, key

    async def consume(self, ticket: Ticket) -> Resumable:
        """``GETDEL`` the ticket's record: it works once.

        Raises:
            TicketReplayed: no record (used, expired, never issued, lost by Redis).
            Unavailable: Redis did not answer in time (fail closed).
        """
        raw = await self._command("GETDEL", self.key(ticket))
        if raw is None:
            raise TicketReplayed()
        return Resumable.decode(raw)

    async def revocations(self, record: Resumable) -> Revocations:
        """The revocation records of the ticket's ``sub`` and ``sid``.

        Raises:
            Unavailable: Redis did not answer in time (fail closed).
        """
        commands = [("GET", revoked_subject_key(self._prefix, record.sub))]
        if record.sid is not None:
            commands.append(("GET", revoked_session_key(self._prefix, record.sid)))
        values = await self._batcher.send(*commands)
        return Revocations(
            subject_at=_as_time(values[0]),
            session_at=_as_time(values[1]) if len(values) > 1 else None,
        )

    async def renew(self, keys: Iterable[tuple[str, int, Resumable | None]]) -> int:
        """For each ``(key, ttl, record)``: ``EXPIRE key ttl``, or with a record ``SET key
        record XX EX ttl`` (what the ticket resumes changed); ``ttl`` 0 deletes. Pipelined
        in batches.

        Returns how many keys still existed.

        Raises:
            redis.RedisError, OSError: Redis failed (the caller logs it; tickets then
                expire on their own).
        """
        pending = list(keys)
        alive = 0
        for start in range(0, len(pending), RENEW_BATCH):
            batch = pending[start : start + RENEW_BATCH]
            async with self._client.pipeline(transaction=False) as pipe:
                for key, ttl, record in batch:
                    if ttl <= 0:
                        pipe.delete(key)
                    elif record is not None:
                        pipe.set(key, record.encode(), xx=True, ex=ttl)
                    else:
                        pipe.expire(key, ttl)
                replies = await pipe.execute()
            alive += sum(1 for reply in replies if reply)
        return alive

    async def discard(self, keys: Iterable[str]) -> None:
        """Delete tickets (a revoked connection's), one key per command.

        Raises:
            Unavailable: Redis did not answer in time.
        """
        commands = [("DEL", key) for key in keys]
        if commands:
            await self._batcher.send(*commands)

    async def _command(self, *args: Any) -> Any:
        (reply,) = await self._batcher.send(args)
        return reply

    async def close(self) -> None:
        """Answer what is still queued (fail closed); the caller owns the client."""
        await self._batcher.close()


__all__ = [
    "Resumable",
    "Revocations",
    "Ticket",
    "TicketStore",
    "check_resumable",
    "new_ticket",
    "parse_ticket",
    "ticket_key",
    "ticket_ttl",
]
