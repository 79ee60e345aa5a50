"""``POST <prefix>token``: a fresh token for the logged-in user, for ``fetch`` from a page.

Django's CSRF protection applies (``csrf_protect``, whatever the middleware): a
page sends its CSRF token in ``X-CSRFToken``. The answer has the shape of the
built-in issuer's ``/ws-token`` (``{"token", "expires_in", "url"}``, so
``wsauth.js`` takes it as is); a refusal is ``{"error": code}`` with its status:
401 ``not_authenticated``, 403 ``host_refused`` (the project's ``SUBJECT``/``SCOPE``
failed), 429 ``rate_limited``, 503 ``redis_unavailable`` / ``no_signing_key``.
Django's own CSRF refusal is its 403 page.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.http import HttpResponse
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_POST

from wsauth.django import conf
from wsauth.shared.core.errors import RateLimited, WsAuthError

log = logging.getLogger("wsauth.django")


@require_POST  # type: ignore[untyped-decorator]  # Django: no hints
@csrf_protect  # type: ignore[untyped-decorator]
def token(request: Any) -> Any:
    """The token answer, or ``{"error": code}``; never cached."""
    try:
        grant = conf.grant_for(request)
    except WsAuthError as error:
        log.warning("token refused: %s (%s)", error.code, error.detail or error)
        response = _json({"error": error.code}, status=error.status or 500)
        if isinstance(error, RateLimited):
            response["Retry-After"] = str(error.retry_after)
        elif error.status == 503:
            response["Retry-After"] = "1"
        return response
    return _json({"token": grant.token, "expires_in": grant.expires_in, "url": grant.url})


def _json(body: dict[str, Any], *, status: int = 200) -> Any:
    response = HttpResponse(
        json.dumps(body, separators=(",", ":")), status=status, content_type="application/json"
    )
    response["Cache-Control"] = "no-store"
    return response
