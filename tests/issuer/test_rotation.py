"""A key promoted in the store is used for the next token, without a restart."""

from __future__ import annotations

import time
from collections.abc import Callable

import requests

from tests.issuer.conftest import CSRF
from wsauth.shared.core.config import Settings
from wsauth.shared.core.tokens import Claims
from wsauth.shared.store.keystore import KeyState, KeyStore, Timing


def test_promoted_key_signs_the_next_token_without_restart(
    alice: requests.Session,
    issuer_url: str,
    key_store: KeyStore,
    settings: Settings,
    check_token: Callable[[str], Claims],
) -> None:
    first = check_token(alice.post(f"{issuer_url}/ws-token", headers=CSRF).json()["token"])
    old_kid = first.kid

    now = int(time.time())
    record = key_store.generate("EdDSA", now=now)
    assert record.state is KeyState.NEXT
    # Still published-only: the old key keeps signing.
    assert (
        check_token(alice.post(f"{issuer_url}/ws-token", headers=CSRF).json()["token"]).kid
        == old_kid
    )
    jwks = requests.get(f"{issuer_url}/.well-known/jwks.json", timeout=5).json()
    assert {jwk["kid"] for jwk in jwks["keys"]} == {old_kid, record.kid}

    timing = Timing(token_ttl=settings.token_ttl, leeway=settings.leeway, cache_interval=60)
    key_store.promote(record.kid, now, timing, force=True)

    second = check_token(alice.post(f"{issuer_url}/ws-token", headers=CSRF).json()["token"])
    assert second.kid == record.kid != old_kid


def test_revoked_current_key_stops_issuing(
    alice: requests.Session, issuer_url: str, key_store: KeyStore
) -> None:
    (current,) = key_store.records()
    key_store.revoke(current.kid)
    answer = alice.post(f"{issuer_url}/ws-token", headers=CSRF)
    assert answer.status_code == 503
    assert answer.json() == {"error": "no_signing_key"}
