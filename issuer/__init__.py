"""The wsauth issuer: a Flask app that mints short-lived, single-use WebSocket tokens.

Build it with the factory::

    from wsauth.issuer import create_app
    app = create_app()                                  # settings from WSAUTH_* variables
    app = create_app({"secret_key": "...", ...})        # tests: a mapping of settings
    app = create_app(settings)                          # a wsauth.shared.core.config.Settings

In production run it under a WSGI server, e.g.
``gunicorn -w 2 -b 127.0.0.1:8000 'wsauth.issuer:create_app()'``; ``wsauth issuer``
runs it with werkzeug's threaded server.

Nothing reads the environment at import time. The session cookie is Flask's
signed cookie: ``HttpOnly``, ``SameSite=Lax``, ``Secure`` as
``WSAUTH_COOKIE_SECURE`` says (named ``__Host-wsauth_session`` when secure),
with an absolute lifetime of 8 hours from login (:mod:`wsauth.issuer.login`).
"""

from __future__ import annotations

if __name__ != "wsauth.issuer":  # one module, one name: never importable as top-level `issuer`
    raise ImportError(
        f"import wsauth.issuer, not {__name__}: wsauth installs one package, `wsauth`"
    )

from collections.abc import Mapping
from typing import Any

from flask import Flask

from wsauth.issuer import access, errors, metrics, views
from wsauth.issuer.extension import WsAuth
from wsauth.issuer.host import host_state
from wsauth.issuer.login import SESSION_LIFETIME, current_login, require_login
from wsauth.issuer.session import CookieSessionInterface
from wsauth.issuer.state import EXTENSION, IssuerState, get_state
from wsauth.shared.core.config import Settings, load_settings
from wsauth.shared.core.errors import ConfigError, NotAuthenticated
from wsauth.shared.logs import configure as configure_logging

__all__ = ["create_app"]

# Requests to the issuer are tiny: a login form or nothing at all.
MAX_REQUEST_BYTES = 16 * 1024


def _settings_of(config: Settings | Mapping[str, Any] | None) -> Settings:
    if config is None:
        return load_settings()
    if isinstance(config, Settings):
        return config
    return load_settings(env={}, overrides=config)


def create_app(config: Settings | Mapping[str, Any] | None = None) -> Flask:
    """Build the issuer app.

    ``config``: None reads the ``WSAUTH_*`` environment; a mapping of setting
    names to values is used alone (no environment); a ``Settings`` as is.

    Raises:
        ConfigError: a setting is invalid, or ``WSAUTH_SECRET_KEY`` is missing.
    """
    settings = _settings_of(config)
    if settings.secret_key is None:
        raise ConfigError("WSAUTH_SECRET_KEY", "is required")
    if settings.log_format is not None:  # gunicorn: nobody else sets up wsauth's logs
        configure_logging(settings.log_format)

    app = Flask(__name__)
    app.session_interface = CookieSessionInterface()
    app.config.update(
        SECRET_KEY=settings.secret_key.reveal(),
        SESSION_COOKIE_NAME=(
            "__Host-wsauth_session" if settings.cookie_secure else "wsauth_session"
        ),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.cookie_secure,
        SESSION_COOKIE_PATH="/",
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
        # Absolute lifetime: the cookie is re-signed only when the session changes.
        SESSION_REFRESH_EACH_REQUEST=False,
        MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES,
        MAX_FORM_MEMORY_SIZE=MAX_REQUEST_BYTES,
    )
    # First: every later hook and log line of a request has its request id.
    access.install(app)
    metrics.install(app, keys_dir=settings.keys_dir)
    app.register_blueprint(views.bp)
    # The token endpoint, JWKS and ws_token() are the Flask extension's, as on any host
    # app; the demo login is the identity. Its init_app also installs the rate limits.
    WsAuth(
        identity=_demo_user,
        session_id=_demo_session,
        scope=_demo_scope,
        url_prefix="",
        settings=settings,
        check_at_start=False,  # /readyz reports a missing key or Redis; the app still starts
    ).init_app(app)
    app.extensions[EXTENSION] = IssuerState.build(settings, host_state(app))
    errors.register(app)
    return app


def _demo_scope(sub: str) -> str:
    """The demo grants its users the channel ``demo`` (docs/reference/protocol.md)."""
    return "sub:demo pub:demo"


def _demo_user() -> str | None:
    """The demo login's user, if the session may still mint (wsauth.issuer.login): not
    logged out, its user not revoked since it logged in, and still in the user store.

    Raises:
        Unavailable: Redis cannot say whether the session was revoked (503).
    """
    if current_login() is None:
        return None
    state = get_state()
    try:
        return require_login(state.revoked, state.users).user
    except NotAuthenticated:
        return None


def _demo_session(sub: str) -> str | None:
    login = current_login()
    return login.sid if login else None
