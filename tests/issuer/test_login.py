"""Login and logout: form posts with a CSRF token, JSON for scripts, session revocation."""

from __future__ import annotations

import requests

from tests.issuer.conftest import ALICE, CSRF, form_token, login_json


def test_index_shows_a_login_form_when_logged_out(
    browser: requests.Session, issuer_url: str
) -> None:
    page = browser.get(f"{issuer_url}/")
    assert page.status_code == 200
    assert 'name="password"' in page.text
    assert page.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]


def test_form_login_with_csrf_token_redirects_to_the_demo_page(
    browser: requests.Session, issuer_url: str
) -> None:
    token = form_token(browser.get(f"{issuer_url}/login").text)
    answer = browser.post(
        f"{issuer_url}/login",
        data={"username": ALICE[0], "password": ALICE[1], "csrf_token": token},
        allow_redirects=False,
    )
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/"
    page = browser.get(f"{issuer_url}/")
    assert '<strong id="user">alice</strong>' in page.text
    assert "/static/wsauth.js" in page.text  # the page loads the browser client
    assert page.headers["Cache-Control"] == "no-store"


def test_session_cookie_is_httponly_and_samesite_lax(
    browser: requests.Session, issuer_url: str
) -> None:
    answer = login_json(browser, issuer_url, *ALICE)
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith("wsauth_session=")
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # an http:// issuer; WSAUTH_COOKIE_SECURE decides


def test_form_login_without_csrf_token_is_403(browser: requests.Session, issuer_url: str) -> None:
    browser.get(f"{issuer_url}/login")
    for data in (
        {"username": ALICE[0], "password": ALICE[1]},
        {"username": ALICE[0], "password": ALICE[1], "csrf_token": "wrong"},
    ):
        answer = browser.post(f"{issuer_url}/login", data=data, allow_redirects=False)
        assert answer.status_code == 403
    assert browser.post(f"{issuer_url}/ws-token", headers=CSRF).status_code == 401


def test_form_login_with_wrong_password_is_401_and_generic(
    browser: requests.Session, issuer_url: str
) -> None:
    token = form_token(browser.get(f"{issuer_url}/login").text)
    wrong = browser.post(
        f"{issuer_url}/login",
        data={"username": "alice", "password": "not-the-password", "csrf_token": token},
    )
    unknown = browser.post(
        f"{issuer_url}/login",
        data={"username": "mallory", "password": "whatever-123", "csrf_token": token},
    )
    for answer in (wrong, unknown):
        assert answer.status_code == 401
        assert "invalid username or password" in answer.text
    assert browser.post(f"{issuer_url}/ws-token", headers=CSRF).status_code == 401


def test_json_login_answers_the_user(browser: requests.Session, issuer_url: str) -> None:
    answer = login_json(browser, issuer_url, *ALICE)
    assert answer.status_code == 200
    assert answer.json() == {"user": "alice"}


def test_json_login_with_wrong_password_is_401(browser: requests.Session, issuer_url: str) -> None:
    for username, password in (("alice", "nope-nope-nope"), ("nobody", "whatever-123")):
        answer = login_json(browser, issuer_url, username, password)
        assert answer.status_code == 401
        assert answer.json() == {"error": "not_authenticated"}


def test_json_login_requires_custom_header(browser: requests.Session, issuer_url: str) -> None:
    answer = browser.post(f"{issuer_url}/login", json={"username": ALICE[0], "password": ALICE[1]})
    assert answer.status_code == 403
    assert answer.json() == {"error": "csrf_rejected"}


def test_json_login_rejects_a_malformed_body(browser: requests.Session, issuer_url: str) -> None:
    bodies: list[object] = [[], {"username": "alice"}, {"username": 1, "password": 2}]
    for body in bodies:
        answer = browser.post(f"{issuer_url}/login", json=body, headers=CSRF)
        assert answer.status_code == 400
        assert answer.json() == {"error": "bad_request"}


def test_login_regenerates_the_session(browser: requests.Session, issuer_url: str) -> None:
    browser.get(f"{issuer_url}/login")
    before = browser.cookies.get("wsauth_session")
    login_json(browser, issuer_url, *ALICE)
    assert browser.cookies.get("wsauth_session") != before


def test_logout_then_ws_token_is_401(alice: requests.Session, issuer_url: str) -> None:
    assert alice.post(f"{issuer_url}/ws-token", headers=CSRF).status_code == 200
    answer = alice.post(f"{issuer_url}/logout", headers=CSRF)
    assert answer.status_code == 200
    answer = alice.post(f"{issuer_url}/ws-token", headers=CSRF)
    assert answer.status_code == 401
    assert answer.json() == {"error": "not_authenticated"}


def test_logout_form_needs_the_csrf_token(alice: requests.Session, issuer_url: str) -> None:
    refused = alice.post(f"{issuer_url}/logout", data={}, allow_redirects=False)
    assert refused.status_code == 403
    assert alice.post(f"{issuer_url}/ws-token", headers=CSRF).status_code == 200

    token = form_token(alice.get(f"{issuer_url}/").text)
    answer = alice.post(f"{issuer_url}/logout", data={"csrf_token": token}, allow_redirects=False)
    assert answer.status_code == 303
    assert alice.post(f"{issuer_url}/ws-token", headers=CSRF).status_code == 401


def test_copied_session_cookie_cannot_mint_tokens_after_logout(
    alice: requests.Session, issuer_url: str
) -> None:
    copied = requests.Session()
    copied.cookies.update(alice.cookies)
    assert copied.post(f"{issuer_url}/ws-token", headers=CSRF).status_code == 200
    assert alice.post(f"{issuer_url}/logout", headers=CSRF).status_code == 200
    answer = copied.post(f"{issuer_url}/ws-token", headers=CSRF)
    assert answer.status_code == 401
    copied.close()
