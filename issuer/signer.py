"""The issuer's signing side: the current key, minting, recording each jti.

:class:`Signer` is the only holder of a private key in the system. It reads
the ``current`` key from the key store and follows rotations without a
restart: every call does one ``os.stat`` of ``keyset.json`` and reloads only
when ``(st_ino, st_mtime_ns, st_size)`` changed (the key store replaces the
file by rename, so a change always shows).

:meth:`Signer.issue` mints with :func:`wsauth.shared.core.tokens.mint` and then records
the jti in Redis with :class:`wsauth.shared.state.replay.ReplayGuard` and, for a token of
a browser session, in the session's index (:class:`wsauth.shared.state.sessions.SessionTokens`)
so that logout can delete it unused. If recording fails, the token is
dropped: a token is only ever handed out after its jti is stored, otherwise
the gateway would refuse it anyway (fail closed).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import redis

from wsauth.issuer.files import WatchedFile
from wsauth.shared.core.config import Settings
from wsauth.shared.core.errors import KeyStoreError, NoSigningKey
from wsauth.shared.core.keyset import SigningKey
from wsauth.shared.core.tokens import Claims, mint
from wsauth.shared.state.replay import ReplayGuard, sync_client
from wsauth.shared.state.sessions import SessionTokens
from wsauth.shared.store.keystore import KeyStore

log = logging.getLogger("wsauth.issuer")


class Signer:
    """Mints tokens with the key store's current key and records them in Redis."""

    def __init__(self, settings: Settings, *, redis_client: redis.Redis | None = None) -> None:
        self._settings = settings
        self._store = KeyStore(settings.keys_dir)
        self._key = WatchedFile(self._store.metadata_path, self._load_key)
        self._kid: str | None = None
        self.redis = redis_client or sync_client(
            settings.effective_redis_url, timeout=settings.redis_timeout
        )
        self._guard = ReplayGuard(self.redis, prefix=settings.redis_prefix, leeway=settings.leeway)
        self._sessions = SessionTokens(
            self.redis, prefix=settings.redis_prefix, leeway=settings.leeway
        )

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
            raise NoSigningKey("the key store has no current key")
        return key

    def has_signing_key(self) -> bool:
        try:
            self.signing_key()
        except NoSigningKey:
            return False
        return True

    def issue(
        self, subject: str, *, sid: str | None = None, scope: str | None = None
    ) -> tuple[str, Claims]:
        """Mint a token for ``subject`` and record its jti; return both.

        Raises:
            NoSigningKey: no current key (503).
            Unavailable: Redis did not record the jti (503); no token exists then.
            InvalidClaims: the subject, sid or scope is not a valid claim value.
        """
        settings = self._settings
        token, claims = mint(
            key=self.signing_key(),
            issuer=settings.issuer,
            audience=settings.audience,
            subject=subject,
            now=int(time.time()),
            ttl=settings.token_ttl,
            sid=sid,
            scope=scope,
        )
        self._guard.record(claims)
        self._sessions.add(claims)
        log.info(
            "issued token sub=%s sid=%s jti=%s kid=%s exp=%d",
            claims.sub,
            claims.sid or "-",
            claims.jti,
            claims.kid,
            claims.exp,
        )
        return token, claims

    def redis_ok(self) -> bool:
        return self._guard.ping()

    def close(self) -> None:
        self.redis.close()
