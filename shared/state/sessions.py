"""Revocation records in Redis: a session's unused tokens, revoked sessions and subjects.

Redis keys (every one with a TTL; single-key commands only, so Redis Cluster works)::

    {prefix}sid:{sid}          SET of the jtis minted for issuer session sid,
                               EXPIRE MAX_TOKEN_TTL + leeway, refreshed at each issue
    {prefix}revoked_sid:{sid}  = revocation time, EX REVOCATION_TTL  (logout, revoke --sid)
    {prefix}revoked_sub:{sub}  = revocation time, EX REVOCATION_TTL  (wsauth revoke --sub)

Revoking a session (:func:`revoke_session`) does three things, in this order:

1. records ``revoked_sid`` — the issuer refuses to mint for that session's
   cookie from now on, and a gateway that missed the live event finds it
   when it re-checks its connections after a pub/sub outage;
2. deletes each unused token of the session (``DEL {prefix}jti:{jti}``, one
   key per command), then the index: a token already handed out but not
   yet used can no longer open a connection;
3. publishes the revoke event (:mod:`wsauth.shared.state.events`): every gateway closes
   the session's live connections with 4001.

Revoking a subject (:func:`revoke_subject`) closes every connection of that
user opened with a token minted before the revocation; the user may connect
again with new tokens (it is a "kick", not a ban — remove the user or API
client to ban it), but not from a login session older than the revocation:
the issuer refuses to mint for it (:func:`login_is_revoked`), so the user
logs in again.

Who reads the records: the issuer before it mints for a session
(:func:`login_is_revoked`, one pipelined round trip), and every gateway node at
every handshake, in the pipeline of the token's ``GETDEL``
(:meth:`wsauth.ws.gateway.Gateway.authenticate`), so a revocation holds for
new handshakes on a node that started after the event or missed it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis

from wsauth.shared.core.config import MAX_TOKEN_TTL
from wsauth.shared.core.errors import Unavailable
from wsauth.shared.core.tokens import Claims, Jti
from wsauth.shared.state.events import Revoke, encode, publish
from wsauth.shared.state.replay import jti_key

# As long as an issuer session can live (wsauth.issuer.login.SESSION_LIFETIME): after
# that a revoked session's cookie is refused anyway.
REVOCATION_TTL = 8 * 3600


def session_tokens_key(prefix: str, sid: str) -> str:
    return f"{prefix}sid:{sid}"


def revoked_session_key(prefix: str, sid: str) -> str:
    return f"{prefix}revoked_sid:{sid}"


def revoked_subject_key(prefix: str, sub: str) -> str:
    return f"{prefix}revoked_sub:{sub}"


class SessionTokens:
    """The index ``{prefix}sid:{sid}`` of the tokens minted for one issuer session."""

    def __init__(self, client: redis.Redis, *, prefix: str, leeway: int) -> None:
        self._client = client
        self._prefix = prefix
        # Outlives every token in the set: each issue pushes the expiry out again.
        self._ttl = MAX_TOKEN_TTL + leeway

    def add(self, claims: Claims) -> None:
        """Remember the token's jti under its ``sid`` (no-op without a sid).

        Raises:
            Unavailable: Redis did not answer in time.
        """
        if claims.sid is None:
            return
        key = session_tokens_key(self._prefix, claims.sid)
        try:
            # MULTI on one key: never an index without a TTL, and Cluster-safe.
            with self._client.pipeline(transaction=True) as pipe:
                pipe.sadd(key, claims.jti)
                pipe.expire(key, self._ttl)
                pipe.execute()
        except redis.RedisError as error:
            raise Unavailable(type(error).__name__) from None

    def discard(self, sid: str) -> int:
        """Delete every unused token of ``sid``, then the index; return how many were deleted.

        Raises:
            Unavailable: Redis did not answer in time.
        """
        return discard_session_tokens(self._client, self._prefix, sid)


def discard_session_tokens(client: redis.Redis, prefix: str, sid: str) -> int:
    """See :meth:`SessionTokens.discard`."""
    key = session_tokens_key(prefix, sid)
    try:
        members = client.smembers(key)
        deleted = 0
        if members:
            # Single-key DELs (not one multi-key DEL) so that keys on different
            # Cluster slots are fine; pipelined, not transactional.
            with client.pipeline(transaction=False) as pipe:
                for member in members:
                    jti = member.decode() if isinstance(member, bytes) else str(member)
                    pipe.delete(jti_key(prefix, Jti(jti)))
                deleted = sum(int(result) for result in pipe.execute())
        client.delete(key)
    except redis.RedisError as error:
        raise Unavailable(type(error).__name__) from None
    return deleted


@dataclass(frozen=True)
class Revocation:
    """What a revocation did: gateway processes told, unused tokens deleted."""

    nodes: int
    tokens_deleted: int = 0


def revoke_session(
    client: redis.Redis, prefix: str, sid: str, *, now: float | None = None
) -> Revocation:
    """Revoke issuer session ``sid``: record it, delete its unused tokens, close its sockets.

    Raises:
        BadEvent: ``sid`` is not a valid session id.
        Unavailable: Redis did not answer in time (the steps done so far stay done).
    """
    event = Revoke(sid=sid, at=time.time() if now is None else now)
    encode(event)  # refuse a bad sid before anything is written
    try:
        client.set(revoked_session_key(prefix, sid), repr(event.at), ex=REVOCATION_TTL)
    except redis.RedisError as error:
        raise Unavailable(type(error).__name__) from None
    deleted = discard_session_tokens(client, prefix, sid)
    return Revocation(nodes=publish(client, prefix, event), tokens_deleted=deleted)


def revoke_subject(
    client: redis.Redis, prefix: str, sub: str, *, now: float | None = None
) -> Revocation:
    """Close every connection of ``sub`` opened with a token minted before now.

    Raises:
        BadEvent: ``sub`` is not a valid subject.
        Unavailable: Redis did not answer in time.
    """
    event = Revoke(sub=sub, at=time.time() if now is None else now)
    encode(event)
    try:
        client.set(revoked_subject_key(prefix, sub), repr(event.at), ex=REVOCATION_TTL)
    except redis.RedisError as error:
        raise Unavailable(type(error).__name__) from None
    return Revocation(nodes=publish(client, prefix, event))


def session_is_revoked(client: redis.Redis, prefix: str, sid: str) -> bool:
    """Raises: Unavailable: Redis did not answer in time (fail closed)."""
    try:
        return bool(client.exists(revoked_session_key(prefix, sid)))
    except redis.RedisError as error:
        raise Unavailable(type(error).__name__) from None


def login_is_revoked(
    client: redis.Redis, prefix: str, *, sid: str, sub: str, login_at: float
) -> bool:
    """True when session ``sid`` was revoked, or ``sub`` was revoked after ``login_at``.

    One round trip (``EXISTS`` and ``GET``, pipelined, not transactional: two slots).

    Raises:
        Unavailable: Redis did not answer in time (fail closed).
    """
    try:
        with client.pipeline(transaction=False) as pipe:
            pipe.exists(revoked_session_key(prefix, sid))
            pipe.get(revoked_subject_key(prefix, sub))
            session_revoked, sub_at = pipe.execute()
    except redis.RedisError as error:
        raise Unavailable(type(error).__name__) from None
    if session_revoked:
        return True
    if sub_at is None:
        return False
    try:
        return login_at <= float(sub_at)
    except ValueError:
        return True  # an unreadable record: fail closed
