"""Cross-site request forgery defences for the cookie-authenticated endpoints.

Three independent checks, used per endpoint:

- **Custom header** ``X-WSAuth-CSRF: 1`` (:data:`CSRF_HEADER`). A cross-site
  page can only send a custom header after a CORS preflight, and the issuer
  never answers preflights (it sends no ``Access-Control-Allow-*`` header), so
  a request that carries it came from a same-origin script or a non-browser
  client. Required by ``POST /ws-token`` and the JSON form of ``POST /login``.
- **Form token**: a random token stored in the session when a form is
  rendered and sent back as the ``csrf_token`` field; compared with
  :func:`hmac.compare_digest`. HTML forms (login, logout) use it.
- **Origin / Fetch Metadata**: a request whose ``Origin`` is not in
  ``WSAUTH_ALLOWED_ORIGINS`` is refused by ``/ws-token``, and
  ``Sec-Fetch-Site: cross-site`` is refused by every cookie endpoint.
  Requests without these headers (non-browser clients) pass this check.

Every refusal is :class:`~wsauth.shared.core.errors.CsrfRejected` (403, ``csrf_rejected``).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Collection

from flask import request, session

from wsauth.shared.core.errors import CsrfRejected

CSRF_HEADER = "X-WSAuth-CSRF"
CSRF_HEADER_VALUE = "1"
FORM_FIELD = "csrf_token"
_SESSION_KEY = "csrf"


def form_token() -> str:
    """The session's form token, created on first use."""
    token = session.get(_SESSION_KEY)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session[_SESSION_KEY] = token
    return token


def has_custom_header() -> bool:
    return request.headers.get(CSRF_HEADER) == CSRF_HEADER_VALUE


def refuse_cross_site() -> None:
    """Raises: CsrfRejected: the browser says the request comes from another site."""
    if request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
        raise CsrfRejected("Sec-Fetch-Site: cross-site")


def check_origin(allowed: Collection[str]) -> None:
    """Raises: CsrfRejected: an ``Origin`` header names an origin outside ``allowed``."""
    origin = request.headers.get("Origin")
    if origin is not None and origin not in allowed:
        raise CsrfRejected(f"origin {origin[:100]!r} is not allowed")


def check_header_request(allowed: Collection[str]) -> None:
    """The checks of ``POST /ws-token``: custom header, Fetch Metadata, Origin.

    Raises:
        CsrfRejected: any of them fails.
    """
    if not has_custom_header():
        raise CsrfRejected(f"no {CSRF_HEADER} header")
    refuse_cross_site()
    check_origin(allowed)


def check_form_request() -> None:
    """The checks of a form post: Fetch Metadata, then the form token or the custom header.

    Raises:
        CsrfRejected: any of them fails.
    """
    refuse_cross_site()
    if has_custom_header():
        return
    sent = request.form.get(FORM_FIELD, "")
    expected = session.get(_SESSION_KEY)
    if not isinstance(expected, str) or not hmac.compare_digest(
        sent.encode("utf-8"), expected.encode("utf-8")
    ):
        raise CsrfRejected("form token missing or wrong")
