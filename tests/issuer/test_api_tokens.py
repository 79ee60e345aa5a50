"""POST /api/tokens: tokens for API clients with HTTP Basic credentials."""

from __future__ import annotations

import json
from collections.abc import Callable

import redis
import requests

from wsauth.issuer.clients import ClientStore
from wsauth.shared.core.config import Settings
from wsauth.shared.core.tokens import Claims


def test_api_tokens_with_good_credentials_returns_a_token_for_the_client(
    issuer_url: str,
    clients: ClientStore,
    check_token: Callable[[str], Claims],
    redis_client: redis.Redis,
    settings: Settings,
) -> None:
    client_id, secret = clients.add("billing")
    answer = requests.post(f"{issuer_url}/api/tokens", auth=(client_id, secret), timeout=5)
    assert answer.status_code == 200
    assert answer.headers["Cache-Control"] == "no-store"
    body = answer.json()
    assert body["expires_in"] == settings.token_ttl
    assert body["url"] == settings.gateway_url
    claims = check_token(body["token"])
    assert claims.sub == client_id
    assert claims.sid is None
    assert redis_client.get(f"wsauth:jti:{claims.jti}") == client_id


def test_api_token_answer_is_compact_json_and_sets_no_cookie(
    issuer_url: str, clients: ClientStore
) -> None:
    # The answer is written without jsonify() and the cookie-less session
    # without Flask's cookie parsing (docs/performance.md): same bytes, no cookie.
    client_id, secret = clients.add("billing")
    answer = requests.post(f"{issuer_url}/api/tokens", auth=(client_id, secret), timeout=5)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/json"
    assert "Set-Cookie" not in answer.headers
    assert "Cookie" not in answer.headers.get("Vary", "")
    body = answer.json()
    assert answer.text == json.dumps(body, sort_keys=True, separators=(",", ":")) + "\n"
    assert sorted(body) == ["expires_in", "token", "url"]


def test_api_tokens_with_bad_credentials_is_401_with_basic_challenge(
    issuer_url: str, clients: ClientStore, redis_client: redis.Redis
) -> None:
    client_id, secret = clients.add("billing")
    other_id, _other_secret = clients.add("other")
    attempts: list[tuple[str, str] | None] = [
        None,
        (client_id, secret[:-1]),
        (client_id, ""),
        (other_id, secret),
        ("c_0000000000000000", secret),
        ("not-a-client", secret),
    ]
    for auth in attempts:
        answer = requests.post(f"{issuer_url}/api/tokens", auth=auth, timeout=5)
        assert answer.status_code == 401, auth
        assert answer.json() == {"error": "not_authenticated"}
        assert answer.headers["WWW-Authenticate"] == 'Basic realm="wsauth"'
    assert redis_client.dbsize() == 0


def test_api_tokens_refuses_bearer_authorization(issuer_url: str) -> None:
    answer = requests.post(
        f"{issuer_url}/api/tokens", headers={"Authorization": "Bearer abc"}, timeout=5
    )
    assert answer.status_code == 401


def test_api_tokens_stops_working_when_the_client_is_removed(
    issuer_url: str, clients: ClientStore
) -> None:
    client_id, secret = clients.add("billing")
    url = f"{issuer_url}/api/tokens"
    assert requests.post(url, auth=(client_id, secret), timeout=5).status_code == 200
    clients.remove(client_id)
    assert requests.post(url, auth=(client_id, secret), timeout=5).status_code == 401


def test_api_tokens_ignores_browser_session(alice: requests.Session, issuer_url: str) -> None:
    answer = alice.post(f"{issuer_url}/api/tokens", headers={"X-WSAuth-CSRF": "1"})
    assert answer.status_code == 401
