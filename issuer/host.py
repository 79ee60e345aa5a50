"""What the token endpoints of an app with the Flask extension hold, and who is asking.

:class:`HostState` lives in ``app.extensions["wsauth"]`` (:mod:`wsauth.issuer.extension`
puts it there): the settings, the minting :class:`~wsauth.shared.issuing.Issuer`, the
revoked sessions, the JWKS file, and the host's callables. The built-in issuer
app has one too: its ``/ws-token`` is the extension's, with the demo login as
its identity.

:meth:`HostState.principal` asks the host who the current user is, which
session this is and which scope to grant. Every failure of a host callable —
it raises, or returns something that cannot be minted — is
:class:`~wsauth.shared.core.errors.HostRefused` (403 ``host_refused``, logged with
what went wrong), never a 500 and never a token. Nobody logged in is 401
``not_authenticated``.

The default session id is wsauth's own, kept in the host's Flask session
(``session["wsauth_sid"] = [sub, sid]``): random, bound to the user it was
made for (a different user in the same browser session gets a new one), and
forgotten at logout (:func:`forget_session`).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from flask import Flask, current_app, session

from wsauth.issuer.login import RevokedSessions
from wsauth.issuer.published import PublishedJwks, read_jwks
from wsauth.shared.core.config import Settings
from wsauth.shared.core.errors import HostRefused, InvalidClaims, NotAuthenticated, WsAuthError
from wsauth.shared.issuing import Issuer, check_request
from wsauth.shared.logs import printable
from wsauth.shared.state.sessions import Revocation
from wsauth.shared.store.watched import WatchedFile

__all__ = [
    "EXTENSION",
    "HostState",
    "Identity",
    "Principal",
    "ScopeOf",
    "SessionIdOf",
    "forget_session",
    "host_state",
    "wsauth_session_id",
]

log = logging.getLogger("wsauth.issuer")

EXTENSION = "wsauth"
SESSION_KEY = "wsauth_sid"

Identity = Callable[[], str | None]
"""Who is logged in: the ``sub`` to mint for, or None for nobody."""
ScopeOf = Callable[[str], str | None]
"""The scope to grant to ``sub`` (space-separated grants), or None for no scope claim."""
SessionIdOf = Callable[[str], str | None]
"""The host's session id for ``sub`` (the token's ``sid``), or None for no sid."""

T = TypeVar("T")


def read_optional(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


@dataclass(frozen=True)
class Principal:
    """Whom a token is minted for, as the host said."""

    sub: str
    sid: str | None
    scope: str | None


def _ask(callback: Callable[..., T], what: str, *args: str) -> T:
    """Call a host callable; anything it raises becomes a logged :class:`HostRefused`.

    wsauth's own errors pass through (a host may raise ``NotAuthenticated`` itself).
    """
    try:
        return callback(*args)
    except WsAuthError:
        raise
    except Exception as error:
        message = printable(str(error))[:200]
        log.warning(
            "the host's %s callable raised %s: %s; no token", what, type(error).__name__, message
        )
        raise HostRefused(f"{what} callable raised {type(error).__name__}") from None


@dataclass(frozen=True)
class HostState:
    """What the extension keeps for one app (``app.extensions["wsauth"]``)."""

    settings: Settings
    issuer: Issuer
    revoked: RevokedSessions
    jwks: WatchedFile[PublishedJwks | None]  # checked before it is served (issuer/published.py)
    identity: Identity
    scope: ScopeOf | None
    session_id: SessionIdOf

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        identity: Identity,
        scope: ScopeOf | None,
        session_id: SessionIdOf,
        issuer: Issuer | None = None,
    ) -> HostState:
        issuer = issuer or Issuer(settings)
        return cls(
            settings=settings,
            issuer=issuer,
            revoked=RevokedSessions(issuer.redis, prefix=settings.redis_prefix),
            jwks=WatchedFile(settings.keys_dir / "jwks.json", read_jwks),
            identity=identity,
            scope=scope,
            session_id=session_id,
        )

    def principal(self) -> Principal:
        """Who this request's token is for, checked as :meth:`Issuer.issue` checks it.

        Raises:
            NotAuthenticated: nobody is logged in, or the session was logged out (401).
            HostRefused: a host callable raised or gave a bad sub, sid or scope (403).
            Unavailable: Redis cannot say whether the session was revoked (503).
        """
        sub = _ask(self.identity, "identity")
        if sub is None:
            raise NotAuthenticated("no logged-in user")
        _valid(sub, None, None, "identity")
        sid = _ask(self.session_id, "session_id", sub)
        _valid(sub, sid, None, "session_id")
        if sid is not None and self.revoked.is_revoked(sid):
            raise NotAuthenticated("session was logged out")
        scope = _ask(self.scope, "scope", sub) if self.scope is not None else None
        _valid(sub, sid, scope, "scope")
        return Principal(sub, sid, scope)

    def close(self) -> None:
        """Release the Redis connections."""
        self.issuer.close()


def _valid(sub: object, sid: object, scope: object, what: str) -> None:
    try:
        check_request(sub, sid, scope)
    except InvalidClaims as error:
        log.warning("the host's %s callable gave a bad value: %s; no token", what, error.detail)
        raise HostRefused(f"{what} callable: {error.detail}") from None


def host_state(app: Flask | None = None) -> HostState:
    """The extension's state of ``app`` (default: the app handling this request)."""
    state: HostState = (app or current_app).extensions[EXTENSION]
    return state


def wsauth_session_id(sub: str) -> str:
    """The default session id: random, kept in the Flask session, bound to ``sub``."""
    held = session.get(SESSION_KEY)
    if isinstance(held, list) and len(held) == 2 and held[0] == sub and isinstance(held[1], str):
        return held[1]
    sid = secrets.token_urlsafe(16)
    session[SESSION_KEY] = [sub, sid]
    return sid


def forget_session(state: HostState) -> Revocation | None:
    """Logout: revoke this Flask session's wsauth session id, then forget it.

    Revoked first and forgotten only then, so that when Redis is down the
    logout can be retried. Returns None when the session had no wsauth id.

    Raises:
        Unavailable: Redis did not record the revocation.
    """
    held = session.get(SESSION_KEY)
    if not (isinstance(held, list) and len(held) == 2 and isinstance(held[1], str)):
        session.pop(SESSION_KEY, None)
        return None
    revocation = state.issuer.revoke(sid=held[1])
    session.pop(SESSION_KEY, None)
    return revocation
