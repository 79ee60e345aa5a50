"""The Flask extension: wsauth's token endpoint, JWKS and ``ws_token()`` on a host's app.

::

    from flask import Flask
    from flask_login import LoginManager
    from wsauth.flask import WsAuth

    app = Flask(__name__)
    app.config["SECRET_KEY"] = "..."
    login_manager = LoginManager(app)
    wsauth = WsAuth()
    wsauth.init_app(app)   # after LoginManager: the identity is Flask-Login's current_user

The ``init_app`` pattern: the extension object keeps the host's callables
and never an app; each app's state is in ``app.extensions["wsauth"]``
(:class:`~wsauth.issuer.host.HostState`). Mounted under ``url_prefix``
(default ``/wsauth``):

- ``POST {prefix}/ws-token``: a token for the logged-in user, with the same
  CSRF and Origin rules as the built-in issuer's (``X-WSAuth-CSRF: 1``, no
  ``Sec-Fetch-Site: cross-site``, ``Origin`` in ``WSAUTH_ALLOWED_ORIGINS``);
- ``GET {prefix}/.well-known/jwks.json``: the public keys, for gateways;
- ``{{ ws_token() }}`` in templates: a token minted while the page renders.

The host's callables (see :mod:`wsauth.issuer.host`): ``identity()`` the ``sub``
of the logged-in user or None (default: Flask-Login's ``current_user.get_id()``);
``scope(sub)`` the scope to grant (default: none); ``session_id(sub)`` the
token's ``sid`` (default: a random id kept in the host's own Flask session).
:meth:`WsAuth.logout` revokes that session's tokens and sockets; with
Flask-Login and the default session id, ``logout_user()`` calls it.

Settings: ``WSAUTH_*`` entries of ``app.config``, over the ``WSAUTH_*``
environment (or an explicit :class:`~wsauth.shared.core.config.Settings`).
A misconfiguration stops ``init_app`` with a
:class:`~wsauth.shared.core.errors.ConfigError`, one line naming the setting:
no identity, no ``SECRET_KEY``, no signing key, no Redis.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask

from wsauth.issuer import access, errors, metrics, ratelimit, views
from wsauth.issuer.host import (
    EXTENSION,
    HostState,
    Identity,
    ScopeOf,
    SessionIdOf,
    forget_session,
    host_state,
    wsauth_session_id,
)
from wsauth.shared.core.config import ENV_PREFIX, Settings, load_settings
from wsauth.shared.core.errors import ConfigError, WsAuthError
from wsauth.shared.issuing import Issuer
from wsauth.shared.state.redis_conn import redact
from wsauth.shared.state.sessions import Revocation

__all__ = ["WsAuth", "settings_from_config"]

DEFAULT_PREFIX = "/wsauth"


def settings_from_config(config: Mapping[str, Any]) -> Settings:
    """The settings of an app: its ``WSAUTH_*`` config entries over the ``WSAUTH_*`` environment.

    Raises:
        ConfigError: a value is invalid or a ``WSAUTH_`` entry is unknown (one line naming it).
    """
    overrides = {
        key.removeprefix(ENV_PREFIX).lower(): value
        for key, value in config.items()
        if key.startswith(ENV_PREFIX)
    }
    return load_settings(env=os.environ, overrides=overrides)


def _flask_login_identity() -> str | None:
    """Flask-Login's ``current_user``: its ``get_id()`` when authenticated, else None."""
    from flask_login import current_user

    if not current_user.is_authenticated:
        return None
    sub: str | None = current_user.get_id()
    return sub


def _default_identity(app: Flask) -> Identity:
    """Flask-Login's, if the app has a LoginManager.

    Raises:
        ConfigError: no identity callable and no Flask-Login on the app.
    """
    if getattr(app, "login_manager", None) is None:
        raise ConfigError(
            "identity",
            "no identity callable: pass WsAuth(identity=...) or set up Flask-Login "
            "(LoginManager.init_app) before WsAuth.init_app",
        )
    return _flask_login_identity


def _logged_out(sender: Flask, **extra: Any) -> None:
    """Flask-Login's ``user_logged_out``: revoke the session's tokens and sockets."""
    state = sender.extensions.get(EXTENSION)
    if isinstance(state, HostState) and state.session_id is wsauth_session_id:
        forget_session(state)


class WsAuth:
    """wsauth on a Flask app: ``WsAuth(app)`` or ``WsAuth()`` then ``init_app(app)``.

    ``identity``, ``scope`` and ``session_id`` are the host's callables (module
    docstring); ``url_prefix`` where the endpoints go (``""``: at the root);
    ``check_at_start=False`` lets an app start without keys or Redis (its
    token endpoint then answers 503 until they are there).
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        identity: Identity | None = None,
        scope: ScopeOf | None = None,
        session_id: SessionIdOf | None = None,
        url_prefix: str = DEFAULT_PREFIX,
        settings: Settings | None = None,
        check_at_start: bool = True,
    ) -> None:
        self._identity = identity
        self._scope = scope
        self._session_id = session_id
        self._url_prefix = url_prefix
        self._settings = settings
        self._check = check_at_start
        if app is not None:
            self.init_app(app)

    def identity_loader(self, callback: Identity) -> Identity:
        """Decorator: ``callback()`` returns the ``sub`` of the logged-in user, or None.
        Use it before :meth:`init_app`."""
        self._identity = callback
        return callback

    def scope_loader(self, callback: ScopeOf) -> ScopeOf:
        """Decorator: ``callback(sub)`` returns the scope to grant, or None.
        Use it before :meth:`init_app`."""
        self._scope = callback
        return callback

    def init_app(self, app: Flask, *, settings: Settings | None = None) -> None:
        """Mount the endpoints and the template global on ``app``; keep its state there.

        Raises:
            ConfigError: a setting is invalid, or nothing says who the user is, or
                (with ``check_at_start``) the app has no ``SECRET_KEY``, the key
                store no current key, or Redis does not answer.
        """
        settings = settings or self._settings or settings_from_config(app.config)
        identity = self._identity or _default_identity(app)
        session_id = self._session_id or wsauth_session_id
        if session_id is wsauth_session_id and not app.config.get("SECRET_KEY"):
            raise ConfigError(
                "SECRET_KEY", "the Flask app needs one: wsauth keeps its session id in the session"
            )
        issuer = Issuer(settings)
        if self._check:
            _check_ready(issuer)
        state = HostState.build(
            settings, identity=identity, scope=self._scope, session_id=session_id, issuer=issuer
        )
        app.extensions[EXTENSION] = state
        if metrics.EXTENSION not in app.extensions:
            metrics.install(app, keys_dir=settings.keys_dir)
        access.install_cleanup(app)
        app.register_blueprint(views.host_bp, url_prefix=self._url_prefix or None)
        app.register_error_handler(WsAuthError, errors.handle_wsauth_error)
        ratelimit.install(app, settings, redis_client=issuer.redis)
        if session_id is wsauth_session_id:
            try:
                from flask_login import user_logged_out
            except ImportError:  # pragma: no cover - the host calls logout() itself
                pass
            else:
                user_logged_out.connect(_logged_out, app, weak=False)

    def issuer(self, app: Flask | None = None) -> Issuer:
        """The app's :class:`~wsauth.shared.issuing.Issuer` (default: this request's app),
        to mint or revoke from the host's own code (``revoke(sub=...)`` on a ban)."""
        return host_state(app).issuer

    def logout(self) -> Revocation | None:
        """Revoke this request's session: its live sockets closed (4001), its unused
        tokens deleted. Call it from the host's logout view (Flask-Login's
        ``logout_user()`` does when the default session id is in use).

        Raises:
            Unavailable: Redis did not record it; the session keeps its id, so the
                logout can be retried.
        """
        return forget_session(host_state())


def _check_ready(issuer: Issuer) -> None:
    """Raises: ConfigError: no current signing key, or Redis does not answer."""
    settings = issuer.settings
    if not issuer.has_signing_key():
        issuer.close()
        raise ConfigError(
            "WSAUTH_KEYS_DIR",
            f"{settings.keys_dir} has no current signing key (run `wsauth keys generate`)",
        )
    if not issuer.redis_ok():
        issuer.close()
        raise ConfigError(
            "WSAUTH_REDIS_URL", f"no Redis answers at {redact(settings.effective_redis_url)}"
        )
