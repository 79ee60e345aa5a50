"""The browser login session: who is logged in, logging in and out, revocation.

The session is Flask's signed cookie (no server-side session table). It
holds the username, a random session id ``sid`` (the ``sid`` claim of every
token minted from this session, so the gateway can close that session's
sockets), the login time, and the CSRF token of the forms.

A signed cookie stays valid until it expires, even after logout, if someone
kept a copy. So logout revokes the session (:func:`wsauth.shared.state.sessions.revoke_session`):
it records the sid as revoked in Redis (``{prefix}revoked_sid:{sid}``, TTL =
the session lifetime, after which the cookie is refused anyway) so that a
copied cookie cannot mint tokens after logout, deletes the session's unused
tokens, and publishes a revoke event so that every gateway closes the
session's live WebSockets with 4001. The session lifetime is absolute
(:data:`SESSION_LIFETIME`, counted from login), not sliding.

Before anything is minted for a session (:func:`require_login`), the issuer
checks, in one Redis round trip, that its sid was not revoked and that its
user was not revoked (``wsauth revoke --sub``) after it logged in; and that
the user still exists in the user store. So a revoked or removed user can mint
nothing more from a session it already has, on any endpoint.

Logout when Redis cannot record it: the answer is 503 ``redis_unavailable``
and the session cookie is **kept**, so the user sees that logout failed and
retries (the demo page says so); meanwhile the session mints nothing, since
every mint checks the revocation records first and fails closed. Clearing the
cookie without the record would leave a copied cookie usable once Redis is
back.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

import redis
from flask import session

from wsauth.shared.core.errors import NotAuthenticated
from wsauth.shared.state.sessions import (
    REVOCATION_TTL,
    Revocation,
    login_is_revoked,
    revoke_session,
    session_is_revoked,
)

SESSION_LIFETIME = timedelta(seconds=REVOCATION_TTL)


@dataclass(frozen=True)
class Login:
    """The logged-in user of this request's session."""

    user: str
    sid: str
    login_at: int = 0


class RevokedSessions:
    """Session ids that logged out, kept in Redis until their cookies would expire anyway."""

    def __init__(self, client: redis.Redis, *, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    def revoke(self, sid: str) -> Revocation:
        """Revoke the session: recorded, unused tokens deleted, live sockets closed (4001).

        Raises:
            Unavailable: Redis did not answer in time.
        """
        return revoke_session(self._client, self._prefix, sid)

    def is_revoked(self, sid: str) -> bool:
        """Raises: Unavailable: Redis did not answer in time (fail closed)."""
        return session_is_revoked(self._client, self._prefix, sid)

    def login_revoked(self, login: Login) -> bool:
        """The session was revoked, or its user after it logged in.

        Raises:
            Unavailable: Redis did not answer in time (fail closed).
        """
        return login_is_revoked(
            self._client, self._prefix, sid=login.sid, sub=login.user, login_at=login.login_at
        )


def current_login(now: float | None = None) -> Login | None:
    """The session's login, if it is complete and within its lifetime (no Redis check)."""
    user = session.get("user")
    sid = session.get("sid")
    login_at = session.get("login_at")
    if not (isinstance(user, str) and isinstance(sid, str) and isinstance(login_at, int)):
        return None
    now = time.time() if now is None else now
    if not login_at <= now < login_at + SESSION_LIFETIME.total_seconds():
        return None
    return Login(user, sid, login_at)


class KnownUsers(Protocol):
    def exists(self, username: str) -> bool: ...


def require_login(revoked: RevokedSessions, users: KnownUsers | None = None) -> Login:
    """The session's login, checked against the revocation records (and ``users``).

    Raises:
        NotAuthenticated: no login, expired, logged out, its user revoked since
            it logged in, or (with ``users``) removed from the user store (401).
        Unavailable: Redis cannot say whether the session was revoked (503).
    """
    login = current_login()
    if login is None:
        raise NotAuthenticated("no session")
    if users is not None and not users.exists(login.user):
        raise NotAuthenticated("the user no longer exists")
    if revoked.login_revoked(login):
        raise NotAuthenticated("session was logged out or its user revoked")
    return login


def log_in(user: str) -> Login:
    """Start a fresh session for ``user``: everything from before is dropped (fixation)."""
    session.clear()
    session.permanent = True
    login = Login(user, secrets.token_urlsafe(16), int(time.time()))
    session.update(user=login.user, sid=login.sid, login_at=login.login_at)
    return login


def log_out(revoked: RevokedSessions) -> tuple[Login, Revocation] | None:
    """Revoke the session's sid, then end the session (see the module docstring).

    The cookie is cleared only once the revocation is recorded: when Redis is
    down the error is raised and the session stays, so the user can retry.

    Raises:
        Unavailable: the sid could not be revoked (the session is unchanged).
    """
    login = current_login()
    if login is None:
        session.clear()
        return None
    revocation = revoked.revoke(login.sid)
    session.clear()
    return login, revocation
