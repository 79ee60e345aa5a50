"""Minting from any Python process: :class:`Issuer`, the one code path that hands out tokens.

::

    from wsauth import Issuer, load_settings

    issuer = Issuer(load_settings())          # WSAUTH_* variables; or Issuer.from_mapping({...})
    grant = issuer.issue("alice", sid=None, scope="sub:chat:*")
    grant.token, grant.url, grant.expires_at  # what a browser or a client needs
    issuer.revoke(sid="...")                  # logout: live sockets closed, unused tokens deleted
    issuer.close()

:class:`Issuer` is the only holder of a private key in the system. It reads
the ``current`` key from the key store and follows rotations without a
restart: every call does one ``os.stat`` of ``keyset.json`` and reloads only
when it changed (:class:`~wsauth.shared.store.watched.WatchedFile`).

:meth:`Issuer.issue` checks ``sub``, ``sid`` and ``scope`` (the same checks
as every issuer endpoint: :func:`check_request`), mints with
:func:`wsauth.shared.core.tokens.mint` and then records the jti in Redis
(:class:`~wsauth.shared.state.replay.ReplayGuard`) and, for a token with a
``sid``, in the session's index (:class:`~wsauth.shared.state.sessions.SessionTokens`)
so that :meth:`Issuer.revoke` can delete it unused. If recording fails, the
token is dropped: a token is only ever handed out after its jti is stored,
otherwise the gateway would refuse it anyway (fail closed).

The built-in issuer app (:mod:`wsauth.issuer`) and the Flask extension
(:mod:`wsauth.flask`) mint through this class. It imports no web framework,
so Django views, FastAPI handlers, Celery tasks and scripts use it as is.
It is thread-safe: one instance per process serves every thread (redis-py
pools its connections).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from wsauth.shared.core.config import Settings, load_settings
from wsauth.shared.core.errors import (
    BadEvent,
    InvalidClaims,
    KeyStoreError,
    NoSigningKey,
    Unavailable,
)
from wsauth.shared.core.keyset import SigningKey
from wsauth.shared.core.scopes import parse_scope
from wsauth.shared.core.tokens import (
    MAX_SCOPE_LENGTH,
    MAX_SID_LENGTH,
    MAX_SUB_LENGTH,
    Claims,
    mint,
)
from wsauth.shared.state.redis_conn import redact
from wsauth.shared.state.replay import ReplayGuard, sync_client
from wsauth.shared.state.sessions import (
    Revocation,
    SessionTokens,
    revoke_session,
    revoke_subject,
)
from wsauth.shared.store.keystore import KeyStore
from wsauth.shared.store.watched import WatchedFile

__all__ = ["Grant", "Issuer", "Revocation", "check_request", "check_scope"]

log = logging.getLogger("wsauth.issuer")


@dataclass(frozen=True)
class Grant:
    """A minted, recorded token and what a client needs to use it.

    ``token`` is hidden in ``repr``, so logging a grant never logs the token.
    """

    token: str = field(repr=False)
    url: str
    expires_at: int
    claims: Claims

    @property
    def expires_in(self) -> int:
        """The token's lifetime in seconds (``exp - iat``)."""
        return self.claims.exp - self.claims.iat


def _check_text(value: object, name: str, max_length: int) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= max_length or not value.isprintable():
        raise InvalidClaims(f"{name} must be 1 to {max_length} printable characters", claim=name)
    return value


def check_scope(scope: object) -> str:
    """The one check of a ``scope`` value before it is minted: the claim checks of
    :mod:`wsauth.shared.core.tokens` (a printable string of at most 1 KiB), then the
    grammar of DESIGN.md "Channels and scopes": every space-separated word is a
    ``sub:<pattern>`` or ``pub:<pattern>`` grant (:func:`wsauth.shared.core.scopes.parse_scope`).

    Raises:
        InvalidClaims: not a valid scope (:class:`InvalidScope` for a word that is no grant).
    """
    text = _check_text(scope, "scope", MAX_SCOPE_LENGTH)
    parse_scope(text)
    return text


def check_request(sub: object, sid: object = None, scope: object = None) -> None:
    """Check the claim values a caller asks for, before any key or Redis is touched.

    Raises:
        InvalidClaims: ``sub``, ``sid`` or ``scope`` is not a valid value
            (``sub``: 1 to 256 printable characters, ``sid``: 1 to 128).
    """
    _check_text(sub, "sub", MAX_SUB_LENGTH)
    if sid is not None:
        _check_text(sid, "sid", MAX_SID_LENGTH)
    if scope is not None:
        check_scope(scope)


class Issuer:
    """Mints tokens with the key store's current key and records them in Redis.

    ``redis_client`` lets a host share a client it built; by default the
    issuer builds its own from ``WSAUTH_REDIS_URL`` (closed by :meth:`close`).
    ``clock`` gives the time in seconds (tests pass a fixed one).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        redis_client: redis.Redis | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._store = KeyStore(settings.keys_dir)
        self._key = WatchedFile(self._store.metadata_path, self._load_key)
        self._kid: str | None = None
        self._redis_shown = redact(settings.effective_redis_url)
        self._owns_redis = redis_client is None
        self.redis = redis_client or sync_client(
            settings.effective_redis_url, timeout=settings.redis_timeout
        )
        self._guard = ReplayGuard(self.redis, prefix=settings.redis_prefix, leeway=settings.leeway)
        self._sessions = SessionTokens(
            self.redis, prefix=settings.redis_prefix, leeway=settings.leeway
        )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], **options: Any) -> Issuer:
        """An issuer from a mapping of setting names to values, without the environment.

        ``Issuer.from_mapping({"keys_dir": "keys", "redis_url": "redis://..."})``;
        ``options`` are those of the constructor.

        Raises:
            ConfigError: a setting is invalid (one line naming it).
        """
        return cls(load_settings(env={}, overrides=values), **options)

    # --- keys -------------------------------------------------------------------

    def _load_key(self, path: Path) -> SigningKey | None:
        key = self._store.signing_key()
        kid = key.kid if key else None
        if kid != self._kid:
            log.info("signing key: %s", kid or "none (the key store has no current key)")
            self._kid = kid
        return key

    def signing_key(self) -> SigningKey:
        """The key store's current key, reloaded when keyset.json changed.

        Raises:
            NoSigningKey: no current key, or the store cannot be read (503).
        """
        try:
            key = self._key.get()
        except KeyStoreError as error:
            raise NoSigningKey(str(error)) from None
        if key is None:
            raise NoSigningKey(f"the key store {self.settings.keys_dir} has no current key")
        return key

    def has_signing_key(self) -> bool:
        try:
            self.signing_key()
        except NoSigningKey:
            return False
        return True

    # --- minting and revoking -------------------------------------------------

    def issue(self, sub: str, *, sid: str | None = None, scope: str | None = None) -> Grant:
        """Mint a token for ``sub`` and record its jti; return the :class:`Grant`.

        ``sid`` ties the token to a session of the host (``revoke(sid=...)``
        closes its connections and deletes it unused); ``scope`` is the
        space-separated channel grants (DESIGN.md "Channels and scopes").

        Raises:
            InvalidClaims: ``sub``, ``sid`` or ``scope`` is not a valid value (401 at an
                endpoint; nothing is signed or written).
            NoSigningKey: no current key (503).
            Unavailable: Redis did not record the jti (503); no token exists then.
        """
        check_request(sub, sid, scope)
        settings = self.settings
        token, claims = mint(
            key=self.signing_key(),
            issuer=settings.issuer,
            audience=settings.audience,
            subject=sub,
            now=int(self._clock()),
            ttl=settings.token_ttl,
            sid=sid,
            scope=scope,
        )
        try:
            self._guard.record(claims)
            self._sessions.add(claims)
        except Unavailable as error:
            raise self._unavailable(error) from None
        log.info(
            "issued token sub=%s sid=%s jti=%s kid=%s exp=%d",
            claims.sub,
            claims.sid or "-",
            claims.jti,
            claims.kid,
            claims.exp,
        )
        return Grant(token=token, url=settings.gateway_url, expires_at=claims.exp, claims=claims)

    def revoke(self, *, sub: str | None = None, sid: str | None = None) -> Revocation:
        """Revoke a session (``sid``) or a subject (``sub``): exactly one of them.

        A session: recorded as revoked, its unused tokens deleted, its live
        connections closed (4001) on every gateway. A subject: recorded, and
        every connection of it opened with a token minted before now is
        closed (4001) on every gateway; the record (``revoked_sub``) is what
        gateways check for connections they missed. A subject's unused tokens
        are not deleted (tokens are indexed by session only): they expire
        within the token lifetime. It is a kick, not a ban: a ban is the host
        refusing to mint for that user again.

        Raises:
            InvalidClaims: neither or both given, or the value is not a valid sub/sid.
            Unavailable: Redis did not answer (the steps done so far stay done).
        """
        if (sub is None) == (sid is None):
            raise InvalidClaims("revoke takes exactly one of sub= and sid=", claim="sub/sid")
        prefix = self.settings.redis_prefix
        now = self._clock()
        try:
            if sid is not None:
                revocation = revoke_session(
                    self.redis, prefix, _check_text(sid, "sid", MAX_SID_LENGTH), now=now
                )
            else:
                revocation = revoke_subject(
                    self.redis, prefix, _check_text(sub, "sub", MAX_SUB_LENGTH), now=now
                )
        except BadEvent as error:
            raise InvalidClaims(error.detail, claim="sid" if sid is not None else "sub") from None
        except Unavailable as error:
            raise self._unavailable(error) from None
        log.info(
            "revoked %s=%s nodes=%d unused_tokens_deleted=%d",
            "sid" if sid is not None else "sub",
            sid if sid is not None else sub,
            revocation.nodes,
            revocation.tokens_deleted,
        )
        return revocation

    def _unavailable(self, error: Unavailable) -> Unavailable:
        """The same error, saying which Redis (never its password) failed how."""
        return type(error)(f"Redis at {self._redis_shown}: {error.detail or error.code}")

    # --- health and lifetime -----------------------------------------------------

    def redis_ok(self) -> bool:
        """True when Redis answers a PING within the timeout."""
        return self._guard.ping()

    def close(self) -> None:
        """Release the Redis connections (not those of a client the host passed in)."""
        if self._owns_redis:
            self.redis.close()

    def __enter__(self) -> Issuer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
