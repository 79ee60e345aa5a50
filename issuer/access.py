"""Request ids and the one access line per request of the issuer.

Every request gets a request id: its ``X-Request-ID`` header when that is
harmless (``[A-Za-z0-9._-]{1,64}``), else a fresh one
(:func:`shared.logs.request_id_from`). Every log line written while the
request is handled carries it (``request_id``), and the answer echoes it in
``X-Request-ID``.

When the answer is ready, one line goes to the logger ``wsauth.issuer.access``
(event ``request``): method, path (never the query string), status,
duration, client address, endpoint and, for a refusal, the reason code as a
field (the refusal line of :mod:`issuer.errors` has it in its text). The
answer is also counted in ``wsauth_issuer_http_requests_total``.
"""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, g, request

from issuer.metrics import get_metrics
from shared.logs import REQUEST_ID_HEADER, current_request_id, event_fields, request_id_from

__all__ = ["install", "note_reason"]

log = logging.getLogger("wsauth.issuer.access")

_MAX_LOGGED_PATH = 200


def note_reason(code: str) -> None:
    """Remember the reason code of this request's refusal for its access line."""
    g.wsauth_reason = code


def _request_id() -> str:
    request_id: str | None = g.get("request_id")
    if request_id is None:
        request_id = g.request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))
        g.request_id_token = current_request_id.set(request_id)
    return request_id


def _begin() -> None:
    g.started = time.perf_counter()
    _request_id()


def _finish(response: Response) -> Response:
    request_id = _request_id()
    response.headers[REQUEST_ID_HEADER] = request_id
    status = response.status_code
    get_metrics().answered(request.endpoint, status)
    started = g.get("started")
    duration_ms = round(1000.0 * (time.perf_counter() - started), 1) if started else 0.0
    path = _printable(request.path)
    reason = g.get("wsauth_reason")
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    log.log(
        level,
        "%s %s %d %.1fms ip=%s",
        request.method,
        path,
        status,
        duration_ms,
        request.remote_addr,
        extra=event_fields(
            "request",
            reason=reason,
            request_id=request_id,
            method=request.method,
            path=path,
            status=status,
            duration_ms=duration_ms,
            ip=request.remote_addr,
            endpoint=request.endpoint,
        ),
    )
    return response


def _reset(error: BaseException | None) -> None:
    # A WSGI worker thread serves many requests: the id must not leak into the next.
    token = g.pop("request_id_token", None)
    if token is not None:
        try:
            current_request_id.reset(token)
        except ValueError:  # set in another context (never expected): clear it instead
            current_request_id.set(None)


def install(app: Flask) -> None:
    """Add the request id and access line hooks (before any other ``before_request``)."""
    app.before_request(_begin)
    app.after_request(_finish)
    app.teardown_request(_reset)


def _printable(text: str) -> str:
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in text[:_MAX_LOGGED_PATH])
    return cleaned + ("..." if len(text) > _MAX_LOGGED_PATH else "")
