"""The Django app: logout wired to revocation, ``settings.WSAUTH`` checked at start-up."""

from __future__ import annotations

import logging
from typing import Any

from django.apps import AppConfig
from django.contrib.auth.signals import user_logged_out
from django.core import checks
from django.core.signals import setting_changed

from wsauth.django import conf
from wsauth.shared.core.errors import ConfigError, WsAuthError
from wsauth.shared.state.redis_conn import redact
from wsauth.shared.store.keystore import KeyStore

log = logging.getLogger("wsauth.django")


class WsAuthConfig(AppConfig):  # type: ignore[misc]  # Django has no type hints
    name = "wsauth.django"
    label = "wsauth"
    verbose_name = "wsauth"

    def ready(self) -> None:
        user_logged_out.connect(revoke_on_logout, dispatch_uid="wsauth.django.logout")
        setting_changed.connect(_settings_changed, dispatch_uid="wsauth.django.settings")
        checks.register(check_settings)


def revoke_on_logout(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    """``user_logged_out``: revoke the session's unused tokens and close its connections (4001).

    A logout always succeeds: when Redis is down the revocation is logged as
    failed (the session's tokens then expire within ``WSAUTH_TOKEN_TTL``).
    """
    session = getattr(request, "session", None)
    sid = conf.session_id(session.session_key if session is not None else None)
    if sid is None:
        return
    try:
        done = conf.issuer().revoke(sid=sid)
    except WsAuthError as error:
        log.error("logout: revoking sid=%s failed: %s (%s)", sid, error.code, error)
        return
    log.info(
        "logout: revoked sid=%s: %d gateway node(s) told, %d unused token(s) deleted",
        sid,
        done.nodes,
        done.tokens_deleted,
    )


def _settings_changed(setting: str, **kwargs: Any) -> None:
    if setting == "WSAUTH":
        conf.reset()


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """``manage.py check`` (and ``runserver``, ``migrate``, ...): ``settings.WSAUTH`` makes an
    issuer that can sign, and ``SUBJECT``/``SCOPE`` import. One error line per problem."""
    errors: list[Any] = []
    try:
        settings = conf.wsauth_settings()
    except ConfigError as error:
        return [checks.Error(str(error), id="wsauth.E001")]
    try:
        conf.host_callables()
    except ImportError as error:
        errors.append(checks.Error(f"settings.WSAUTH: {error}", id="wsauth.E002"))
    try:
        key = KeyStore(settings.keys_dir).signing_key()
    except WsAuthError as error:
        key = None
        detail = str(error)
    else:
        detail = f"the key store {settings.keys_dir} has no current key"
    if key is None:
        errors.append(
            checks.Error(
                f"WSAUTH_KEYS_DIR: {detail}",
                hint="create one: WSAUTH_KEYS_DIR=<that directory> wsauth keys generate",
                id="wsauth.E003",
            )
        )
    if not errors and not conf.issuer().redis_ok():
        errors.append(
            checks.Error(
                f"WSAUTH_REDIS_URL: Redis at {redact(settings.effective_redis_url)} "
                "did not answer (tokens cannot be recorded)",
                id="wsauth.E004",
            )
        )
    return errors
