"""Flask's signed-cookie session, with its serializer built once instead of per request.

Flask's :class:`~flask.sessions.SecureCookieSessionInterface` builds a new
``URLSafeTimedSerializer`` (key list, salt, signer options) at the start of
every request, whether or not the request carries a cookie; on
``POST /api/tokens`` that is about 5 µs of the 10 µs Flask spends opening a
session nobody uses (docs/performance.md). The serializer depends only on the
secret keys, so it is kept and built again only when they change. Signing,
checking and the cookie attributes are Flask's own, unchanged.
"""

from __future__ import annotations

from flask import Flask
from flask.sessions import SecureCookieSessionInterface
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
