"""POST /ws-token: browser tokens for a logged-in session, behind the CSRF checks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import redis
import requests

from tests.issuer.conftest import ALICE, CSRF, login_json
from tests.support.issuer_server import run_issuer
from wsauth.issuer.users import UserStore
from wsauth.shared.core.config import Settings
from wsauth.shared.core.tokens import Claims


def test_ws_token_returns_token_expiry_and_gateway_url(
    alice: requests.Session, issuer_url: str, settings: Settings
) -> None:
    answer = alice.post(f"{issuer_url}/ws-token", headers=CSRF)
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"token", "expires_in", "url"}
    assert body["expires_in"] == settings.token_ttl
    assert body["url"] == settings.gateway_url
    assert answer.headers["Cache-Control"] == "no-store"


def test_ws_token_verifies_with_the_public_keyset_and_names_user_and_session(
    alice: requests.Session, issuer_url: str, check_token: Callable[[str], Claims]
) -> None:
    first = check_token(alice.post(f"{issuer_url}/ws-token", headers=CSRF).json()["token"])
    second = check_token(alice.post(f"{issuer_url}/ws-token", headers=CSRF).json()["token"])
    assert first.sub == "alice"
    assert first.sid and first.sid == second.sid
    assert first.jti != second.jti
    assert first.exp - first.iat == 30


def test_ws_token_records_jti_with_sub_and_ttl_plus_leeway(
    alice: requests.Session,
    issuer_url: str,
    check_token: Callable[[str], Claims],
    redis_client: redis.Redis,
    settings: Settings,
) -> None:
    claims = check_token(alice.post(f"{issuer_url}/ws-token", headers=CSRF).json()["token"])
    key = f"wsauth:jti:{claims.jti}"
    assert redis_client.get(key) == "alice"
    ttl = redis_client.ttl(key)
    assert settings.token_ttl + settings.leeway - 2 <= ttl <= settings.token_ttl + settings.leeway


def test_ws_token_requires_custom_header(
    alice: requests.Session, issuer_url: str, redis_client: redis.Redis
) -> None:
    for headers in ({}, {"X-WSAuth-CSRF": "0"}, {"X-WSAuth-CSRF": "yes"}):
        answer = alice.post(f"{issuer_url}/ws-token", headers=headers)
        assert answer.status_code == 403
        assert answer.json() == {"error": "csrf_rejected"}
    assert redis_client.dbsize() == 0


def test_ws_token_refuses_foreign_origin(
    alice: requests.Session, issuer_url: str, redis_client: redis.Redis
) -> None:
    for origin in ("https://evil.example", "null", "http://127.0.0.1:8000.evil.example"):
        answer = alice.post(f"{issuer_url}/ws-token", headers={**CSRF, "Origin": origin})
        assert answer.status_code == 403
        assert answer.json() == {"error": "csrf_rejected"}
    assert redis_client.dbsize() == 0


def test_ws_token_accepts_an_allowed_origin(
    alice: requests.Session, issuer_url: str, settings: Settings
) -> None:
    origin = settings.allowed_origins[0]
    answer = alice.post(f"{issuer_url}/ws-token", headers={**CSRF, "Origin": origin})
    assert answer.status_code == 200


def test_ws_token_refuses_cross_site_fetch_metadata(
    alice: requests.Session, issuer_url: str
) -> None:
    answer = alice.post(f"{issuer_url}/ws-token", headers={**CSRF, "Sec-Fetch-Site": "cross-site"})
    assert answer.status_code == 403
    assert answer.json() == {"error": "csrf_rejected"}
    same = alice.post(f"{issuer_url}/ws-token", headers={**CSRF, "Sec-Fetch-Site": "same-origin"})
    assert same.status_code == 200


def test_ws_token_without_session_is_401(
    browser: requests.Session, issuer_url: str, redis_client: redis.Redis
) -> None:
    answer = browser.post(f"{issuer_url}/ws-token", headers=CSRF)
    assert answer.status_code == 401
    assert answer.json() == {"error": "not_authenticated"}
    assert answer.headers["Cache-Control"] == "no-store"
    assert redis_client.dbsize() == 0


def test_ws_token_refuses_a_forged_session_cookie(
    browser: requests.Session, issuer_url: str
) -> None:
    browser.cookies.set("wsauth_session", "eyJ1c2VyIjoiYWxpY2UifQ.forged.signature")
    answer = browser.post(f"{issuer_url}/ws-token", headers=CSRF)
    assert answer.status_code == 401


def test_ws_token_answers_json_for_wrong_method(issuer_url: str) -> None:
    answer = requests.get(f"{issuer_url}/ws-token", timeout=5)
    assert answer.status_code == 405
    assert answer.json() == {"error": "method_not_allowed"}


def test_ws_token_is_503_without_a_signing_key(
    make_settings: Callable[..., Settings], tmp_path: Path, browser: requests.Session
) -> None:
    settings = make_settings(keys_dir=str(tmp_path / "empty-store"))
    UserStore.in_dir(settings.keys_dir).set_password(*ALICE)
    with run_issuer(settings) as url:
        assert login_json(browser, url, *ALICE).status_code == 200
        answer = browser.post(f"{url}/ws-token", headers=CSRF)
        assert answer.status_code == 503
        assert answer.json() == {"error": "no_signing_key"}
