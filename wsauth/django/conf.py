"""``settings.WSAUTH`` → wsauth :class:`~wsauth.shared.core.config.Settings`, and minting.

``settings.WSAUTH`` maps names of ``WSAUTH_*`` settings, without the prefix and
in any case (``"REDIS_URL"`` or ``"redis_url"``), to their values; the
``WSAUTH_*`` environment variables are *not* read (the project's settings module
decides, as for every other Django setting). Two more keys belong to the Django
app, not to wsauth's settings:

``SUBJECT``
    ``(request) -> str``, or its dotted path: the token's ``sub`` for the logged-in
    user. Default: ``request.user.get_username()``.
``SCOPE``
    ``(request) -> str | None``, its dotted path, or a fixed string: the token's
    ``scope``. Default: none.

Each token carries a ``sid`` derived from the Django session key (a SHA-256, never
the key itself: the session key is the login cookie's value, and a token is seen by
page scripts), so a logout revokes exactly that session's tokens and connections.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from django.conf import settings as django_settings
from django.utils.module_loading import import_string

from wsauth.django.ratelimit import TokenLimit
from wsauth.shared.core.config import Settings, load_settings
from wsauth.shared.core.errors import ConfigError, HostRefused, InvalidClaims, NotAuthenticated
from wsauth.shared.issuing import Grant, Issuer, check_request

__all__ = ["grant_for", "issuer", "reset", "session_id", "wsauth_settings"]

log = logging.getLogger("wsauth.django")

APP_KEYS = ("SUBJECT", "SCOPE")

_lock = threading.Lock()
_issuer: Issuer | None = None
_limit: TokenLimit | None = None


def _mapping() -> Mapping[str, Any]:
    values = getattr(django_settings, "WSAUTH", None)
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise ConfigError("WSAUTH", "settings.WSAUTH must be a dict of WSAUTH_* settings")
    return values


def wsauth_settings() -> Settings:
    """The wsauth settings of ``settings.WSAUTH`` (the environment is not read).

    Raises:
        ConfigError: an unknown key or a bad value; the message names ``WSAUTH_<KEY>``.
    """
    overrides: dict[str, Any] = {}
    for key, value in _mapping().items():
        if not isinstance(key, str):
            raise ConfigError("WSAUTH", f"settings.WSAUTH has a key that is not a string: {key!r}")
        if key.upper() in APP_KEYS:
            continue
        overrides[key.lower()] = str(value) if hasattr(value, "__fspath__") else value
    return load_settings(env={}, overrides=overrides)


def issuer() -> Issuer:
    """The process's :class:`~wsauth.Issuer`, built from ``settings.WSAUTH`` on first use.

    Raises:
        ConfigError: see :func:`wsauth_settings`.
    """
    global _issuer, _limit
    with _lock:
        if _issuer is None:
            settings = wsauth_settings()
            minting = Issuer(settings)
            _limit = TokenLimit.from_settings(settings, redis_client=minting.redis)
            _issuer = minting
        return _issuer


def reset() -> None:
    """Forget the issuer (``settings.WSAUTH`` changed, e.g. ``override_settings`` in tests)."""
    global _issuer, _limit
    with _lock:
        old, _issuer, _limit = _issuer, None, None
    if old is not None:
        old.close()


def host_callables() -> tuple[Callable[[Any], str], Callable[[Any], str | None]]:
    """The project's ``SUBJECT`` and ``SCOPE`` as callables of the request.

    Raises:
        ImportError: a dotted path names nothing importable.
    """
    values = {key.upper(): value for key, value in _mapping().items() if isinstance(key, str)}
    subject = values.get("SUBJECT") or _username
    if isinstance(subject, str):
        subject = import_string(subject)
    scope = values.get("SCOPE")
    if isinstance(scope, str):
        # A grant always has a colon ("sub:chat:*"); a dotted path never has one.
        scope = _fixed(scope) if ":" in scope else import_string(scope)
    return subject, scope or _no_scope


def _username(request: Any) -> str:
    return str(request.user.get_username())


def _no_scope(request: Any) -> None:
    return None


def _fixed(scope: str) -> Callable[[Any], str]:
    return lambda request: scope


def session_id(session_key: str | None) -> str | None:
    """The ``sid`` of a Django session: a digest of its key (the key is a login secret)."""
    if not session_key:
        return None
    return hashlib.sha256(b"wsauth.django.sid:" + session_key.encode()).hexdigest()[:32]


def grant_for(request: Any) -> Grant:
    """Mint a token for the request's logged-in user (``sub``, ``sid``, ``scope``).

    Raises:
        NotAuthenticated: nobody is logged in.
        HostRefused: the project's ``SUBJECT`` or ``SCOPE`` callable raised or gave a
            value wsauth refuses (logged; no token is minted).
        RateLimited: the user's ``WSAUTH_RATE_LIMIT_TOKENS`` is spent (429).
        Unavailable, NoSigningKey: Redis did not record it, or no key can sign (503).
        ConfigError: ``settings.WSAUTH`` is invalid.
    """
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        raise NotAuthenticated("no logged-in Django user")
    minting = issuer()
    try:
        subject_of, scope_of = host_callables()
        subject, scope = subject_of(request), scope_of(request)
    except Exception:
        log.exception("refused to mint for user pk=%s: SUBJECT or SCOPE failed", user.pk)
        raise HostRefused("the project's SUBJECT or SCOPE callable failed") from None
    sid = session_id(request.session.session_key)
    try:
        check_request(subject, sid, scope)
    except InvalidClaims as error:
        # The host's callables gave a bad value: the host's bug, logged, never a token.
        log.error("refused to mint for user pk=%s: %s", user.pk, error)
        raise HostRefused("the project's SUBJECT or SCOPE gave a value wsauth refuses") from None
    limit = _limit
    if limit is not None:
        limit.check(subject)
    return minting.issue(subject, sid=sid, scope=scope)
