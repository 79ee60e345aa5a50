"""wsauth.django in a real Django project (Django's test client, CSRF enforced), a real Redis
and a real gateway on loopback."""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from django.core import checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import Client
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.django.conftest import make_user
from tests.support.gateway_server import GatewayHandle, run_gateway
from tests.support.welcome import without_ticket
from tests.ws.conftest import refusal
from wsauth.django import conf
from wsauth.django.apps import check_settings
from wsauth.shared.core.config import Settings
from wsauth.shared.state.redis_server import free_port

pytestmark = pytest.mark.usefixtures("use_wsauth")


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(gateway_url=f"ws://127.0.0.1:{free_port()}/ws")


@pytest.fixture
def gateway(settings: Settings) -> Iterator[GatewayHandle]:
    port = int(settings.gateway_url.rsplit(":", 1)[1].split("/")[0])
    with run_gateway(settings, port=port) as handle:
        yield handle


def _page(client: Client) -> tuple[str, str]:
    """GET the page: its gateway URL and its token (empty when none was rendered)."""
    html = client.get("/").content.decode()
    match = re.search(r'data-url="([^"]*)" data-token="([^"]*)"', html)
    assert match is not None, html
    return match.group(1), match.group(2)


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def _fetch_token(client: Client, **headers: str) -> Any:
    return client.post("/wsauth/token", headers=headers)


def _csrf(client: Client) -> dict[str, str]:
    client.get("/")  # sets the csrftoken cookie (ensure_csrf_cookie)
    return {"X-CSRFToken": client.cookies["csrftoken"].value}


def _open(url: str, token: str) -> ClientConnection:
    return connect(url, subprotocols=["wsauth", f"wsauth.bearer.{token}"], open_timeout=5)  # type: ignore[list-item]


def _close_code(ws: ClientConnection) -> int | None:
    try:
        while True:
            ws.recv(timeout=5)
    except ConnectionClosed:
        pass
    return ws.close_code


def test_a_django_rendered_token_connects_once(
    client: Client, gateway: GatewayHandle, settings: Settings
) -> None:
    client.force_login(make_user("alice"))
    url, token = _page(client)
    assert url == settings.gateway_url == gateway.ws_url
    with _open(url, token) as ws:
        assert without_ticket(json.loads(ws.recv(timeout=5))) == {"type": "welcome", "sub": "alice"}
    again = refusal(url, subprotocols=["wsauth", f"wsauth.bearer.{token}"])  # type: ignore[list-item]
    assert (again.status, again.error) == (401, "token_replayed")


def test_a_page_for_a_visitor_who_is_not_logged_in_holds_no_token(client: Client) -> None:
    assert _page(client)[1] == ""


def test_the_token_view_answers_a_logged_in_fetch_with_the_csrf_token(
    client: Client, gateway: GatewayHandle
) -> None:
    client.force_login(make_user("bob"))
    answer = _fetch_token(client, **_csrf(client))
    assert answer.status_code == 200
    assert answer["Cache-Control"] == "no-store"
    body = answer.json()
    assert set(body) == {"token", "expires_in", "url"}
    assert body["url"] == gateway.ws_url
    with _open(body["url"], body["token"]) as ws:
        assert json.loads(ws.recv(timeout=5))["sub"] == "bob"


def test_the_token_view_refuses_a_post_without_the_csrf_token(
    client: Client, redis_client: redis.Redis
) -> None:
    client.force_login(make_user("bob"))
    client.get("/")  # the page's own token is the only one recorded
    before = set(redis_client.scan_iter("wsauth:jti:*"))
    assert _fetch_token(client).status_code == 403
    assert _fetch_token(client, **{"X-CSRFToken": "x" * 32}).status_code == 403
    assert set(redis_client.scan_iter("wsauth:jti:*")) == before


def test_the_token_view_refuses_a_visitor_with_401_and_a_get_with_405(client: Client) -> None:
    answer = _fetch_token(client, **_csrf(client))
    assert (answer.status_code, answer.json()) == (401, {"error": "not_authenticated"})
    assert client.get("/wsauth/token").status_code == 405


def test_the_token_carries_a_digest_of_the_session_key_never_the_key(client: Client) -> None:
    client.force_login(make_user("alice"))
    claims = _claims(_page(client)[1])
    session_key = client.session.session_key
    assert claims["sub"] == "alice"
    assert claims["sid"] == conf.session_id(session_key)
    assert session_key not in json.dumps(claims)


def test_logout_closes_that_sessions_connections_with_4001_and_deletes_its_unused_tokens(
    gateway: GatewayHandle, redis_client: redis.Redis
) -> None:
    user = make_user("alice")
    leaving, staying = Client(enforce_csrf_checks=True), Client(enforce_csrf_checks=True)
    leaving.force_login(user)
    staying.force_login(user)
    url, unused = _page(leaving)
    with (
        _open(url, _page(leaving)[1]) as revoked,
        _open(url, _page(staying)[1]) as kept,
    ):
        revoked.recv(timeout=5)
        kept.recv(timeout=5)
        leaving.get("/logout")
        assert _close_code(revoked) == 4001
        assert not redis_client.exists(f"wsauth:jti:{_claims(unused)['jti']}")
        assert refusal(url, subprotocols=["wsauth", f"wsauth.bearer.{unused}"]).status == 401  # type: ignore[list-item]
        kept.ping().wait(timeout=5)
        assert kept.close_code is None


def test_scope_and_subject_come_from_the_projects_settings(
    client: Client, use_wsauth: Callable[..., None]
) -> None:
    use_wsauth(SUBJECT="tests.django.hosts.user_pk", SCOPE="sub:chat:* pub:chat:lobby")
    user = make_user("carol")
    client.force_login(user)
    claims = _claims(_page(client)[1])
    assert (claims["sub"], claims["scope"]) == (f"user-{user.pk}", "sub:chat:* pub:chat:lobby")
    use_wsauth(SCOPE="tests.django.hosts.scope_by_name")
    assert _claims(_page(client)[1])["scope"] == "sub:room:carol"


@pytest.mark.parametrize(
    "options",
    [
        {"SUBJECT": "tests.django.hosts.failing"},
        {"SUBJECT": "tests.django.hosts.bad_subject"},
        {"SCOPE": "tests.django.hosts.bad_scope"},
    ],
)
def test_a_host_callable_that_fails_or_gives_a_bad_value_is_a_logged_403_host_refused_and_no_token(
    client: Client,
    use_wsauth: Callable[..., None],
    options: dict[str, str],
    redis_client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    use_wsauth(**options)
    client.force_login(make_user("dave"))
    answer = _fetch_token(client, **_csrf(client))
    assert (answer.status_code, answer.json()) == (403, {"error": "host_refused"})
    assert _page(client)[1] == ""
    assert list(redis_client.scan_iter("wsauth:jti:*")) == []
    assert [r for r in caplog.records if r.name == "wsauth.django" and r.levelno >= logging.ERROR]


def test_redis_down_is_a_503_from_the_view_and_no_token_in_the_page(
    client: Client, use_wsauth: Callable[..., None]
) -> None:
    use_wsauth(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", REDIS_TIMEOUT=1)
    client.force_login(make_user("erin"))
    answer = _fetch_token(client, **_csrf(client))
    assert (answer.status_code, answer.json()) == (503, {"error": "redis_unavailable"})
    assert answer["Retry-After"] == "1"
    assert _page(client)[1] == ""


def test_the_system_check_passes_for_a_working_configuration() -> None:
    assert check_settings() == []


@pytest.mark.parametrize(
    ("extra", "id_", "first_words"),
    [
        ({"TOKEN_TTL": 9999}, "wsauth.E001", "WSAUTH_TOKEN_TTL"),
        ({"NO_SUCH_THING": 1}, "wsauth.E001", "WSAUTH_NO_SUCH_THING"),
        ({"SCOPE": "tests.django.hosts.missing"}, "wsauth.E002", "settings.WSAUTH"),
        ({"KEYS_DIR": "/nonexistent/keys"}, "wsauth.E003", "WSAUTH_KEYS_DIR"),
        (
            {"REDIS_URL": "redis://127.0.0.1:1/0", "REDIS_TIMEOUT": 1},
            "wsauth.E004",
            "WSAUTH_REDIS_URL",
        ),
    ],
)
def test_a_misconfiguration_is_one_system_check_error_naming_the_setting(
    use_wsauth: Callable[..., None], extra: dict[str, Any], id_: str, first_words: str
) -> None:
    use_wsauth(**extra)
    (error,) = check_settings()
    assert isinstance(error, checks.Error)
    assert error.id == id_
    assert error.msg.startswith(first_words)
    assert "\n" not in error.msg
    with pytest.raises(SystemCheckError, match=re.escape(id_)):
        call_command("check")


def test_the_token_limit_per_user_is_a_429_with_retry_after(
    client: Client, use_wsauth: Callable[..., None], redis_client: redis.Redis
) -> None:
    use_wsauth(RATE_LIMIT_TOKENS="2/minute")
    client.force_login(make_user("frank"))
    csrf = _csrf(client)  # the page rendered the first token
    assert _fetch_token(client, **csrf).status_code == 200
    before = set(redis_client.scan_iter("wsauth:jti:*"))
    answer = _fetch_token(client, **csrf)
    assert (answer.status_code, answer.json()) == (429, {"error": "rate_limited"})
    assert 1 <= int(answer["Retry-After"]) <= 60
    assert _page(client)[1] == ""
    assert set(redis_client.scan_iter("wsauth:jti:*")) == before
    # Another user's budget is their own.
    other = Client(enforce_csrf_checks=True)
    other.force_login(make_user("grace"))
    assert _page(other)[1] != ""


def test_a_logout_while_redis_is_down_succeeds_and_logs_the_failed_revocation(
    client: Client, use_wsauth: Callable[..., None], caplog: pytest.LogCaptureFixture
) -> None:
    client.force_login(make_user("heidi"))
    sid = conf.session_id(client.session.session_key)
    use_wsauth(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", REDIS_TIMEOUT=1)
    answer = client.get("/logout")
    assert (answer.status_code, answer.content) == (200, b"bye")
    assert "_auth_user_id" not in client.session
    (record,) = [
        r for r in caplog.records if r.name == "wsauth.django" and r.levelno >= logging.ERROR
    ]
    assert record.getMessage().startswith(f"logout: revoking sid={sid} failed: redis_unavailable")
