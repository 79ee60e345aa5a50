"""The Flask extension on a host app with the real Flask-Login, a real Redis and key store.

The host apps here are small Flask apps of their own (their own login, their
own session); requests go through Flask's test client, which runs the whole
app (hooks, sessions, error handlers) without a socket. The example app of
the how-to is driven over real sockets and in Chromium in
tests/browser/test_flask_example.py.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask, render_template_string
from flask.testing import FlaskClient
from flask_login import LoginManager, UserMixin, login_user, logout_user

from tests.conftest import TEST_SECRET
from wsauth.flask import WsAuth
from wsauth.issuer.host import SESSION_KEY, host_state
from wsauth.shared.core.config import Settings
from wsauth.shared.core.errors import ConfigError
from wsauth.shared.core.tokens import Claims
from wsauth.shared.state.replay import jti_key
from wsauth.shared.state.sessions import revoked_session_key

CSRF = {"X-WSAuth-CSRF": "1"}
TOKEN_PATH = "/wsauth/ws-token"


class User(UserMixin):
    def __init__(self, name: str) -> None:
        self.id = name


def host_app(settings: Settings | None = None, **wsauth_options: Any) -> tuple[Flask, WsAuth]:
    """A host app: Flask-Login with a one-line user loader, a login route, a logout route."""
    app = Flask("host")
    app.config.update(SECRET_KEY=TEST_SECRET, TESTING=True)
    login_manager = LoginManager(app)

    @login_manager.user_loader
    def load_user(user_id: str) -> User:
        return User(user_id)

    @app.post("/login/<name>")
    def login(name: str) -> str:
        login_user(User(name))
        return "ok"

    @app.post("/logout")
    def logout() -> str:
        logout_user()
        return "bye"

    @app.get("/page")
    def page() -> str:
        return render_template_string("{{ ws_token() }}")

    extension = WsAuth(settings=settings, **wsauth_options)
    extension.init_app(app)
    return app, extension


@pytest.fixture
def client(settings: Settings) -> FlaskClient:
    app, _extension = host_app(settings, scope=lambda sub: f"sub:user:{sub}")
    return app.test_client()


def token_of(answer: Any, check: Callable[[str], Claims]) -> Claims:
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.headers["Cache-Control"] == "no-store"
    return check(answer.get_json()["token"])


def test_a_flask_login_user_gets_a_token_for_their_own_id_with_the_hosts_scope(
    client: FlaskClient, check_token: Callable[[str], Claims], settings: Settings
) -> None:
    client.post("/login/alice")
    answer = client.post(TOKEN_PATH, headers=CSRF)
    claims = token_of(answer, check_token)
    assert (claims.sub, claims.scope) == ("alice", "sub:user:alice")
    assert claims.sid is not None
    assert answer.get_json()["url"] == settings.gateway_url
    assert answer.get_json()["expires_in"] == settings.token_ttl
    # The session id is the host session's own, and stays for the session.
    assert token_of(client.post(TOKEN_PATH, headers=CSRF), check_token).sid == claims.sid


def test_nobody_logged_in_gets_401_and_no_token(
    client: FlaskClient, redis_client: redis.Redis
) -> None:
    answer = client.post(TOKEN_PATH, headers=CSRF)
    assert answer.status_code == 401
    assert answer.get_json() == {"error": "not_authenticated"}
    assert redis_client.dbsize() == 0


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {**CSRF, "Origin": "https://evil.example"},
        {**CSRF, "Sec-Fetch-Site": "cross-site"},
    ],
)
def test_the_token_endpoint_has_the_csrf_and_origin_rules_of_ws_token(
    client: FlaskClient, redis_client: redis.Redis, headers: dict[str, str]
) -> None:
    client.post("/login/alice")
    answer = client.post(TOKEN_PATH, headers=headers)
    assert answer.status_code == 403
    assert answer.get_json() == {"error": "csrf_rejected"}
    assert redis_client.dbsize() == 0


def test_an_allowed_origin_gets_its_token(
    client: FlaskClient, settings: Settings, check_token: Callable[[str], Claims]
) -> None:
    client.post("/login/alice")
    origin = settings.allowed_origins[0]
    token_of(client.post(TOKEN_PATH, headers={**CSRF, "Origin": origin}), check_token)


def test_the_template_global_renders_a_fresh_token(
    client: FlaskClient, check_token: Callable[[str], Claims]
) -> None:
    client.post("/login/alice")
    first = client.get("/page").get_data(as_text=True)
    second = client.get("/page").get_data(as_text=True)
    assert check_token(first).sub == check_token(second).sub == "alice"
    assert first != second


def test_the_endpoints_go_under_the_url_prefix(
    settings: Settings, check_token: Callable[[str], Claims], key_store: Any
) -> None:
    app, _extension = host_app(settings, url_prefix="/realtime")
    client = app.test_client()
    client.post("/login/bob")
    token_of(client.post("/realtime/ws-token", headers=CSRF), check_token)
    jwks = client.get("/realtime/.well-known/jwks.json")
    assert jwks.status_code == 200
    assert jwks.get_data() == (key_store.dir / "jwks.json").read_bytes()
    assert client.post(TOKEN_PATH, headers=CSRF).status_code == 404


def test_the_hosts_own_error_pages_stay_the_hosts(client: FlaskClient) -> None:
    answer = client.get("/no-such-page")
    assert answer.status_code == 404
    assert answer.mimetype == "text/html"  # Flask's page, not wsauth's JSON


def test_logout_user_revokes_the_session_and_deletes_its_unused_tokens(
    client: FlaskClient,
    check_token: Callable[[str], Claims],
    redis_client: redis.Redis,
    settings: Settings,
) -> None:
    client.post("/login/alice")
    claims = token_of(client.post(TOKEN_PATH, headers=CSRF), check_token)
    prefix = settings.redis_prefix
    assert redis_client.exists(jti_key(prefix, claims.jti))
    assert client.post("/logout").status_code == 200
    assert not redis_client.exists(jti_key(prefix, claims.jti))
    assert claims.sid is not None
    assert redis_client.ttl(revoked_session_key(prefix, claims.sid)) > 0
    with client.session_transaction() as session:
        assert SESSION_KEY not in session
    # Logging in again is a new wsauth session.
    client.post("/login/alice")
    again = token_of(client.post(TOKEN_PATH, headers=CSRF), check_token)
    assert again.sid not in (None, claims.sid)


def test_a_copied_session_cookie_cannot_mint_after_logout(
    client: FlaskClient, check_token: Callable[[str], Claims]
) -> None:
    client.post("/login/alice")
    token_of(client.post(TOKEN_PATH, headers=CSRF), check_token)
    with client.session_transaction() as session:
        copied = dict(session)
    client.post("/logout")
    with client.session_transaction() as session:
        session.update(copied)  # an attacker replays the cookie from before the logout
    answer = client.post(TOKEN_PATH, headers=CSRF)
    assert answer.status_code == 401
    assert answer.get_json() == {"error": "not_authenticated"}


def test_another_user_in_the_same_browser_session_gets_another_sid(
    client: FlaskClient, check_token: Callable[[str], Claims]
) -> None:
    client.post("/login/alice")
    alice = token_of(client.post(TOKEN_PATH, headers=CSRF), check_token)
    client.post("/login/bob")  # no logout in between: Flask-Login keeps the session
    bob = token_of(client.post(TOKEN_PATH, headers=CSRF), check_token)
    assert bob.sub == "bob"
    assert bob.sid != alice.sid


def _raise() -> str:
    raise RuntimeError("database is down")


BAD_CALLABLES: list[tuple[str, dict[str, Any]]] = [
    ("identity raises", {"identity": _raise}),
    ("identity gives a number", {"identity": lambda: 42}),
    ("identity gives an empty sub", {"identity": lambda: ""}),
    ("identity gives a long sub", {"identity": lambda: "x" * 257}),
    ("identity gives a newline", {"identity": lambda: "alice\nadmin"}),
    ("scope raises", {"scope": lambda sub: _raise()}),
    ("scope too long", {"scope": lambda sub: "sub:" + "a" * 1024}),
    ("scope not a string", {"scope": lambda sub: ["sub:chat"]}),
    ("session_id raises", {"session_id": lambda sub: _raise()}),
    ("session_id too long", {"session_id": lambda sub: "s" * 129}),
]


@pytest.mark.parametrize(("case", "options"), BAD_CALLABLES, ids=[c for c, _ in BAD_CALLABLES])
def test_a_failing_host_callable_is_a_logged_refusal_never_a_500_or_a_token(
    settings: Settings,
    redis_client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
    case: str,
    options: dict[str, Any],
) -> None:
    app, _extension = host_app(settings, **options)
    client = app.test_client()
    client.post("/login/alice")
    with caplog.at_level(logging.INFO, logger="wsauth"):
        answer = client.post(TOKEN_PATH, headers=CSRF)
        page = client.get("/page")
    for refused in (answer, page):
        assert refused.status_code == 403, refused.get_data(as_text=True)
        assert refused.get_json() == {"error": "host_refused"}
    assert redis_client.dbsize() == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("callable" in line and "no token" in line for line in warnings), warnings
    assert not any(r.exc_info for r in caplog.records), "no traceback in the log"


def test_identity_may_be_any_callable_without_flask_login(
    settings: Settings, check_token: Callable[[str], Claims]
) -> None:
    app = Flask("plain")
    app.config["SECRET_KEY"] = TEST_SECRET
    extension = WsAuth(settings=settings)

    @extension.identity_loader
    def who() -> str | None:
        return "service-user"

    extension.init_app(app)
    claims = token_of(app.test_client().post(TOKEN_PATH, headers=CSRF), check_token)
    assert claims.sub == "service-user"


def test_one_extension_serves_two_apps_and_keeps_no_app(
    settings: Settings, make_settings: Callable[..., Settings]
) -> None:
    other_settings = make_settings(audience="other-audience")
    extension = WsAuth(identity=lambda: "alice")
    first, second = Flask("first"), Flask("second")
    for app, app_settings in ((first, settings), (second, other_settings)):
        app.config["SECRET_KEY"] = TEST_SECRET
        extension.init_app(app, settings=app_settings)
    assert not any(isinstance(value, Flask) for value in vars(extension).values())
    with first.app_context():
        assert host_state().settings.audience == settings.audience
    with second.app_context():
        assert host_state().settings.audience == "other-audience"


def test_settings_come_from_wsauth_entries_of_app_config(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [name for name in os.environ if name.startswith("WSAUTH_")]:
        monkeypatch.delenv(name)
    app = Flask("configured")
    app.config.update(
        SECRET_KEY=TEST_SECRET,
        WSAUTH_KEYS_DIR=str(settings.keys_dir),
        WSAUTH_REDIS_URL=settings.redis_url,
        WSAUTH_TOKEN_TTL=12,
    )
    WsAuth(identity=lambda: "alice").init_app(app)
    answer = app.test_client().post(TOKEN_PATH, headers=CSRF)
    assert answer.get_json()["expires_in"] == 12


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_misconfiguration_stops_init_app_with_one_line_naming_the_setting(
    settings: Settings, tmp_path: Path
) -> None:
    def start(config: dict[str, Any], *, login: bool = True, **options: Any) -> str:
        app = Flask("broken")
        app.config.update(config)
        if login:
            LoginManager(app)
        with pytest.raises(ConfigError) as caught:
            WsAuth(**options).init_app(app)
        message = str(caught.value)
        assert "\n" not in message
        return message

    secret = {"SECRET_KEY": TEST_SECRET}
    assert start(secret, login=False, settings=settings).startswith("identity: ")
    assert start({}, settings=settings).startswith("SECRET_KEY: ")
    no_keys = settings.replace(keys_dir=tmp_path / "none")
    assert start(secret, settings=no_keys).startswith("WSAUTH_KEYS_DIR: ")
    no_redis = settings.replace(redis_url=f"redis://u:pw-secret@127.0.0.1:{_closed_port()}/0")
    message = start(secret, settings=no_redis)
    assert message.startswith("WSAUTH_REDIS_URL: ") and "pw-secret" not in message
    bad_ttl = start({**secret, "WSAUTH_TOKEN_TTL": 900})
    assert bad_ttl.startswith("WSAUTH_TOKEN_TTL: ")
    assert start({**secret, "WSAUTH_NO_SUCH_THING": 1}).startswith("WSAUTH_NO_SUCH_THING: ")


def test_without_the_start_check_redis_down_is_503_at_request_time(
    settings: Settings,
) -> None:
    down = settings.replace(redis_url=f"redis://127.0.0.1:{_closed_port()}/0")
    app, _extension = host_app(down, check_at_start=False)
    client = app.test_client()
    client.post("/login/alice")
    answer = client.post(TOKEN_PATH, headers=CSRF)
    assert answer.status_code == 503
    assert answer.get_json() == {"error": "redis_unavailable"}


def test_the_extension_gives_the_host_its_issuer_to_revoke_a_user(
    settings: Settings, redis_client: redis.Redis
) -> None:
    app, extension = host_app(settings)
    with app.app_context():
        revocation = extension.issuer().revoke(sub="mallory")
    assert revocation.tokens_deleted == 0
    assert redis_client.exists(f"{settings.redis_prefix}revoked_sub:mallory")


def test_a_logout_redis_cannot_record_is_503_and_keeps_the_session_id_for_a_retry(
    settings: Settings,
) -> None:
    down = settings.replace(redis_url=f"redis://127.0.0.1:{_closed_port()}/0")
    app, _extension = host_app(down, check_at_start=False)
    client = app.test_client()
    with client.session_transaction() as session:
        session["_user_id"] = "alice"
        session[SESSION_KEY] = ["alice", "sid-to-revoke"]
    answer = client.post("/logout")
    assert answer.status_code == 503
    assert answer.get_json() == {"error": "redis_unavailable"}
    with client.session_transaction() as session:
        assert session[SESSION_KEY] == ["alice", "sid-to-revoke"]
