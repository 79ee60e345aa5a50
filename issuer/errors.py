"""Translate failures at the edge: the reason code to the client, the detail to the log.

- :class:`~wsauth.shared.core.errors.WsAuthError` → ``{"error": err.code}`` with
  ``err.status``, and one log line with the reason code and the detail
  (details never hold a token, secret, password or Authorization header).
  An error whose context has a ``challenge`` adds ``WWW-Authenticate``.
- An HTTP error of werkzeug (404, 405, 413, ...) → ``{"error": "not_found"}`` etc.,
  with one log line (``reason=<name>``) like a refusal.
- A request body goes through :func:`wsauth.issuer.bodies.json_object`: a
  body of any shape is a 400 (or a 413 over the size cap), never a 500.
- Anything else → 500 ``{"error": "internal_error"}``; the traceback goes to the
  log only, never to the client.

Every answer also gets the headers of :func:`security_headers`. A refusal
of a token endpoint is counted in ``wsauth_issuer_token_refusals_total``.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse

from wsauth.issuer.access import note_reason
from wsauth.issuer.metrics import get_metrics
from wsauth.shared.core.errors import WsAuthError
from wsauth.shared.logs import event_fields

log = logging.getLogger("wsauth.issuer")


def handle_wsauth_error(error: WsAuthError) -> Response:
    level = logging.WARNING if error.status >= 500 else logging.INFO
    log.log(
        level,
        "%s %s refused: status=%d reason=%s detail=%s",
        request.method,
        request.path,
        error.status,
        error.code,
        error.detail or "-",
        extra=event_fields(
            "refused",
            reason=error.code,
            method=request.method,
            path=request.path,
            status=error.status,
            detail=error.detail or None,
        ),
    )
    note_reason(error.code)
    get_metrics().refusal(request.endpoint, error.code)
    response = jsonify(error=error.code)
    response.status_code = error.status
    challenge = error.context.get("challenge")
    if isinstance(challenge, str):
        response.headers["WWW-Authenticate"] = challenge
    return response


def handle_http_exception(error: HTTPException) -> BaseResponse:
    response = error.get_response()
    name = (error.name or "error").lower().replace(" ", "_").replace("'", "")
    status = error.code or 500
    log.log(
        logging.WARNING if status >= 500 else logging.INFO,
        "%s %s refused: status=%d reason=%s",
        request.method,
        request.path,
        status,
        name,
        extra=event_fields(
            "refused", reason=name, method=request.method, path=request.path, status=status
        ),
    )
    note_reason(name)
    response.set_data(jsonify(error=name).get_data())
    response.mimetype = "application/json"
    return response


def handle_unexpected(error: Exception) -> BaseResponse:
    if isinstance(error, HTTPException):
        return handle_http_exception(error)
    log.exception(
        "%s %s failed: status=500 reason=internal_error",
        request.method,
        request.path,
        extra=event_fields("failed", reason="internal_error", status=500),
    )
    note_reason("internal_error")
    response = jsonify(error="internal_error")
    response.status_code = 500
    return response


_DEFAULT_HEADERS = (
    ("cache-control", "Cache-Control", "no-store"),
    ("x-content-type-options", "X-Content-Type-Options", "nosniff"),
    ("referrer-policy", "Referrer-Policy", "no-referrer"),
    ("x-frame-options", "X-Frame-Options", "DENY"),
)


def security_headers(response: Response) -> Response:
    """Defaults for every answer: nothing is cached unless a view says otherwise."""
    headers = response.headers
    # One pass over the headers instead of Headers.setdefault, which raises and
    # catches an exception for each missing header (docs/performance.md).
    present = {name.lower() for name, _value in headers}
    for lower, name, value in _DEFAULT_HEADERS:
        if lower not in present:
            headers.add(name, value)
    return response


def register(app: Flask) -> None:
    app.register_error_handler(WsAuthError, handle_wsauth_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, handle_unexpected)
    app.after_request(security_headers)
