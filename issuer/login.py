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
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import timedelta

import redis
from flask import session

from wsauth.shared.core.errors import NotAuthenticated
from wsauth.shared.state.sessions import (
    REVOCATION_TTL,
    Revocation,
    revoke_session,
    session_is_revoked,
)

SESSION_LIFETIME = timedelta(seconds=REVOCATION_TTL)


@dataclass(frozen=True)
class Login:
    """The logged-in user of this request's session."""

    user: str
    sid: str


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
    return Login(user, sid)


def require_login(revoked: RevokedSessions) -> Login:
    """The session's login, checked against the revoked sessions.

    Raises:
        NotAuthenticated: no login, expired, or logged out (401).
        Unavailable: Redis cannot say whether the session was revoked (503).
    """
    login = current_login()
    if login is None:
        raise NotAuthenticated("no session")
    if revoked.is_revoked(login.sid):
        raise NotAuthenticated("session was logged out")
    return login


def log_in(user: str) -> Login:
    """Start a fresh session for ``user``: everything from before is dropped (fixation)."""
    session.clear()
    session.permanent = True
    login = Login(user, secrets.token_urlsafe(16))
    session.update(user=login.user, sid=login.sid, login_at=int(time.time()))
    return login


def log_out(revoked: RevokedSessions) -> tuple[Login, Revocation] | None:
    """End the session and revoke its sid (see the module docstring).

    The cookie is cleared even when Redis is down; the error is raised after.

    Raises:
        Unavailable: the sid could not be revoked.
    """
    login = current_login()
    session.clear()
    if login is None:
        return None
    return login, revoked.revoke(login.sid)
