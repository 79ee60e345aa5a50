"""Request ids and the one access line per request of the issuer.

Every request gets a request id: its ``X-Request-ID`` header when that is
harmless (``[A-Za-z0-9._-]{1,64}``), else a fresh one
(:func:`wsauth.shared.logs.request_id_from`). Every log line written while the
request is handled carries it (``request_id``), and the answer echoes it in
``X-Request-ID``.

When the answer is ready, one line goes to the logger ``wsauth.issuer.access``
(event ``request``): method, path (never the query string), status,
duration, client address, endpoint and, for a refusal, the reason code as a
field (the refusal line of :mod:`wsauth.issuer.errors` has it in its text). The
answer is also counted in ``wsauth_issuer_http_requests_total``.
"""

from __future__ import annotations

import logging
import time
from typing import TypeVar, cast

from flask import Flask, Response, g, request
from werkzeug.local import LocalProxy

from wsauth.issuer.metrics import get_metrics
from wsauth.shared.logs import (
    REQUEST_ID_HEADER,
    current_request_id,
    event_fields,
    printable,
    request_id_from,
)

__all__ = ["install", "install_cleanup", "note_reason", "unproxied"]

log = logging.getLogger("wsauth.issuer.access")

_ENVIRON_REQUEST_ID = "HTTP_" + REQUEST_ID_HEADER.upper().replace("-", "_")

T = TypeVar("T")


def unproxied(proxy: T) -> T:
    """The object behind one of Flask's context proxies (``request``, ``g``, ``current_app``).

    Every attribute read through a proxy looks the context up again (about
    0.8 µs); a hook that reads several attributes takes the object once.
    """
    return cast("LocalProxy[T]", proxy)._get_current_object()


class _Access:
    """What the hooks keep about one request, in ``g`` (one lookup per hook)."""

    __slots__ = ("reason", "request_id", "started", "token")

    def __init__(self, request_id: str, started: float | None) -> None:
        self.request_id = request_id
        self.started = started
        self.reason: str | None = None
        self.token = current_request_id.set(request_id)


def _access(started: float | None = None) -> _Access:
    """This request's record, made on first use (the first hook, or an early error)."""
    flask_g = unproxied(g)
    access: _Access | None = flask_g.get("wsauth_access")
    if access is None:
        header = unproxied(request).environ.get(_ENVIRON_REQUEST_ID)
        access = flask_g.wsauth_access = _Access(request_id_from(header), started)
    return access


def note_reason(code: str) -> None:
    """Remember the reason code of this request's refusal for its access line."""
    _access().reason = code


def _begin() -> None:
    _access(time.perf_counter())


def _finish(response: Response) -> Response:
    access = _access()
    request_id = access.request_id
    response.headers[REQUEST_ID_HEADER] = request_id
    status = response.status_code
    this = unproxied(request)
    endpoint = this.endpoint
    get_metrics().answered(endpoint, status)
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    if not log.isEnabledFor(level):  # don't build a line nobody writes
        return response
    started = access.started
    duration_ms = round(1000.0 * (time.perf_counter() - started), 1) if started else 0.0
    path = printable(this.path)
    method = this.method
    ip = this.remote_addr
    log.log(
        level,
        "%s %s %d %.1fms ip=%s",
        method,
        path,
        status,
        duration_ms,
        ip,
        extra=event_fields(
            "request",
            reason=access.reason,
            request_id=request_id,
            method=method,
            path=path,
            status=status,
            duration_ms=duration_ms,
            ip=ip,
            endpoint=endpoint,
        ),
    )
    return response


def _reset(error: BaseException | None) -> None:
    # A WSGI worker thread serves many requests: the id must not leak into the next.
    access: _Access | None = unproxied(g).pop("wsauth_access", None)
    if access is not None:
        try:
            current_request_id.reset(access.token)
        except ValueError:  # set in another context (never expected): clear it instead
            current_request_id.set(None)


def install_cleanup(app: Flask) -> None:
    """Only the end-of-request reset of the request id: for a host app with the Flask
    extension, whose refusals note their reason (:func:`note_reason`) but which has
    no access line of wsauth's."""
    if _reset not in app.teardown_request_funcs.get(None, []):
        app.teardown_request(_reset)


def install(app: Flask) -> None:
    """Add the request id and access line hooks (before any other ``before_request``)."""
    app.before_request(_begin)
    app.after_request(_finish)
    app.teardown_request(_reset)
