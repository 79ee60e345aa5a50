"""The issuer's HTTP endpoints: two blueprints of thin adapters.

:data:`host_bp` (``wsauth``) holds what the Flask extension mounts on any app,
under its URL prefix (:mod:`wsauth.issuer.extension`): ``/ws-token``, the JWKS and
the ``ws_token()`` template global, asking the host who the user is
(:meth:`wsauth.issuer.host.HostState.principal`). :data:`bp` (``issuer``) is the
rest of the built-in issuer: demo pages and login, API clients, health, metrics.
The built-in app mounts both, ``host_bp`` without a prefix.

======================  ======  ==================================================
path                    method  what
======================  ======  ==================================================
``/``                   GET     demo page: login form, or a WebSocket console
``/login``              GET     login form
``/login``              POST    form (``csrf_token``) or JSON (``X-WSAuth-CSRF: 1``)
``/logout``             POST    form (``csrf_token``) or ``X-WSAuth-CSRF: 1``
``/ws-token``           POST    session + ``X-WSAuth-CSRF: 1`` → token (``host_bp``)
``/push-self``          POST    session + ``X-WSAuth-CSRF: 1``, ``{"data": ...}`` → push to
                                your own connections → ``{"delivered_to_nodes": n}``
``/api/tokens``         POST    HTTP Basic ``client_id:secret`` → token; with
                                ``{"sub", "sid"?, "scope"?}`` (client with the mint
                                permission) → a token for that user
``/api/push``           POST    HTTP Basic (client with the push permission),
                                ``{"sub", "data"}`` → ``{"delivered_to_nodes": n}``
``/api/publish``        POST    HTTP Basic (client with the publish permission),
                                ``{"channel", "data"}`` → ``{"delivered_to_nodes": n}``
``/.well-known/jwks.json`` GET  the public keys (``host_bp``)
``/healthz``            GET     liveness: the process answers
``/readyz``             GET     readiness: Redis, signing key, JWKS, timing rule
``/metrics``            GET     Prometheus metrics (:mod:`wsauth.issuer.metrics`)
======================  ======  ==================================================

A token answer is ``{"token", "expires_in", "url"}`` with ``Cache-Control:
no-store``. Refusals are ``{"error": <code>}`` (:mod:`wsauth.issuer.errors`).
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.wrappers import Response as BaseResponse

from wsauth.issuer import csrf
from wsauth.issuer.access import note_reason, unproxied
from wsauth.issuer.bodies import json_object
from wsauth.issuer.clients import CLIENT_ID, MINT, PUBLISH, PUSH, ApiClient
from wsauth.issuer.host import host_state
from wsauth.issuer.login import current_login, log_in, log_out, require_login
from wsauth.issuer.metrics import API, BROWSER, get_metrics
from wsauth.issuer.published import current_kid, timing_covered
from wsauth.issuer.ratelimit import limit_login_name, limit_principal, limit_push
from wsauth.issuer.state import IssuerState, get_state
from wsauth.shared.core.errors import (
    BadRequest,
    CsrfRejected,
    Forbidden,
    InvalidClaims,
    JwksInvalid,
    NoSigningKey,
    NotAuthenticated,
)
from wsauth.shared.issuing import Grant, check_request
from wsauth.shared.logs import event_fields
from wsauth.shared.state.events import MAX_EVENT_BYTES, publish_message, publish_push
from wsauth.shared.state.history import History

log = logging.getLogger("wsauth.issuer")

bp = Blueprint("issuer", __name__)
host_bp = Blueprint("wsauth", __name__)

BASIC_CHALLENGE = 'Basic realm="wsauth"'
# The body jsonify() writes with Flask's default JSON provider (sorted keys,
# ASCII, compact, a final newline), byte for byte, without its per-call
# provider lookups and encoder: about 5 µs less per token answer.
_TOKEN_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
LOGIN_FAILED = "invalid username or password"
FORM_EXPIRED = "the form expired; please try again"


# --- pages ------------------------------------------------------------------


def _page(template: str, status: int = 200, **context: Any) -> Response:
    """Render a page with a per-response CSP nonce for its one inline script and style."""
    nonce = secrets.token_urlsafe(16)
    g.csp_nonce = nonce
    response = Response(
        render_template(template, csp_nonce=nonce, **context), status=status, mimetype="text/html"
    )
    gateway = urlsplit(get_state().settings.gateway_url)
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        f"connect-src 'self' {gateway.scheme}://{gateway.netloc}; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    return response


@bp.get("/")
def index() -> Response:
    login = current_login()
    return _page(
        "index.html",
        user=login.user if login else None,
        csrf_token=csrf.form_token(),
        gateway_url=get_state().settings.gateway_url,
    )


@bp.get("/login")
def login_form() -> Response:
    return _page("login.html", csrf_token=csrf.form_token(), error=None)


@bp.post("/login")
def login() -> BaseResponse:
    users = get_state().users
    if request.is_json:
        if not csrf.has_custom_header():
            raise CsrfRejected(f"JSON login without {csrf.CSRF_HEADER}")
        csrf.refuse_cross_site()
        body = json_object(what="the login body")
        username, password = body.get("username"), body.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            raise BadRequest("username and password must be strings")
        limit_login_name(username)
        if not users.verify(username, password):
            raise NotAuthenticated("wrong username or password")
        login = log_in(username)
        log.info("login user=%s sid=%s", login.user, login.sid)
        return jsonify(user=login.user)

    try:
        csrf.check_form_request()
    except CsrfRejected as error:
        log.info(
            "POST /login refused: status=403 reason=%s detail=%s",
            error.code,
            error.detail,
            extra=event_fields("refused", reason=error.code, status=403, detail=error.detail),
        )
        note_reason(error.code)
        return _page("login.html", 403, csrf_token=csrf.form_token(), error=FORM_EXPIRED)
    username = request.form.get("username", "")
    password = request.form.get("password", "")
    limit_login_name(username)
    if not users.verify(username, password):
        log.info(
            "POST /login refused: status=401 reason=not_authenticated",
            extra=event_fields("refused", reason="not_authenticated", status=401),
        )
        note_reason("not_authenticated")
        return _page("login.html", 401, csrf_token=csrf.form_token(), error=LOGIN_FAILED)
    login = log_in(username)
    csrf.form_token()  # a fresh form token for the logout button
    log.info("login user=%s sid=%s", login.user, login.sid)
    return redirect(url_for("issuer.index"), code=303)


@bp.post("/logout")
def logout() -> BaseResponse:
    csrf.check_form_request()
    ended = log_out(get_state().revoked)
    if ended is not None:
        login, revocation = ended
        log.info(
            "logout user=%s sid=%s nodes=%d unused_tokens_deleted=%d",
            login.user,
            login.sid,
            revocation.nodes,
            revocation.tokens_deleted,
        )
    if csrf.has_custom_header():
        return jsonify(status="logged_out")
    return redirect(url_for("issuer.index"), code=303)


# --- tokens -------------------------------------------------------------------


def _issue(
    subject: str, *, sid: str | None, client: str, app: Flask, scope: str | None = None
) -> Grant:
    """Mint and record a token; count it in ``wsauth_issuer_tokens_issued_total{client}``."""
    started = time.perf_counter()
    grant = host_state(app).issuer.issue(subject, sid=sid, scope=scope)
    get_metrics(app).issued_token(client, time.perf_counter() - started)
    return grant


def _publish(sub: str, data: Any) -> int:
    state = get_state()
    started = time.perf_counter()
    try:
        return publish_push(
            state.signer.redis,
            state.settings.redis_prefix,
            sub,
            data,
            history=History.from_settings(state.settings),  # WSAUTH_HISTORY_USERS
        )
    finally:
        get_metrics().redis("publish", time.perf_counter() - started)


def _token_answer(
    subject: str, *, client: str, app: Flask, sid: str | None = None, scope: str | None = None
) -> Response:
    """The token answer; ``app`` is this request's app, looked up once by the view
    (each ``current_app`` or ``get_state()`` is another context lookup)."""
    grant = _issue(subject, sid=sid, client=client, app=app, scope=scope)
    body = _TOKEN_JSON.encode(
        {"token": grant.token, "expires_in": grant.expires_in, "url": grant.url}
    )
    response = Response(body + "\n", content_type="application/json")
    response.headers.add("Cache-Control", "no-store")  # a new answer: nothing to replace
    return response


@host_bp.post("/ws-token")
def ws_token() -> Response:
    """A token for the logged-in browser user: ``sub``, ``sid`` and ``scope`` as the host's
    callables say (the built-in app: the demo login's username and session id)."""
    app = unproxied(current_app)
    state = host_state(app)
    csrf.check_header_request(state.settings.allowed_origins)
    who = state.principal()
    limit_principal("user", who.sub, app=app)
    return _token_answer(who.sub, sid=who.sid, scope=who.scope, client=BROWSER, app=app)


def _api_client(state: IssuerState | None = None) -> ApiClient:
    """The API client of this request's HTTP Basic credentials.

    Raises:
        NotAuthenticated: no Basic credentials, or wrong ones (401 with a challenge).
    """
    auth = request.authorization
    if auth is None or auth.type != "basic":
        raise NotAuthenticated("no Basic credentials", challenge=BASIC_CHALLENGE)
    clients = (state or get_state()).clients
    client = clients.identify(auth.username or "", auth.password or "")
    if client is None:
        raise NotAuthenticated("wrong client credentials", challenge=BASIC_CHALLENGE)
    return client


MINT_MEMBERS = frozenset({"sub", "sid", "scope"})


def _mint_request(client: ApiClient) -> tuple[str, str | None, str | None]:
    """The ``{"sub", "sid"?, "scope"?}`` of a token exchange, checked.

    Raises:
        Forbidden: the client has no mint permission, or ``sub`` is another client's id.
        BadRequest: not a JSON object of those members, or a value that cannot be minted.
    """
    if not client.may(MINT):
        raise Forbidden(f"client {client.client_id} has no mint permission")
    body = json_object(what="the mint body")
    if not MINT_MEMBERS.issuperset(body) or "sub" not in body:
        raise BadRequest('the body must be a JSON object {"sub", "sid"?, "scope"?}')
    sub, sid, scope = body["sub"], body.get("sid"), body.get("scope")
    try:
        check_request(sub, sid, scope)
    except InvalidClaims as error:
        raise BadRequest(error.detail) from None
    # A client id is a principal of its own: only that client gets tokens for it.
    if CLIENT_ID.fullmatch(sub) and sub != client.client_id:
        raise Forbidden(f"client {client.client_id} may not mint for another client's id")
    return sub, sid, scope


@bp.post("/api/tokens")
def api_tokens() -> Response:
    """A token for an API client (``sub`` = client id), HTTP Basic ``client_id:secret``.

    With a body ``{"sub", "sid"?, "scope"?}`` from a client holding the ``mint``
    permission (``wsauth clients add NAME --allow-mint``): a token for that user,
    counted against the user's own token budget (``user:<sub>``), as a browser
    token for that user would be.
    """
    app = unproxied(current_app)
    client = _api_client(get_state(app))
    client_id = client.client_id
    if request.content_length or request.is_json:
        sub, sid, scope = _mint_request(client)
        limit_principal("user", sub, app=app)
        log.info("mint client=%s sub=%s sid=%s", client_id, sub, sid or "-")
        return _token_answer(sub, sid=sid, scope=scope, client=API, app=app)
    limit_principal("client", client_id, app=app)
    return _token_answer(client_id, client=API, app=app)


@bp.post("/api/push")
def api_push() -> Response:
    """Publish ``{"sub": ..., "data": ...}`` to every live connection of ``sub``.

    For API clients with the ``push`` permission (``wsauth clients add NAME
    --allow-push``); others get 403 ``forbidden``. The body must be JSON
    (``Content-Type: application/json``: a cross-site HTML form cannot send
    it). The answer, ``{"delivered_to_nodes": n}``, counts the gateway
    processes that received the event, not connections: a user with no live
    connection is not an error.
    """
    client = _api_client()
    if not client.may(PUSH):
        raise Forbidden(f"client {client.client_id} has no push permission")
    limit_push("client", client.client_id)
    request.max_content_length = MAX_EVENT_BYTES + 1024
    body = json_object(what="the push body")
    if not isinstance(body.get("sub"), str) or "data" not in body:
        raise BadRequest('the body must be a JSON object {"sub": "...", "data": ...}')
    nodes = _publish(body["sub"], body["data"])
    log.info("push client=%s sub=%s nodes=%d", client.client_id, body["sub"], nodes)
    return jsonify(delivered_to_nodes=nodes)


@bp.post("/api/publish")
def api_publish() -> Response:
    """Publish ``{"channel": ..., "data": ...}`` to every connection that joined ``channel``.

    For API clients with the ``publish`` permission (``wsauth clients add NAME
    --allow-publish``); others get 403 ``forbidden``. Like ``/api/push``: a JSON
    body, and ``{"delivered_to_nodes": n}`` counts the gateway processes
    holding a member of the channel, not connections.
    """
    client = _api_client()
    if not client.may(PUBLISH):
        raise Forbidden(f"client {client.client_id} has no publish permission")
    limit_push("client", client.client_id)
    request.max_content_length = MAX_EVENT_BYTES + 1024
    body = json_object(what="the publish body")
    if not isinstance(body.get("channel"), str) or "data" not in body:
        raise BadRequest('the body must be a JSON object {"channel": "...", "data": ...}')
    state = get_state()
    started = time.perf_counter()
    try:
        nodes = publish_message(
            state.signer.redis,
            state.settings.redis_prefix,
            body["channel"],
            body["data"],
            history=History.from_settings(state.settings),  # WSAUTH_HISTORY_CHANNELS
        )
    finally:
        get_metrics().redis("publish", time.perf_counter() - started)
    log.info("publish client=%s channel=%s nodes=%d", client.client_id, body["channel"], nodes)
    return jsonify(delivered_to_nodes=nodes)


@host_bp.app_template_global("ws_token")
def ws_token_global() -> str:
    """``{{ ws_token() }}``: a fresh token for the logged-in user, minted while the page renders.

    Raises (the page then fails with the error's JSON answer, never renders
    without a token):
        NotAuthenticated: nobody is logged in, or the session was logged out.
            Guard the call with ``{% if user %}`` (Flask-Login:
            ``{% if current_user.is_authenticated %}``).
        HostRefused: a host callable failed (see ``POST /ws-token``).
        Unavailable: Redis could not record the token.
    """
    app = unproxied(current_app)
    who = host_state(app).principal()
    limit_principal("user", who.sub, app=app)
    return _issue(who.sub, sid=who.sid, scope=who.scope, client=BROWSER, app=app).token


# --- the demo page's push button ------------------------------------------------


@bp.post("/push-self")
def push_self() -> Response:
    """Push ``{"data": ...}`` to the logged-in user's own live connections (the demo page).

    Only ever to the session's own ``sub``: a browser user cannot push to
    anyone else (backends use ``POST /api/push`` with client credentials).
    """
    state = get_state()
    csrf.check_header_request(state.settings.allowed_origins)
    login = require_login(state.revoked, state.users)
    limit_push("user", login.user)
    body = json_object(what="the push-self body")
    if "data" not in body:
        raise BadRequest('push-self body must be a JSON object {"data": ...}')
    nodes = _publish(login.user, body["data"])
    log.info("push-self user=%s nodes=%d", login.user, nodes)
    return jsonify(delivered_to_nodes=nodes)


# --- keys and health ------------------------------------------------------------


@host_bp.get("/.well-known/jwks.json")
def jwks() -> BaseResponse:
    """The key store's jwks.json, as written by ``wsauth keys``, once it passed the checks
    a gateway makes (:class:`wsauth.issuer.state.PublishedJwks`); 503 ``jwks_invalid`` if not.

    ``application/jwk-set+json`` is the media type RFC 7517 §8.5 registers for
    a JWK Set; JSON parsers accept it, and it tells a reader what the document is.
    ``Cache-Control``: any cache may keep it for C (``max-age``), but a shared
    cache must revalidate every time (``s-maxage=0, proxy-revalidate``), so a
    proxy between the gateways and the issuer can never add its own C to the
    revocation window; revalidating costs a 304 thanks to the ``ETag``.
    """
    state = host_state()
    published = state.jwks.get()
    if published is None:
        raise NoSigningKey("jwks.json does not exist")
    if published.body is None:
        raise JwksInvalid(published.error or "jwks.json does not load")
    response = Response(published.body, mimetype="application/jwk-set+json")
    response.headers["Cache-Control"] = (
        f"public, max-age={state.settings.jwks_cache}, s-maxage=0, proxy-revalidate"
    )
    response.add_etag()
    conditional = response.make_conditional(request)
    # The WSGI server sends Date itself; a second one from make_conditional would repeat it.
    del conditional.headers["Date"]
    return conditional


@bp.get("/healthz")
def healthz() -> Response:
    """Liveness: the process answers requests. Redis or keys missing is readiness (/readyz):
    restarting the issuer would not bring them back."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Readiness: 200 when Redis answers a PING, a current signing key exists, the JWKS
    served passes its checks and publishes that key, and the timing rule recorded in the
    key store covers this issuer's settings (``timing``); else 503."""
    state = get_state()
    signer = state.signer
    started = time.perf_counter()
    redis_ok = signer.redis_ok()
    get_metrics().redis("ping", time.perf_counter() - started)
    published = state.jwks.get()
    kid = current_kid(signer)
    checks = {
        "redis": redis_ok,
        "signing_key": kid is not None,
        "jwks": published is not None and kid is not None and kid in published.kids,
        "timing": timing_covered(state.settings),
    }
    ok = all(checks.values())
    return jsonify(status="ok" if ok else "degraded", checks=checks), 200 if ok else 503


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus metrics (text format; OpenMetrics when asked). Restrict it at the proxy."""
    body, content_type = get_metrics().render(request.headers.get("Accept"))
    return Response(body, content_type=content_type)
