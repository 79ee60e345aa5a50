"""POST /api/tokens: tokens for API clients with HTTP Basic credentials."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import pytest
import redis
import requests

from tests.support.issuer_server import run_issuer
from wsauth.issuer.clients import MINT, PUSH, ClientStore
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


# --- token exchange: a token for a user, by a client with the mint permission ----------


def _minter(clients: ClientStore) -> tuple[str, str]:
    return clients.add("backend", permissions=frozenset({MINT}))


def test_a_mint_client_gets_a_token_for_the_user_it_names(
    issuer_url: str,
    clients: ClientStore,
    check_token: Callable[[str], Claims],
    redis_client: redis.Redis,
    settings: Settings,
) -> None:
    body = {"sub": "alice", "sid": "web-42", "scope": "sub:user:alice pub:chat:lobby"}
    answer = requests.post(f"{issuer_url}/api/tokens", auth=_minter(clients), json=body, timeout=5)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Cache-Control"] == "no-store"
    claims = check_token(answer.json()["token"])
    assert (claims.sub, claims.sid, claims.scope) == ("alice", "web-42", body["scope"])
    assert redis_client.get(f"wsauth:jti:{claims.jti}") == "alice"
    assert redis_client.smembers("wsauth:sid:web-42") == {claims.jti}


def test_a_client_without_the_mint_permission_gets_403_and_no_token(
    issuer_url: str, clients: ClientStore, redis_client: redis.Redis
) -> None:
    plain = clients.add("plain")
    pusher = clients.add("pusher", permissions=frozenset({PUSH}))
    for auth in (plain, pusher):
        answer = requests.post(
            f"{issuer_url}/api/tokens", auth=auth, json={"sub": "alice"}, timeout=5
        )
        assert answer.status_code == 403
        assert answer.json() == {"error": "forbidden"}
    assert list(redis_client.scan_iter("wsauth:jti:*")) == []


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ('{"sub": "alice", "admin": true}', "application/json"),
        ('{"sid": "s"}', "application/json"),
        ('["alice"]', "application/json"),
        ("{not json", "application/json"),
        ('{"sub": ""}', "application/json"),
        ('{"sub": "' + "a" * 257 + '"}', "application/json"),
        ('{"sub": "alice\\nadmin"}', "application/json"),
        ('{"sub": 42}', "application/json"),
        ('{"sub": "alice", "sid": ""}', "application/json"),
        ('{"sub": "alice", "scope": "' + "s" * 1025 + '"}', "application/json"),
        ('{"sub": "alice", "scope": ["sub:a"]}', "application/json"),
        ("sub=alice", "application/x-www-form-urlencoded"),
    ],
)
def test_a_token_exchange_with_a_bad_body_is_400_never_a_token(
    issuer_url: str,
    clients: ClientStore,
    redis_client: redis.Redis,
    body: str,
    content_type: str,
) -> None:
    answer = requests.post(
        f"{issuer_url}/api/tokens",
        auth=_minter(clients),
        data=body.encode(),
        headers={"Content-Type": content_type},
        timeout=5,
    )
    assert answer.status_code == 400, answer.text
    assert answer.json() == {"error": "bad_request"}
    assert list(redis_client.scan_iter("wsauth:jti:*")) == []


def test_a_mint_client_cannot_mint_for_another_clients_id(
    issuer_url: str, clients: ClientStore, check_token: Callable[[str], Claims]
) -> None:
    minter = _minter(clients)
    other_id, _secret = clients.add("other")
    answer = requests.post(
        f"{issuer_url}/api/tokens", auth=minter, json={"sub": other_id}, timeout=5
    )
    assert answer.status_code == 403
    own = requests.post(f"{issuer_url}/api/tokens", auth=minter, json={"sub": minter[0]}, timeout=5)
    assert check_token(own.json()["token"]).sub == minter[0]


def test_a_token_exchange_is_logged_with_client_and_sub_never_the_token(
    issuer_url: str, clients: ClientStore, caplog: pytest.LogCaptureFixture
) -> None:
    minter = _minter(clients)
    with caplog.at_level(logging.INFO, logger="wsauth"):
        answer = requests.post(
            f"{issuer_url}/api/tokens", auth=minter, json={"sub": "alice"}, timeout=5
        )
    token = answer.json()["token"]
    lines = [record.getMessage() for record in caplog.records]
    assert f"mint client={minter[0]} sub=alice sid=-" in lines
    assert not any(token in line or minter[1] in line for line in lines)


def test_token_exchanges_spend_the_users_token_budget(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(rate_limit_tokens="2/minute")
    minter = _minter(ClientStore.in_dir(settings.keys_dir))
    with run_issuer(settings) as url:
        statuses = [
            requests.post(
                f"{url}/api/tokens", auth=minter, json={"sub": sub}, timeout=5
            ).status_code
            for sub in ("alice", "alice", "alice", "bob")
        ]
    assert statuses == [200, 200, 429, 200]
