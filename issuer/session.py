"""Flask's signed-cookie session, with its serializer built once instead of per request.

Flask's :class:`~flask.sessions.SecureCookieSessionInterface` builds a new
``URLSafeTimedSerializer`` (key list, salt, signer options) at the start of
every request, whether or not the request carries a cookie; on
``POST /api/tokens`` that is about 5 µs of the 10 µs Flask spends opening a
session nobody uses (docs/performance.md). The serializer depends only on the
secret keys, so it is kept and built again only when they change. Signing,
checking and the cookie attributes are Flask's own, unchanged.

A request without a ``Cookie`` header (every API client) skips the rest as
well: it gets the same fresh empty session Flask would give it, without
parsing cookies, and if the request leaves that session empty and unmodified,
saving it only adds ``Vary: Cookie`` when it was read, as Flask's does,
without resolving the seven cookie settings first.
"""

from __future__ import annotations

from flask import Flask, Request, Response
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface, SessionMixin
from itsdangerous import URLSafeTimedSerializer

_Keys = tuple[str | bytes | None, ...]


class CookieSessionInterface(SecureCookieSessionInterface):
    """:class:`SecureCookieSessionInterface` with the serializer kept between requests."""

    def __init__(self) -> None:
        self._cached: tuple[_Keys, URLSafeTimedSerializer | None] | None = None

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        keys: _Keys = (app.secret_key, *(app.config["SECRET_KEY_FALLBACKS"] or ()))
        cached = self._cached
        # Both sides are the app's own configuration, never request data.
        if cached is not None and cached[0] == keys:
            return cached[1]
        serializer = super().get_signing_serializer(app)
        self._cached = (keys, serializer)
        return serializer

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if not request.environ.get("HTTP_COOKIE") and app.secret_key:
            # What Flask returns when the session cookie is missing or empty.
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        if not session and not session.modified:
            # Flask's own path for this case: nothing to set or delete.
            if session.accessed:
                response.vary.add("Cookie")
            return
        super().save_session(app, session, response)
